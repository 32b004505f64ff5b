"""Leaderboard rows, compare's verdicts, the sweep's orchestration, a suite's files and the data
pull, each on small hand-made inputs with stand-ins for models, jobs and the network, and the
expected output written out by hand."""

import io
import json
import sys
import types
import urllib.error
from pathlib import Path

import numpy as np
import pytest

from selm_bench.harness.reports import compare as C
from selm_bench.harness import datapull as D
from selm_bench.harness.reports import leaderboard as L
from selm_bench.harness.run import sweep as S

ABC_SHA256 = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"  # FIPS 180-2 test vector for b"abc"
EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"  # sha256 of no bytes


def _write(path: Path, data) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def _result(run: Path, rel: str, suite: str, checkpoint: str, metrics: dict, **extra) -> str:
    _write(run / rel / "metrics.json", {"suite": suite, "checkpoint": checkpoint, "metrics": metrics, **extra})
    return rel


@pytest.fixture
def suites(monkeypatch):
    """Stand-in registry entries for the suites these tests name (headlines as the suites register them:
    tiny-world accuracy, mt-bench score, brainteaser overall), so no test imports the real suites and
    their model libraries."""
    from selm_bench.harness.core import registry

    monkeypatch.setattr(registry, "load_all", lambda: None)
    for name, headline in (("tiny-world", "accuracy"), ("mt-bench", "score"), ("brainteaser", "overall")):
        monkeypatch.setitem(registry._ENTRIES["suite"], name,
                            registry.Entry("suite", name, None, "", headline=headline, paired=registry.mean_score))
    return registry


# ---------------------------------------------------------------- leaderboard rows
def test_parse_checkpoint_splits_only_an_iter_suffix():
    assert L.parse_checkpoint("selm/iter-12") == ("selm", 12)
    assert L.parse_checkpoint("a/b/iter-3") == ("a/b", 3)
    assert L.parse_checkpoint("sft") == ("sft", None)
    assert L.parse_checkpoint("selm/iter-x") == ("selm/iter-x", None)
    assert L.parse_checkpoint("iter-2") == ("iter-2", None)  # no method before the slash


def test_rows_without_a_results_list_skip_dot_folders_and_foreign_files(tmp_path):
    run = tmp_path / "myrun"
    _write(run / "manifest.json", {"git_commit": "abcdef0123456789"})  # no "results": every metrics.json
    _result(run, "evals/custom/tiny-world", "tiny-world", "custom",
            {"accuracy": 1, "flag": True, "note": "x", "score": 0.25}, method="dpo", iteration=4, info={})
    _result(run, "evals/custom/.tmp-x", "mt-bench", "custom", {"score": 9.0})  # a temp folder: skipped
    _result(run, ".partial/x", "mt-bench", "custom", {"turn-1": 9.0})
    _write(run / "lib" / "metrics.json", {"checkpoint": "custom", "metrics": {"x": 1}})  # no suite
    _write(run / "lib2" / "metrics.json", {"suite": "tiny-world", "metrics": {"x": 1}})  # no checkpoint
    _result(run, "evals/published/alpaca-eval", "alpaca-eval", "ref-model", {"win_rate": 12.5},
            info={"source": "alpaca_eval leaderboard", "annotator": "chatgpt"})
    rows = L.collect_rows(run)
    # method/iteration from the file win over the name; provenance: no stage.json, no config.yaml -> the manifest's commit
    assert rows == [
        {"checkpoint": "custom", "method": "dpo", "iteration": 4, "provenance": "run myrun · commit abcdef01",
         "tiny-world/accuracy": 1.0, "tiny-world/score": 0.25, "label": "tiny world (tiny-world)"},
        {"checkpoint": "ref-model", "method": "ref-model", "iteration": None, "provenance": "alpaca_eval leaderboard",
         "alpaca-eval/win_rate": 12.5, "label": "chatgpt judge (alpaca-eval)"}]
    assert type(rows[0]["tiny-world/accuracy"]) is float  # the int 1 is stored as a float


def test_listed_results_only_and_the_method_order(tmp_path):
    run = tmp_path / "run"
    listed = []
    for ckpt, extra in [("zzz", {}), ("aaa", {}), ("selm/iter-2", {}), ("selm", {}), ("selm/iter-0", {}),
                        ("selm/iter-1", {}), ("iterative-dpo/iter-1", {}), ("dpo", {}), ("sft", {})]:
        listed.append(_result(run, f"evals/{ckpt}/tiny-world", "tiny-world", ckpt, {"accuracy": 0.5}, info={}, **extra))
    _result(run, "evals/old/tiny-world", "tiny-world", "old", {"accuracy": 0.1})  # not listed: not in the table
    _write(run / "manifest.json", {"results": [*listed, "evals/gone/tiny-world"]})  # a listed result that is missing
    # METHOD_ORDER first, then unknown methods by name; within a method by iteration, None counting as 0
    # (stable: "selm" was listed before "selm/iter-0")
    assert [r["checkpoint"] for r in L.collect_rows(run)] == [
        "sft", "dpo", "iterative-dpo/iter-1", "selm", "selm/iter-0", "selm/iter-1", "selm/iter-2", "aaa", "zzz"]


def test_collect_rows_of_a_folder_of_runs_with_imports(tmp_path):
    for name, acc in (("b", 0.75), ("a", 0.5)):
        run = tmp_path / name
        _write(run / "manifest.json", {"results": [_result(run, "evals/sft/tiny-world", "tiny-world", "sft",
                                                           {"accuracy": acc}, info={"split": "eval"})]})
    _result(tmp_path / "notes", "x", "tiny-world", "sft", {"accuracy": 0.0})  # no manifest: not a run
    (tmp_path / "README").write_text("not a folder")
    _result(tmp_path / "imports", "gpt4", "mt-bench", "gpt-4", {"score": 8.75}, method="reference",
            info={"judge": {"model": "gpt-4"}})
    row = {"checkpoint": "sft", "method": "sft", "iteration": None, "label": "tiny world (tiny-world)"}
    assert L.collect_rows(tmp_path) == [
        {"run": "a", **row, "provenance": "run a", "tiny-world/accuracy": 0.5},
        {"run": "b", **row, "provenance": "run b", "tiny-world/accuracy": 0.75},
        {"run": "imports", "checkpoint": "gpt-4", "method": "reference", "iteration": None, "provenance": "run imports",
         "mt-bench/score": 8.75}]
    # a run folder with an imports folder: its own rows, then the imports' rows, without a run column
    (tmp_path / "a" / "imports").mkdir()
    _result(tmp_path / "a" / "imports", "r", "mt-bench", "ref", {"score": 7.5}, info={"source": "paper"})
    assert L.collect_rows(tmp_path / "a") == [
        {**row, "provenance": "run a", "tiny-world/accuracy": 0.5},
        {"checkpoint": "ref", "method": "ref", "iteration": None, "provenance": "paper", "mt-bench/score": 7.5}]
    with pytest.raises(FileNotFoundError) as err:
        L.collect_rows(tmp_path / "nope")
    assert str(err.value) == f"results folder not found: {tmp_path / 'nope'}"


