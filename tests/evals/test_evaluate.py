"""What a suite leaves behind: metrics.json and items.jsonl read back as written, the context
record `selm-bench judge` rebuilds from, and the item contract compare relies on."""

import json
import math
from pathlib import Path

import pytest

from selm_bench.evals.base import EvalContext, SuiteError, SuiteResult, check_items, mean_and_stderr
from selm_bench.harness.run.evaluate import context_from_record, context_record, write_suite_result


def _ctx(tmp_path: Path) -> EvalContext:
    return EvalContext(model="/m/sft", name="sft", out_dir=tmp_path, options={"limit": 3}, preset="openllm",
                       data_dir=Path("/data"), world_dir=None, backend="vllm", backend_options={"dtype": "bfloat16"},
                       judge="openai:gpt-4", judge_options={"concurrency": 4}, device="cuda", seed=7,
                       references={"sft": Path("/m/ref")})


RECORD = {"model": "/m/sft", "name": "sft", "preset": "openllm", "options": {"limit": 3}, "data_dir": "/data",
          "world_dir": None, "backend": "vllm", "backend_options": {"dtype": "bfloat16"}, "judge": "openai:gpt-4",
          "judge_options": {"concurrency": 4}, "device": "cuda", "seed": 7, "references": {"sft": "/m/ref"}}


def test_suite_result_files_read_back(tmp_path):
    items = [{"id": "q1", "score": 1.0, "where": Path("/x/y")}, {"id": "q2", "score": None, "text": "a\nb"}]
    result = SuiteResult(metrics={"accuracy": 0.5}, items=items, info={"n": 2})
    write_suite_result(tmp_path, "tiny-world", _ctx(tmp_path), result, method="sft")
    assert json.loads((tmp_path / "metrics.json").read_text()) == {
        "suite": "tiny-world", "checkpoint": "sft", "method": "sft", "metrics": {"accuracy": 0.5}, "info": {"n": 2},
        "context": RECORD}
    lines = (tmp_path / "items.jsonl").read_text().split("\n")
    assert lines[2] == "" and len(lines) == 3  # one record a line, each ending in a newline
    assert [json.loads(line) for line in lines[:2]] == [{"id": "q1", "score": 1.0, "where": "/x/y"},
                                                        {"id": "q2", "score": None, "text": "a\nb"}]
    write_suite_result(tmp_path, "tiny-world", _ctx(tmp_path), SuiteResult(metrics={}))
    assert "method" not in json.loads((tmp_path / "metrics.json").read_text())
    assert (tmp_path / "items.jsonl").read_text() == ""


def test_context_record_round_trip(tmp_path):
    assert context_record(_ctx(tmp_path)) == RECORD
    back = context_from_record(RECORD, tmp_path / "elsewhere")
    assert back.out_dir == tmp_path / "elsewhere" and back.references == {"sft": Path("/m/ref")}
    assert (back.model, back.name, back.preset, back.options, back.data_dir, back.world_dir, back.backend,
            back.backend_options, back.judge, back.judge_options, back.device, back.seed) == (
        "/m/sft", "sft", "openllm", {"limit": 3}, Path("/data"), None, "vllm", {"dtype": "bfloat16"}, "openai:gpt-4",
        {"concurrency": 4}, "cuda", 7)
    bare = context_from_record({"model": "m", "name": "n", "world_dir": "/w"}, tmp_path)
    assert (bare.options, bare.preset, bare.data_dir, bare.world_dir, bare.backend, bare.backend_options, bare.judge,
            bare.judge_options, bare.device, bare.seed, bare.references) == (
        {}, None, None, Path("/w"), "hf", {}, None, {}, "cpu", 0, {})


def test_item_contract_errors():
    check_items("s", [{"id": 1, "score": 1}, {"id": "2", "score": None}, {"id": 3, "score": 0.5}])
    for items, line in [([{"score": 1}], "s: item 0 lacks id"), ([{"id": 1, "score": 1}, {"id": 2}], "s: item 1 lacks score"),
                        ([{"id": 1, "score": 1}, {"id": "1", "score": 0}], "s: item id '1' is not unique"),
                        ([{"id": "a", "score": True}], "s: item 'a' has a non-numeric score True"),
                        ([{"id": "a", "score": "1"}], "s: item 'a' has a non-numeric score '1'")]:
        with pytest.raises(SuiteError) as err:
            check_items("s", items)
        assert str(err.value) == line


def test_mean_stderr_and_leaderboard_metrics():
    mean, se = mean_and_stderr([1.0, 2.0, 4.0])  # mean 7/3; sample variance (16/9 + 1/9 + 25/9) / 2 = 7/3
    assert math.isclose(mean, 7 / 3) and math.isclose(se, math.sqrt(7 / 3 / 3))
    assert mean_and_stderr([5.0]) == (5.0, 0.0)
    assert all(math.isnan(x) for x in mean_and_stderr([]))
    r = SuiteResult(metrics={"a": 1, "b": 0.5, "c": None, "d": True, "e": "text"})
    assert r.leaderboard_metrics() == {"a": 1.0, "b": 0.5}
