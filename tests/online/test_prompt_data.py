"""Real prompt data's less-travelled paths: a `save_to_disk` folder (one split or a DatasetDict),
replies given as plain strings, rows with no assistant message, ids without `prompt_id`, and too
few rows for the chunks. Expected rows are written out by hand from the inputs."""

import json
import re

import pytest
from datasets import Dataset, DatasetDict

from selm_bench.harness.data import DataError, chunk_bounds, last_reply, prepare
from selm_bench.harness.core.specs import DataSpec


def conversation(prompt: str, reply: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": prompt}, {"role": "assistant", "content": reply}]


def read_rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_chunk_bounds_by_hand():
    assert chunk_bounds(7, 2) == [(0, 3), (3, 6)]  # 7 // 2 = 3 rows each, the 7th dropped
    assert chunk_bounds(4, 4) == [(0, 1), (1, 2), (2, 3), (3, 4)]
    assert chunk_bounds(5, 1) == [(0, 5)]
    with pytest.raises(DataError) as err:
        chunk_bounds(3, 4)
    assert [int(n) for n in re.findall(r"\d+", str(err.value))] == [3, 4] and "chunks" in str(err.value)  # 3 rows, 4 chunks


def test_last_reply():
    assert last_reply("plain text", "chosen", 0) == "plain text"
    two = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "first"},
           {"role": "user", "content": "more"}, {"role": "assistant", "content": "second"}]
    assert last_reply(two, "chosen", 0) == "second"
    with pytest.raises(DataError) as err:
        last_reply([{"role": "user", "content": "q"}, "not a message"], "rejected", 12)
    assert str(err.value).startswith("row 12: rejected ") and "assistant" in str(err.value)


def test_saved_dataset_dict_picks_the_split(tmp_path):
    prefs = Dataset.from_list([{"prompt": f"p{i}", "chosen": conversation(f"p{i}", f"yes {i}"), "rejected": f"no {i}"}
                               for i in range(5)])
    other = Dataset.from_list([{"prompt": "x", "chosen": "a", "rejected": "b"}])
    DatasetDict({"train_prefs": prefs, "test_prefs": other}).save_to_disk(str(tmp_path / "uf"))
    out = tmp_path / "data"
    prepare(DataSpec(source=str(tmp_path / "uf"), split="train_prefs", chunks=2, expected_rows=5), tmp_path, out)
    # 5 // 2 = 2 rows per chunk; no prompt_id column, so ids are the row numbers; the 5th row is dropped
    assert read_rows(out / "chunk-1.jsonl") == [{"id": 0, "prompt": "p0", "chosen": "yes 0", "rejected": "no 0"},
                                                {"id": 1, "prompt": "p1", "chosen": "yes 1", "rejected": "no 1"}]
    assert read_rows(out / "chunk-2.jsonl") == [{"id": 2, "prompt": "p2", "chosen": "yes 2", "rejected": "no 2"},
                                                {"id": 3, "prompt": "p3", "chosen": "yes 3", "rejected": "no 3"}]
    assert sorted(p.name for p in out.iterdir()) == ["chunk-1.jsonl", "chunk-2.jsonl", "counts.json"]
    assert json.loads((out / "counts.json").read_text()) == {"rows": 5, "chunks": {"chunk-1": 2, "chunk-2": 2}}
    with pytest.raises(DataError) as err:
        prepare(DataSpec(source=str(tmp_path / "uf"), split="train_sft", chunks=1, expected_rows=None), tmp_path,
                tmp_path / "other")
    msg = str(err.value)
    assert msg.startswith(f"{tmp_path / 'uf'}: ") and "'train_sft'" in msg
    assert msg.rpartition("(has: ")[2].rstrip(")").split(", ") == ["train_prefs", "test_prefs"]  # the splits it has
    assert not (tmp_path / "other").exists()


def test_saved_single_dataset_ignores_the_split(tmp_path):
    Dataset.from_list([{"prompt": "p", "chosen": "c", "rejected": "r"}] * 2).save_to_disk(str(tmp_path / "one"))
    out = tmp_path / "data"
    prepare(DataSpec(source=str(tmp_path / "one"), split="anything", chunks=2, expected_rows=None), tmp_path, out)
    assert read_rows(out / "chunk-2.jsonl") == [{"id": 1, "prompt": "p", "chosen": "c", "rejected": "r"}]


def test_missing_column_lists_what_the_data_has(tmp_path):
    Dataset.from_list([{"prompt": "p", "answer": "a"}]).to_json(str(tmp_path / "x.jsonl"))
    with pytest.raises(DataError) as err:
        prepare(DataSpec(source=str(tmp_path / "x.jsonl"), split="s", chunks=1, expected_rows=None), tmp_path,
                tmp_path / "out")
    msg = str(err.value)
    assert msg.startswith(f"{tmp_path / 'x.jsonl'}: ") and "'chosen'" in msg
    assert msg.rpartition("has: ")[2].rstrip(")").split(", ") == ["prompt", "answer"]  # the columns it has
    assert not (tmp_path / "out").exists()


def test_a_row_without_an_assistant_reply_names_its_row(tmp_path):
    rows = [{"prompt": "a", "chosen": conversation("a", "ok"), "rejected": conversation("a", "no")},
            {"prompt": "b", "chosen": conversation("b", "ok"), "rejected": [{"role": "user", "content": "b"}]}]
    Dataset.from_list(rows).to_parquet(str(tmp_path / "x.parquet"))
    with pytest.raises(DataError) as err:
        prepare(DataSpec(source=str(tmp_path / "x.parquet"), split="s", chunks=1, expected_rows=None), tmp_path,
                tmp_path / "out")
    assert str(err.value).startswith("row 1: rejected ") and "assistant" in str(err.value)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("source", ["./uf", "~/nowhere/uf", "org/name/extra"])
def test_paths_that_are_not_hub_ids(tmp_path, monkeypatch, source):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError) as err:
        prepare(DataSpec(source=source, split="s", chunks=1, expected_rows=None), tmp_path, tmp_path / "out")
    assert str(err.value) == f"{source}: no such file or folder"