def test_published_rows_from_a_hand_made_csv_and_leaderboard(tmp_path, monkeypatch):
    ref = tmp_path / "reference"
    _write(ref / "published.csv",
           "model,method,iteration,base,source,mt-bench/score,alpaca-eval/win_rate\n"
           "Other,dpo,2,unknown-base,https://q,1,2\n"
           "M-iter-1,selm,1,zephyr-7b,https://hf.co/x,7.5,\n"
           "M-sft,sft,,zephyr-7b,http://y.org/z,,20.5\n"
           "L-iter-1,selm,1,llama-3-8b-instruct,https://l,,\n"
           "P-iter-1,selm,1,phi-3-mini-4k-instruct,https://p,,\n")
    fake = types.ModuleType("alpaca_eval")
    fake.__file__ = str(tmp_path / "ae" / "__init__.py")
    fake.__version__ = "9.9.9"
    board = _write(tmp_path / "ae/leaderboards/data_AlpacaEval_2/weighted_alpaca_eval_gpt4_turbo_leaderboard.csv",
                   ",win_rate,standard_error,length_controlled_winrate,lc_standard_error\n"
                   "zephyr-7b-beta,10.99,0.96,13.2,\n"
                   "Meta-Llama-3-8B-Instruct,22.6,1.2,22.9,0.8\n"
                   "Phi-3-mini-4k-instruct,15.5,1.0,17.25,0.5\n"
                   "Mistral-7B,1,1,1,1\n")
    monkeypatch.setitem(sys.modules, "alpaca_eval", fake)
    ours = [
        {"run": "published", "checkpoint": "Other", "method": "dpo", "iteration": 2, "provenance": "published: q",
         "mt-bench/score": 1.0, "alpaca-eval/win_rate": 2.0},
        {"run": "published", "checkpoint": "M-iter-1", "method": "selm", "iteration": 1,
         "provenance": "published: hf.co/x", "mt-bench/score": 7.5},
        {"run": "published", "checkpoint": "M-sft", "method": "sft", "iteration": None,
         "provenance": "published: http://y.org/z", "alpaca-eval/win_rate": 20.5},
        {"run": "published", "checkpoint": "L-iter-1", "method": "selm", "iteration": 1, "provenance": "published: l"},
        {"run": "published", "checkpoint": "P-iter-1", "method": "selm", "iteration": 1, "provenance": "published: p"}]
    board_rows = "leaderboard (data_AlpacaEval_2, weighted_alpaca_eval_gpt4_turbo)"
    # the zephyr base once (two rows name it); the unknown base has no leaderboard row; an empty cell is left out
    base = {"run": "published", "method": "base", "iteration": None, "provenance": f"alpaca_eval 9.9.9 {board_rows}"}
    zephyr = {**base, "checkpoint": "zephyr-7b-beta", "alpaca-eval/length_controlled_winrate": 13.2,
              "alpaca-eval/win_rate": 10.99, "alpaca-eval/win_rate_stderr": 0.96}
    llama = {**base, "checkpoint": "Meta-Llama-3-8B-Instruct", "alpaca-eval/length_controlled_winrate": 22.9,
             "alpaca-eval/length_controlled_winrate_stderr": 0.8, "alpaca-eval/win_rate": 22.6,
             "alpaca-eval/win_rate_stderr": 1.2}
    phi = {**base, "checkpoint": "Phi-3-mini-4k-instruct", "alpaca-eval/length_controlled_winrate": 17.25,
           "alpaca-eval/length_controlled_winrate_stderr": 0.5, "alpaca-eval/win_rate": 15.5,
           "alpaca-eval/win_rate_stderr": 1.0}
    assert L.published_rows(ref) == [*ours, zephyr, llama, phi]
    del fake.__version__
    assert L.published_rows(ref)[-1]["provenance"] == f"alpaca_eval ? {board_rows}"
    board.unlink()
    assert L.published_rows(ref) == ours


def test_refresh_writes_both_files_and_prints_the_table(tmp_path, suites):
    from selm_bench.harness.core.progress import console

    run = tmp_path / "r"
    _write(run / "manifest.json", {"results": [_result(run, "evals/sft/mt-bench", "mt-bench", "sft", {"score": 6.5},
                                                       info={"judge": {"model": "gpt-4"}})]})
    with console.capture() as cap:
        rows = L.refresh(run, "my board")
    assert rows == [{"checkpoint": "sft", "method": "sft", "iteration": None, "provenance": "run r", "mt-bench/score": 6.5}]
    # label is always a column of the files (empty: the canonical judge on every question there is)
    assert (run / "leaderboard.csv").read_text() == ("checkpoint,method,iteration,mt-bench/score,provenance,label\n"
                                                     "sft,sft,,6.5,run r,\n")
    assert json.loads((run / "leaderboard.json").read_text()) == [
        {"checkpoint": "sft", "method": "sft", "iteration": None, "mt-bench/score": 6.5, "provenance": "run r",
         "label": None}]
    assert "my board" in cap.get() and "6.5" in cap.get()


def test_collect_many_names_rows_by_their_folder_and_reads_sweeps(tmp_path, monkeypatch):
    run = tmp_path / "one"
    _write(run / "manifest.json", {"results": [_result(run, "e", "tiny-world", "sft", {"accuracy": 0.5}, info={})]})
    sw = tmp_path / "sw"
    _write(sw / "sweep.json", {"grid": {"a": ["1"]}})
    _write(sw / "summary.json", [{"a": "1", "checkpoint": "sft", "n_seeds": 1, "m/x": 2.0}])
    monkeypatch.setattr(L, "published_rows", lambda: [{"run": "published", "checkpoint": "P"}])
    assert L.collect_many([run, sw]) == [
        {"run": "one", "checkpoint": "sft", "method": "sft", "iteration": None, "provenance": "run one",
         "tiny-world/accuracy": 0.5, "label": "tiny world (tiny-world)"},
        {"checkpoint": "sft", "m/x": 2.0, "run": "sw[a=1]", "provenance": "sweep sw · a=1 · mean of 1 seed(s), ± std across seeds"},
        {"run": "published", "checkpoint": "P"}]
    assert [r["run"] for r in L.collect_many([run], published=False)] == ["one"]


def test_headline_fallbacks_when_rows_lack_the_headline(suites):
    # MT-Bench's headline is score; a row with only turn-1 falls back to its own first metric (stderr left out)
    assert L.headline_columns([{"checkpoint": "a", "mt-bench/turn-1": 5.0, "mt-bench/turn-1_stderr": 0.1}]) == [
        "mt-bench/turn-1"]
    # an unregistered suite: win_rate, then score, then accuracy, then its first metric by name
    assert L.headline_columns([{"checkpoint": "a", "x-suite/score": 1.0, "x-suite/win_rate": 2.0}]) == ["x-suite/win_rate"]
    assert L.headline_columns([{"checkpoint": "a", "x-suite/aaa": 3.0, "x-suite/accuracy": 1.0,
                                "x-suite/score": 2.0}]) == ["x-suite/score"]
    assert L.headline_columns([{"checkpoint": "a", "x-suite/aaa": 3.0, "x-suite/accuracy": 1.0}]) == ["x-suite/accuracy"]
    assert L.headline_columns([{"checkpoint": "a", "x-suite/b_std": 1.0, "x-suite/c": 2.0}]) == ["x-suite/c"]
    assert L.headline_columns([{"checkpoint": "a", "x-suite/a_stderr": 1.0, "x-suite/b": 2.0}]) == ["x-suite/b"]
    # the headline, plus for the row without it the first metric that row has a value for (score is None there)
    rows = [{"checkpoint": "a", "tiny-world/accuracy": 0.5, "tiny-world/score": 0.5},
            {"checkpoint": "b", "tiny-world/accuracy": None, "tiny-world/score": None, "tiny-world/n": 3.0}]
    assert L.headline_columns(rows) == ["tiny-world/accuracy", "tiny-world/n"]
    assert L.headline_columns(rows[:1]) == ["tiny-world/accuracy"]


def test_sort_puts_zero_between_positive_and_negative_values():
    rows = [{"checkpoint": "d", "m/x": 0.0}, {"checkpoint": "a", "m/x": 0.5}, {"checkpoint": "n", "m/x": -2.0},
            {"checkpoint": "b"}]
    assert [r["checkpoint"] for r in L.sort_rows(rows, "m/x")] == ["a", "d", "n", "b"]


def test_table_zero_stderr_has_no_interval_and_the_caption_and_headers():
    from selm_bench.harness.core.progress import console

    rows = [{"checkpoint": "sft", "t/a": 0.5, "t/a_stderr": 0.0, "provenance": "p"},
            {"checkpoint": "dpo", "t/a": 0.25, "t/a_std": 0.0, "label": "x judge (t); tiny world (mt-bench)"},
            {"checkpoint": "ipo", "t/a": 0.75, "t/a_stderr": 0.5}]
    with console.capture() as cap:
        L.print_table(rows, title="t [x]", metric_cols=["t/a"])
    text = cap.get()
    lines = [[c.strip() for c in line.split("│")[1:-1]] for line in text.splitlines() if "│" in line]
    assert lines == [["sft", "0.5", "", "p"],  # stderr 0: no interval
                     ["dpo", "0.25 ±0 sd †", "x judge; tiny world", ""],  # an sd of 0 is still a sweep row's spread
                     ["ipo", "0.75 ±0.98", "", ""]]  # 1.96 x 0.5
    header = next(line for line in text.splitlines() if "┃" in line and "checkpoint" in line)
    assert [c.strip() for c in header.split("┃")[1:-1]] == ["checkpoint", "t/a", "not canonical", "provenance"]
    assert text.splitlines()[0].strip() == "t [x]"
    caption = ("±: 95% interval (1.96 × the suite's standard error); ± sd: std across seeds   "
               "†: not the canonical benchmark (see 'not canonical')")
    assert "".join(caption.split()) in "".join(text.split())


# ---------------------------------------------------------------- compare
def _run(root: Path, checkpoints: dict[str, list[dict]], suite: str = "tiny-world") -> Path:
    results = []
    for ckpt, items in checkpoints.items():
        results.append(_result(root, f"evals/{ckpt}/{suite}", suite, ckpt, {"accuracy": 0.5}, info={}))
        (root / "evals" / ckpt / suite / "items.jsonl").write_text("".join(json.dumps(i) + "\n" for i in items))
    _write(root / "manifest.json", {"results": results})
    return root


def test_parse_side_default_checkpoint_and_its_errors(tmp_path):
    item = [{"id": "a", "score": 1.0}]
    run = _run(tmp_path / "a", {"sft": item, "dpo": item})
    _result(run / "imports", "x", "mt-bench", "gpt4-ref", {"score": 9.0}, method="reference")  # not a checkpoint of ours
    assert C.parse_side(str(run)) == C.Side(label=f"{run}:dpo", runs=[run], checkpoint="dpo")  # leaderboard order's last
    assert C.parse_side(f"{run}:sft") == C.Side(label=f"{run}:sft", runs=[run], checkpoint="sft")
    empty = tmp_path / "empty"
    _write(empty / "manifest.json", {"results": []})
    for arg, line in [(f"{run}:nope", f"{run}: no checkpoint 'nope'; it has sft, dpo"),
                      (f"{run}:gpt4-ref", f"{run}: no checkpoint 'gpt4-ref'; it has sft, dpo"),
                      (str(empty), f"{empty}: the run has no results yet"),
                      (str(tmp_path / "missing"), f"run folder not found: {tmp_path / 'missing'}"),
                      (f"{tmp_path / 'missing'}:sft", f"run folder not found: {tmp_path / 'missing'}")]:
        with pytest.raises(C.CompareError) as err:
            C.parse_side(arg)
        assert str(err.value) == line


def test_side_items_keep_the_suites_and_ids_every_seed_has(tmp_path):
    r0 = _run(tmp_path / "s0", {"sft": [{"id": 1, "score": 0.0}, {"id": 2, "score": 1.0}, {"id": 3, "score": 1.0},
                                        {"score": 1.0}]})  # a record without id is no item
    with open(r0 / "evals/sft/tiny-world/items.jsonl", "a") as f:
        f.write("\n   \n")  # blank lines are skipped
    _result(r0, "evals/sft/mt-bench", "mt-bench", "sft", {"score": 5.0})  # no items.jsonl: not comparable
    r1 = _run(tmp_path / "s1", {"sft": [{"id": "2", "score": 0.0}, {"id": "3", "score": 1.0}, {"id": "4", "score": 1.0}]})
    _run(r1, {"sft": [{"id": "q", "score": 5.0}]}, suite="mt-bench")
    _run(r0, {"sft": [{"id": "z", "score": 1.0}]}, suite="brainteaser")  # only the first seed has it
    # ids are compared as strings; each shared item's numbers averaged (the id kept from the first seed)
    assert C.side_items(C.Side("g", [r0, r1], "sft")) == {
        "tiny-world": {"2": {"id": 2, "score": 0.5}, "3": {"id": 3, "score": 1.0}}}
    assert C._suite_items(r1, "sft") == {"tiny-world": {"2": {"id": "2", "score": 0.0}, "3": {"id": "3", "score": 1.0},
                                                        "4": {"id": "4", "score": 1.0}},
                                         "mt-bench": {"q": {"id": "q", "score": 5.0}}}


def test_paired_bootstrap_percentiles_from_planned_resamples(monkeypatch):
    planned = [[0, 0, 0, 0], [1, 1, 1, 1], [2, 2, 2, 2], [3, 3, 3, 3], [0, 1, 2, 3]]
    calls = []

    class Rng:
        def integers(self, low, high, size):
            calls.append((low, high, size))
            return np.array(planned[len(calls) - 2])  # calls[0] is the seed

    monkeypatch.setattr(C.np.random, "default_rng", lambda seed: calls.append(("seed", seed)) or Rng())

    def paired(items):
        return {"s": sum(i["v"] for i in items) / len(items), "none": None}

    base = [{"v": 0.0}] * 4
    new = [{"v": 0.0}, {"v": 1.0}, {"v": 2.0}, {"v": 3.0}]
    out = C.paired_bootstrap(base, new, paired, resamples=5, seed=7)
    # deltas per resample: 0, 1, 2, 3, 1.5 -> sorted [0, 1, 1.5, 2, 3]; numpy's linear percentile:
    # 2.5th at position 0.025 * 4 = 0.1 -> 0.1; 97.5th at 3.9 -> 2 + 0.9 * (3 - 2) = 2.9
    assert out["s"] == (0.0, 1.5, pytest.approx(0.1), pytest.approx(2.9))
    assert out["none"] == (None, None, None, None)
    assert list(out) == ["s", "none"]
    assert calls == [("seed", 7), *[(0, 4, 4)] * 5]


BASE_ITEMS = {"tiny-world": {"a": {"id": "a", "score": 1.0}, "b": {"id": "b", "score": 0.0},
                             "c": {"id": "c", "score": None}, "x": {"id": "x", "score": 1.0}},
              "mt-bench": {"q": {"id": "q", "score": None}},
              "brainteaser": {"p": {"id": "p", "score": 1.0}}}
NEW_ITEMS = {"tiny-world": {"a": {"id": "a", "score": 0.0}, "b": {"id": "b", "score": 1.0},
                            "c": {"id": "c", "score": 1.0}, "y": {"id": "y", "score": 1.0}},
             "mt-bench": {"q": {"id": "q", "score": 5.0}}}
# metric -> (base, new, low, high): boundaries on purpose (low exactly 0, high exactly 0)
BOOT = {"accuracy": (0.5, 0.75, 0.0, 0.25), "score": (0.5, 0.25, -0.5, 0.0), "up": (0.25, 0.5, 0.125, 0.375),
        "down": (0.75, 0.25, -0.75, -0.25), "none": (None, 0.5, None, None)}


@pytest.fixture
def planted(monkeypatch, suites):
    registry = suites
    boots = []
    monkeypatch.setattr(C, "side_items", lambda side: BASE_ITEMS if side.label == "a:sft" else NEW_ITEMS)

    def fake_bootstrap(base_items, new_items, paired, resamples, seed):
        boots.append((base_items, new_items, paired, resamples, seed))
        return dict(BOOT)

    monkeypatch.setattr(C, "paired_bootstrap", fake_bootstrap)
    return C.Side("a:sft", [Path("a")], "sft"), C.Side("b:dpo", [Path("b")], "dpo"), boots, registry


def test_compare_verdicts_at_the_interval_edges(planted):
    base, new, boots, registry = planted
    results = C.compare(base, new, seed=3, resamples=10)
    M = C.MetricResult
    assert results == [
        C.SuiteComparison("mt-bench", 0, 0, 0, []),  # its one item is unscored in base: nothing paired
        C.SuiteComparison("tiny-world", 2, 1, 1, [  # a, b shared (c unscored in base); x only in base, y only in new
            M("tiny-world", "accuracy", 0.5, 0.75, 0.25, 0.0, 0.25, "no significant change", True, 0.0, False),
            M("tiny-world", "score", 0.5, 0.25, -0.25, -0.5, 0.0, "no significant change", False, 0.0, False),
            M("tiny-world", "up", 0.25, 0.5, 0.25, 0.125, 0.375, "improved", False, 0.0, False),
            M("tiny-world", "down", 0.75, 0.25, -0.5, -0.75, -0.25, "regressed", False, 0.0, False),
            M("tiny-world", "none", None, 0.5, None, None, None, "no data", False, 0.0, False)])]
    assert C.failed(results) is False
    assert len(boots) == 1
    b_items, n_items, paired, resamples, seed = boots[0]
    assert (b_items, n_items, resamples, seed) == ([BASE_ITEMS["tiny-world"]["a"], BASE_ITEMS["tiny-world"]["b"]],
                                                   [NEW_ITEMS["tiny-world"]["a"], NEW_ITEMS["tiny-world"]["b"]], 10, 3)
    assert paired is registry.entry("suite", "tiny-world").paired


def test_compare_gates_and_thresholds_at_the_edge(planted, monkeypatch):
    base, new, _, _ = planted

    def by_name(results):
        return {m.metric: (m.gated, m.threshold, m.failed) for c in results for m in c.metrics}

    # down's upper end -0.25 is not below -0.25: at the threshold it does not fail
    edge = C.compare(base, new, gated=["tiny-world/down", "tiny-world/score", "tiny-world/none"],
                     thresholds={"tiny-world/down": 0.25, "tiny-world/score": 0.5})
    assert by_name(edge) == {"accuracy": (False, 0.0, False), "score": (True, 0.5, False), "up": (False, 0.0, False),
                             "down": (True, 0.25, False), "none": (True, 0.0, False)}
    assert C.failed(edge) is False
    beyond = C.compare(base, new, gated=["tiny-world/down"], thresholds={"tiny-world/down": 0.125})
    assert by_name(beyond)["down"] == (True, 0.125, True) and C.failed(beyond) is True
    # a threshold alone keeps the default gate (the headline)
    alone = C.compare(base, new, thresholds={"tiny-world/accuracy": 0.5})
    assert by_name(alone)["accuracy"] == (True, 0.5, False) and by_name(alone)["down"] == (False, 0.0, False)
    boots = []
    monkeypatch.setattr(C, "paired_bootstrap", lambda *a: boots.append(a[3:]) or dict(BOOT))
    C.compare(base, new)
    assert boots == [(1000, 0)]  # the defaults: 1000 resamples, seed 0
    with pytest.raises(C.CompareError) as err:
        C.compare(base, new, thresholds={"tiny-world/nope": 1.0})
    assert str(err.value) == ("unknown metric 'tiny-world/nope'; metrics both sides have: tiny-world/accuracy, "
                              "tiny-world/down, tiny-world/none, tiny-world/score, tiny-world/up")


def test_compare_knows_the_metrics_of_every_suite(monkeypatch, suites):
    items = {"mt-bench": {"q": {"id": "q", "score": 5.0}}, "tiny-world": {"a": {"id": "a", "score": 1.0}}}
    monkeypatch.setattr(C, "side_items", lambda side: items)
    monkeypatch.setattr(C, "paired_bootstrap", lambda *a: {"score": (5.0, 5.0, 0.0, 0.0)})
    results = C.compare(C.Side("a", [], "sft"), C.Side("b", [], "dpo"), gated=["mt-bench/score"])
    assert [(c.suite, [(m.metric, m.gated) for m in c.metrics]) for c in results] == [
        ("mt-bench", [("score", True)]), ("tiny-world", [("score", False)])]
    with pytest.raises(C.CompareError) as err:
        C.compare(C.Side("a", [], "sft"), C.Side("b", [], "dpo"), gated=["x/y"])
    assert str(err.value) == "unknown metric 'x/y'; metrics both sides have: mt-bench/score, tiny-world/score"


def test_compare_without_a_shared_suite(monkeypatch, suites):
    monkeypatch.setattr(C, "side_items", lambda side: {"mt-bench": {}} if side.label == "a:sft" else {"brainteaser": {}})
    with pytest.raises(C.CompareError) as err:
        C.compare(C.Side("a:sft", [], "sft"), C.Side("b:dpo", [], "dpo"))
    assert str(err.value) == "no suite has per-item results on both sides (a:sft vs b:dpo)"


def test_compare_json_and_text_exactly():
    base = C.Side("a:sft", [Path("a")], "sft")
    new = C.Side("g:dpo", [Path("g/s0"), Path("g/s1")], "dpo")
    bad = C.MetricResult("mt-bench", "score", 7.0, 6.0, -1.0, -1.5, -0.5, "regressed", True, 0.25, True)
    results = [C.SuiteComparison("mt-bench", 3, 0, 1, [bad]), C.SuiteComparison("tiny-world", 0, 0, 0, [])]
    text = C.to_json(base, new, results, seed=5)
    assert text.startswith('{\n  "base": "a:sft",\n  "new": "g:dpo",')
    assert json.loads(text) == {
        "base": "a:sft", "new": "g:dpo", "base_runs": ["a"], "new_runs": ["g/s0", "g/s1"], "seed": 5,
        "suites": [{"suite": "mt-bench", "shared": 3, "only_base": 0, "only_new": 1, "metrics": [
            {"suite": "mt-bench", "metric": "score", "base": 7.0, "new": 6.0, "delta": -1.0, "low": -1.5, "high": -0.5,
             "verdict": "regressed", "gated": True, "threshold": 0.25, "failed": True}]},
            {"suite": "tiny-world", "shared": 0, "only_base": 0, "only_new": 0, "metrics": []}],
        "failed": True}
    assert C.to_text(base, new, results).splitlines()[:4] == [
        "base: a:sft", "new:  g:dpo (mean of 2 seeds)", "",
        "mt-bench: 3 items paired; excluded: 0 only in base, 1 only in new"]  # one side's extras alone are said
    assert C.to_text(base, new, results).splitlines()[5:] == ["", "tiny-world: 0 items paired", "",
                                                             "result: REGRESSION (a gated metric regressed beyond its threshold)"]
    only_base = [C.SuiteComparison("mt-bench", 3, 2, 0, [])]
    assert C.to_text(base, base, only_base).splitlines()[3] == "mt-bench: 3 items paired; excluded: 2 only in base, 0 only in new"


# ---------------------------------------------------------------- sweep
def test_cell_point_dir_and_grid_names():
    from selm_bench.harness.core.config import ConfigError

    cell = S.Cell("a=1,b=x,seed=2", {"a": "1", "b": "x"}, 2)
    assert (cell.dir, cell.point) == ("cells/a=1,b=x,seed=2", "a=1,b=x")
    assert S.Cell("seed=0", {}, 0).point == "default"
    assert S.SlurmOptions() == S.SlurmOptions(None, 1, 1440, 64, 8, "slurm")
    with pytest.raises(ConfigError) as err:
        S.parse_grid(["seed=1,2"])
    assert str(err.value) == "--grid seed: not a swept value (seeds: --seeds)"
    for grid, line in [({"data.split": ["a/b"]}, "--grid: value makes an unusable folder name: 'data.split=a/b,seed=0'"),
                       ({".x": ["1"]}, "--grid: value makes an unusable folder name: '.x=1,seed=0'")]:
        with pytest.raises(ConfigError) as err:
            S.cells(grid, [0])
        assert str(err.value) == line


def test_cell_config_passes_seed_lists_and_the_cells_values_to_load_config(monkeypatch):
    asked = []
    monkeypatch.setattr(S, "load_config", lambda config, overrides, sets: asked.append((config, overrides, sets)) or "cfg")
    cell = S.Cell("c", {"online.alpha": "0.5", "online.beta": "0.2"}, 3)
    assert S.cell_config(Path("x.yaml"), cell, ["sft", "selm"], None, ["dpo.beta=0.25"]) == "cfg"
    # the cell's own values come after the command's --set values, so they win
    assert asked == [(Path("x.yaml"), {"seed": 3, "methods": ["sft", "selm"], "suites": None},
                      ["dpo.beta=0.25", "online.alpha=0.5", "online.beta=0.2"])]


class _Cfg:
    """A stand-in for a cell's validated config: what `to_dict` hands the cell's run."""

    def __init__(self, *args):
        self.args = args

    def to_dict(self):
        config, cell, methods, suites, sets = self.args
        return {"config": config, "seed": cell.seed, "params": cell.params, "methods": methods, "suites": suites,
                "sets": sets}


def _fake_cell_run(cell_dir: str, acc: float) -> None:
    run = Path(cell_dir)
    _write(run / "manifest.json", {"results": [_result(run, "evals/sft/tiny-world", "tiny-world", "sft",
                                                       {"accuracy": acc}, info={})]})


ACC = {"online.alpha=0,seed=0": 0.0, "online.alpha=0,seed=1": 0.5, "online.alpha=0,seed=2": 1.0,
       "online.alpha=0.5,seed=0": 0.75, "online.alpha=0.5,seed=1": 0.75, "online.alpha=0.5,seed=2": 0.75}


def test_sweep_runs_each_cell_and_writes_its_tables_and_groups(tmp_path, monkeypatch):
    calls, seen = [], []

    def run_cell(cfg, cell_dir, cache, command):
        calls.append((cfg, cell_dir, cache, command))
        _fake_cell_run(cell_dir, ACC[Path(cell_dir).name])

    monkeypatch.setattr(S, "run_cell", run_cell)
    monkeypatch.setattr(S, "cell_config", _Cfg)
    out = tmp_path / "new" / "sw"  # its parent made too
    grid = {"online.alpha": ["0", "0.5"]}
    summary = S.sweep(None, grid, [0, 1, 2], out, methods=["sft"], suites=["tiny-world"], on_cell=lambda c: seen.append(c.name))
    names = [f"online.alpha={a},seed={s}" for a in ("0", "0.5") for s in (0, 1, 2)]
    assert seen == names
    assert calls == [({"config": None, "seed": s, "params": {"online.alpha": a}, "methods": ["sft"],
                       "suites": ["tiny-world"], "sets": []},
                      str(out / "cells" / f"online.alpha={a},seed={s}"), str(out / "cache"), [])
                     for a in ("0", "0.5") for s in (0, 1, 2)]
    assert json.loads((out / "sweep.json").read_text()) == {
        "config": "default", "grid": grid, "seeds": [0, 1, 2], "methods": ["sft"], "suites": ["tiny-world"], "sets": [],
        "command": None, "cells": [{"name": f"online.alpha={a},seed={s}", "dir": f"cells/online.alpha={a},seed={s}",
                                    "params": {"online.alpha": a}, "seed": s} for a in ("0", "0.5") for s in (0, 1, 2)]}
    assert json.loads((out / "groups" / "online.alpha=0.5" / "seeds.json").read_text()) == {
        "params": {"online.alpha": "0.5"}, "seeds": [0, 1, 2],
        "runs": ["../../cells/online.alpha=0.5,seed=0", "../../cells/online.alpha=0.5,seed=1",
                 "../../cells/online.alpha=0.5,seed=2"]}
    assert (out / "table.csv").read_text() == (
        "cell,online.alpha,seed,checkpoint,method,iteration,tiny-world/accuracy,provenance,label\n"
        '"online.alpha=0,seed=0",0,0,sft,sft,,0.0,"run online.alpha=0,seed=0",tiny world (tiny-world)\n'
        '"online.alpha=0,seed=1",0,1,sft,sft,,0.5,"run online.alpha=0,seed=1",tiny world (tiny-world)\n'
        '"online.alpha=0,seed=2",0,2,sft,sft,,1.0,"run online.alpha=0,seed=2",tiny world (tiny-world)\n'
        '"online.alpha=0.5,seed=0",0.5,0,sft,sft,,0.75,"run online.alpha=0.5,seed=0",tiny world (tiny-world)\n'
        '"online.alpha=0.5,seed=1",0.5,1,sft,sft,,0.75,"run online.alpha=0.5,seed=1",tiny world (tiny-world)\n'
        '"online.alpha=0.5,seed=2",0.5,2,sft,sft,,0.75,"run online.alpha=0.5,seed=2",tiny world (tiny-world)\n')
    # alpha 0: mean of 0, 0.5, 1 = 0.5, sample std sqrt((0.25 + 0 + 0.25) / 2) = 0.5; alpha 0.5: 0.75 thrice, std 0
    expected = [{"online.alpha": a, "checkpoint": "sft", "method": "sft", "iteration": None, "n_seeds": 3,
                 "label": "tiny world (tiny-world)", "tiny-world/accuracy": m, "tiny-world/accuracy_std": sd}
                for a, m, sd in (("0", 0.5, 0.5), ("0.5", 0.75, 0.0))]
    assert summary == expected
    assert json.loads((out / "summary.json").read_text()) == expected
    assert (out / "summary.csv").read_text() == (
        "online.alpha,n_seeds,checkpoint,method,iteration,tiny-world/accuracy,tiny-world/accuracy_std,provenance,label\n"
        "0,3,sft,sft,,0.5,0.5,,tiny world (tiny-world)\n"
        "0.5,3,sft,sft,,0.75,0.0,,tiny world (tiny-world)\n")
    table = json.loads((out / "table.json").read_text())
    assert table[0] == {"cell": names[0], "online.alpha": "0", "seed": 0, "checkpoint": "sft", "method": "sft",
                        "iteration": None, "provenance": f"run {names[0]}", "tiny-world/accuracy": 0.0, "label":
                        "tiny world (tiny-world)"} and len(table) == 6


def test_sweep_on_slurm_hands_the_jobs_over(tmp_path, monkeypatch):
    got = []

    def fake_slurm(jobs, out, opts, command):
        got.append(([(c.name, cfg, d, cache) for c, cfg, d, cache in jobs], out, opts, command))
        for _, _, d, _ in jobs:
            _fake_cell_run(d, 0.5)

    monkeypatch.setattr(S, "_run_slurm", fake_slurm)
    monkeypatch.setattr(S, "cell_config", _Cfg)
    monkeypatch.setattr(S, "run_cell", lambda *a: pytest.fail("a slurm sweep runs no cell here"))
    out = tmp_path / "sw"
    out.mkdir()  # a rerun into the same folder resumes
    cfg_file = tmp_path / "c.yaml"
    summary = S.sweep(cfg_file, {"online.alpha": ["0.5"]}, [4], out, sets=["online.beta=0.25"], launcher="slurm",
                      command=["selm-bench", "sweep"], cache=tmp_path / "shared")
    cfg = {"config": cfg_file, "seed": 4, "params": {"online.alpha": "0.5"}, "methods": None, "suites": None,
           "sets": ["online.beta=0.25"]}
    assert got == [([("online.alpha=0.5,seed=4", cfg, str(out / "cells/online.alpha=0.5,seed=4"),
                      str((tmp_path / "shared").resolve()))], out, S.SlurmOptions(), ["selm-bench", "sweep"])]
    sweep_json = json.loads((out / "sweep.json").read_text())
    assert (sweep_json["config"], sweep_json["sets"], sweep_json["command"]) == (str(cfg_file), ["online.beta=0.25"],
                                                                                 ["selm-bench", "sweep"])
    assert summary == [{"online.alpha": "0.5", "checkpoint": "sft", "method": "sft", "iteration": None, "n_seeds": 1,
                        "label": "tiny world (tiny-world)", "tiny-world/accuracy": 0.5, "tiny-world/accuracy_std": None}]


# ---------------------------------------------------------------- evaluate
def test_eval_context_resolves_the_spec_under_root(tmp_path):
    from selm_bench.evals.base import EvalContext
    from selm_bench.harness.run.evaluate import eval_context
    from selm_bench.harness.core.specs import EvalSpec, Ref

    (tmp_path / "ckpt" / "sft").mkdir(parents=True)
    (tmp_path / "world").mkdir()
    spec = EvalSpec(model=Ref(path="ckpt/sft"), name="sft", suite="lm-eval:openllm", options={"limit": 2},
                    data_dir="/d", world=Ref(path="world"), references={"sft": Ref(path="/abs/ref")}, backend="vllm",
                    backend_options={"dtype": "bf16"}, judge="openai:gpt-4", judge_base_url="http://judge/v1",
                    device="cuda", seed=4)
    runtime = {"concurrency": 8}
    ctx = eval_context(spec, tmp_path, tmp_path / "out", runtime=runtime, no_judge=True)
    assert ctx == EvalContext(
        model=str(tmp_path / "ckpt" / "sft"), name="sft", suite="lm-eval:openllm", out_dir=tmp_path / "out",
        options={"limit": 2}, preset="openllm", data_dir=Path("/d"), world_dir=tmp_path / "world", backend="vllm",
        backend_options={"dtype": "bf16"}, judge="openai:gpt-4",
        judge_options={"concurrency": 8, "base_url": "http://judge/v1"}, no_judge=True, device="cuda", seed=4,
        references={"sft": Path("/abs/ref")})
    assert runtime == {"concurrency": 8}  # the caller's runtime is not changed
    bare = EvalSpec(model=Ref(path="hub/model"), name="m", suite="tiny-world", options={}, data_dir=None, world=None,
                    references={}, backend="hf", backend_options={}, judge=None, judge_base_url=None, device="cpu", seed=0)
    assert eval_context(bare, tmp_path, tmp_path) == EvalContext(
        model="hub/model", name="m", suite="tiny-world", out_dir=tmp_path, options={}, preset=None, data_dir=None,
        world_dir=None, backend="hf", backend_options={}, judge=None, judge_options={}, no_judge=False, device="cpu",
        seed=0, references={})


def test_run_suite_calls_the_registered_suite_and_writes_its_files(tmp_path, monkeypatch):
    from selm_bench.evals.base import EvalContext, SuiteResult
    from selm_bench.harness.run import evaluate as E

    asked = []
    result = SuiteResult(metrics={"accuracy": 1.0}, items=[{"id": "q", "score": 1.0}], info={"n": 1})
    monkeypatch.setattr(E.registry, "get", lambda kind, name: asked.append((kind, name)) or (lambda ctx: result))
    ctx = EvalContext(model="m", name="dpo", out_dir=tmp_path)
    assert E.run_suite(ctx, "tiny-world", method="dpo") is result
    assert asked == [("suite", "tiny-world")]
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert (written["suite"], written["checkpoint"], written["method"], written["metrics"]) == (
        "tiny-world", "dpo", "dpo", {"accuracy": 1.0})
    assert (tmp_path / "items.jsonl").read_text() == '{"id": "q", "score": 1.0}\n'


def test_relocate_task_files_rewrites_yaml_and_the_top_metrics_only(tmp_path):
    from selm_bench.harness.run.evaluate import relocate_task_files

    tmp, final = tmp_path / "tmp", tmp_path / "final"
    src = str(tmp.resolve())
    _write(tmp / "task.yaml", f"dataset_path: {src}/data\n")
    _write(tmp / "sub" / "deep.yaml", f"include: {src}/task.yaml\n")
    _write(tmp / "metrics.json", f'{{"context": "{src}/x"}}')
    _write(tmp / "sub" / "metrics.json", f'{{"context": "{src}/x"}}')  # not the folder's own: kept
    _write(tmp / "notes.txt", f"{src}\n")  # neither YAML nor metrics.json: kept
    _write(tmp / "plain.yaml", "no path here\n")
    relocate_task_files(tmp, final)
    dst = str(final.resolve())
    assert (tmp / "task.yaml").read_text() == f"dataset_path: {dst}/data\n"
    assert (tmp / "sub" / "deep.yaml").read_text() == f"include: {dst}/task.yaml\n"
    assert (tmp / "metrics.json").read_text() == f'{{"context": "{dst}/x"}}'
    assert (tmp / "sub" / "metrics.json").read_text() == f'{{"context": "{src}/x"}}'
    assert (tmp / "notes.txt").read_text() == f"{src}\n"
    assert (tmp / "plain.yaml").read_text() == "no path here\n"
    # with `src`: the folder the files were made in, not the one they are in now
    other = tmp_path / "made-in"
    _write(tmp / "again.yaml", f"path: {other.resolve()}/a\n")
    relocate_task_files(tmp, final, src=other)
    assert (tmp / "again.yaml").read_text() == f"path: {dst}/a\n"


# ---------------------------------------------------------------- datapull
def test_default_and_pulled_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("SELM_BENCH_DATA", str(tmp_path / "d"))
    assert D.default_dir() == tmp_path / "d"
    assert D.pulled_dir() is None
    _write(tmp_path / "d" / "pulled.json", {})
    assert D.pulled_dir() == tmp_path / "d"
    monkeypatch.setenv("SELM_BENCH_DATA", "")  # empty: the home cache
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert D.default_dir() == tmp_path / "home" / ".cache" / "selm-bench" / "data"


def test_sha256_of_known_vectors(tmp_path):
    (tmp_path / "abc").write_bytes(b"abc")
    (tmp_path / "empty").write_bytes(b"")
    assert (D._sha256(tmp_path / "abc"), D._sha256(tmp_path / "empty")) == (ABC_SHA256, EMPTY_SHA256)


@pytest.fixture
def urlopen(monkeypatch):
    """A stand-in for the network: records (url, timeout), serves b"abc" or raises what it is told."""
    monkeypatch.delenv("SELM_BENCH_DATA_URL", raising=False)
    state = types.SimpleNamespace(calls=[], error=None, watch=None, seen=None)

    def fake(url, timeout):
        state.calls.append((url, timeout))
        if state.watch:  # what the destination folder holds while the download runs
            state.seen = sorted(p.name for p in state.watch.iterdir())
        if state.error:
            raise state.error
        return io.BytesIO(b"abc")

    monkeypatch.setattr(D.urllib.request, "urlopen", fake)
    return state


ALT = "download it from https://example.invalid/q.jsonl yourself and pass --data-dir DIR (the file at DIR/d/q.jsonl)"


def test_fetch_downloads_caches_and_uses_a_mirror(tmp_path, monkeypatch, urlopen):
    good = D.Artefact("mt-bench", "d/q.jsonl", "https://example.invalid/q.jsonl", ABC_SHA256, 3)
    urlopen.watch = tmp_path / "one" / "d"
    assert D.fetch(good, tmp_path / "one") == "downloaded"
    # meanwhile only a hidden temp file: .<name>.<random>.tmp
    assert len(urlopen.seen) == 1 and urlopen.seen[0].startswith(".q.jsonl.") and urlopen.seen[0].endswith(".tmp")
    urlopen.watch = None
    assert (tmp_path / "one" / "d" / "q.jsonl").read_bytes() == b"abc"
    assert sorted(p.name for p in (tmp_path / "one" / "d").iterdir()) == ["q.jsonl"]  # no temp file left
    assert D.fetch(good, tmp_path / "one") == "cached"
    assert urlopen.calls == [("https://example.invalid/q.jsonl", 30.0)]  # the cached copy asked nothing
    monkeypatch.setenv("SELM_BENCH_DATA_URL", "http://mirror/X/")
    assert D.fetch(good, tmp_path / "two", timeout=2.5) == "downloaded"
    assert urlopen.calls[-1] == ("http://mirror/X/d/q.jsonl", 2.5)
    bad = D.Artefact("mt-bench", "d/q.jsonl", good.url, "0" * 64, 3)
    with pytest.raises(D.DataPullError) as err:
        D.fetch(bad, tmp_path / "three")
    assert str(err.value) == ("mt-bench: d/q.jsonl from http://mirror/X/d/q.jsonl does not match its pinned SHA-256 "
                              f"(got ba7816bf8f01..., expected 000000000000...); {ALT}")
    assert list((tmp_path / "three" / "d").iterdir()) == []


@pytest.mark.parametrize("error,reason", [(urllib.error.URLError("connection refused"), "connection refused"),
                                          (OSError("disk full"), "disk full"), (TimeoutError("timed out"), "timed out")])
def test_fetch_failures_are_one_line(tmp_path, urlopen, error, reason):
    urlopen.error = error
    good = D.Artefact("mt-bench", "d/q.jsonl", "https://example.invalid/q.jsonl", ABC_SHA256, 3)
    with pytest.raises(D.DataPullError) as err:
        D.fetch(good, tmp_path)
    assert str(err.value) == f"mt-bench: cannot fetch d/q.jsonl from https://example.invalid/q.jsonl ({reason}); {ALT}"
    assert list((tmp_path / "d").iterdir()) == []


def test_pull_only_the_named_suites_and_its_manifest(tmp_path, monkeypatch, urlopen):
    monkeypatch.setenv("SELM_BENCH_DATA", str(tmp_path / "home-data"))
    mt = D.Artefact("mt-bench", "d/q.jsonl", "https://example.invalid/q.jsonl", ABC_SHA256, 3)
    ae = D.Artefact("alpaca-eval", "ae/o.json", "https://example.invalid/o.json", ABC_SHA256, 3)
    assert D.pull(["mt-bench"], artefacts=(mt, ae)) == {"d/q.jsonl": "downloaded"}  # to: the default folder
    assert urlopen.calls == [("https://example.invalid/q.jsonl", 30.0)]
    assert json.loads((tmp_path / "home-data" / "pulled.json").read_text()) == {
        "d/q.jsonl": {"url": "https://example.invalid/q.jsonl", "sha256": ABC_SHA256}}
    # brainteaser named, but none of its artefacts given: nothing to convert
    assert D.pull(["brainteaser"], tmp_path / "bt", artefacts=(mt,)) == {}
    assert json.loads((tmp_path / "bt" / "pulled.json").read_text()) == {}
    with pytest.raises(D.DataPullError) as err:
        D.pull(["mt-bench", "nope"], tmp_path / "x")
    assert str(err.value) == "nope: not a suite with data to pull (pullable: mt-bench, alpaca-eval, brainteaser)"
    assert not (tmp_path / "x").exists()


def test_load_plain_arrays_and_version_2_headers():
    from numpy.lib import format as npformat

    buf = io.BytesIO()
    np.save(buf, np.array([[1, 2], [3, 4]], dtype=np.int64))
    assert D.load_object_npy(buf.getvalue()) == [[1, 2], [3, 4]]
    arr = np.array([0.5, 1.5])
    v2 = io.BytesIO()
    npformat.write_array_header_2_0(v2, npformat.header_data_from_array_1_0(arr))
    v2.write(arr.tobytes())
    assert v2.getvalue()[6:8] == b"\x02\x00"  # the format version bytes after b"\x93NUMPY"
    assert D.load_object_npy(v2.getvalue()) == [0.5, 1.5]


def test_plain_turns_numpy_values_and_tuples_into_json_values():
    assert D._plain({1: (np.int64(2), [np.float64(0.5)]), "a": np.array([True])}) == {"1": [2, [0.5]], "a": [True]}
    assert json.dumps(D._plain((np.int32(3),))) == "[3]"


def test_sweep_table_headers_and_a_point_without_the_headline(tmp_path, suites):
    from selm_bench.harness.core.progress import console

    _write(tmp_path / "sweep.json", {"grid": {"a": ["1", "2"]}})
    summary = [{"a": "1", "checkpoint": "sft", "n_seeds": 2, "tiny-world/accuracy": 0.5, "tiny-world/accuracy_std": 0.25},
               {"a": "2", "checkpoint": "dpo", "n_seeds": 1, "tiny-world/accuracy": None, "tiny-world/score": 0.75}]
    with console.capture() as cap:
        S.print_summary(summary, tmp_path)
    text = cap.get()
    header = next(line for line in text.splitlines() if "┃" in line and "checkpoint" in line)
    # the headline, and score for the point that has no accuracy
    assert [c.strip() for c in header.split("┃")[1:-1]] == ["a", "checkpoint", "seeds", "tiny-world/accuracy",
                                                            "tiny-world/score"]
    body = [[c.strip() for c in line.split("│")[1:-1]] for line in text.splitlines() if "│" in line]
    assert body == [["1", "sft", "2", "0.5 ± 0.25", ""], ["2", "dpo", "1", "", "0.75"]]


def _npy(rows) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.array(rows, dtype=object), allow_pickle=True)
    return buf.getvalue()


def test_convert_brainteaser_writes_each_member_whole(tmp_path):
    import pyzipper

    raw = tmp_path / "bt" / "raw"
    raw.mkdir(parents=True)
    with pyzipper.AESZipFile(raw / "BTDATA.zip", "w", encryption=pyzipper.WZ_AES) as z:
        z.setpassword(b"brainteaser")  # the authors' published password
        for member in ("SP_train.npy", "WP_train.npy", "SP_test.npy", "WP_test.npy"):
            z.writestr(member, _npy([{"from": member, "q": "café?"}, {"from": member, "n": np.int64(2)}]))
        z.writestr("SP_test_answer.npy", _npy([{"key": 1}]))  # an answer key: not extracted
    (raw / "demonstration.npy").write_bytes(_npy([{"Question": "¿qué?"}, {"Answer": "x"}]))
    D.convert_brainteaser(tmp_path / "bt")
    assert sorted(p.name for p in (tmp_path / "bt").iterdir()) == [
        "SP_test.jsonl", "SP_train.jsonl", "WP_test.jsonl", "WP_train.jsonl", "demonstration.jsonl", "raw"]
    for name in ("SP_train", "WP_train", "SP_test", "WP_test"):
        assert (tmp_path / "bt" / f"{name}.jsonl").read_text(encoding="utf-8") == (
            f'{{"from": "{name}.npy", "q": "café?"}}\n{{"from": "{name}.npy", "n": 2}}\n')  # non-ASCII kept as is
    assert (tmp_path / "bt" / "demonstration.jsonl").read_text(encoding="utf-8") == (
        '{"Question": "¿qué?"}\n{"Answer": "x"}\n')


def test_refused_pickle_global_is_named_in_full():
    import pickle

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    with pytest.raises(pickle.UnpicklingError) as err:
        D.load_object_npy(_npy([Evil()]))
    assert str(err.value) == "refusing to load builtins.print from a downloaded file"


def test_a_subset_and_a_loopback_judge_are_labelled_in_the_files(tmp_path, suites):
    """MT-Bench on 3 of 80 questions with gpt-4 at a loopback endpoint: the row says both, in
    leaderboard.json and leaderboard.csv; no 'canonical-looking' empty label."""
    run = tmp_path / "r"
    info = {"mode": "fastchat", "judge": {"model": "gpt-4", "base_url": "http://127.0.0.1:9/v1"},
            "not_canonical": ["3/80 questions", "judge at http://127.0.0.1:9/v1"]}
    _write(run / "manifest.json", {"results": [_result(run, "evals/sft/mt-bench", "mt-bench", "sft", {"score": 2.5},
                                                       info=info)]})
    L.write_leaderboard(run, L.collect_rows(run))
    row = json.loads((run / "leaderboard.json").read_text())[0]
    assert row["label"] == "3/80 questions (mt-bench); judge at http://127.0.0.1:9/v1 (mt-bench)"
    assert "3/80 questions" in (run / "leaderboard.csv").read_text().splitlines()[1]
