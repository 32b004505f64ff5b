"""Leaderboard rows: which results of a run (or a folder of runs) become rows, in what order, with
what provenance and non-canonical labels; published reference rows; the files `refresh` writes; and
the `selm-bench leaderboard` command on a hand-made run."""

import csv
import hashlib
import io
import json
import sys
import types
from pathlib import Path

import alpaca_eval
import pytest
from typer.testing import CliRunner

from selm_bench.harness.cli import app
from selm_bench.harness.reports import leaderboard as L
from support.run_files import stand_in_suites, write_json, write_result


@pytest.fixture
def suites(monkeypatch):
    return stand_in_suites(monkeypatch)


def label_parts(label: str) -> dict[str, list[str]]:
    """A row's label as data: "reason (suite, suite); reason (suite)" -> {reason: [suite, ...]}."""
    parts = {}
    for part in label.split("; "):
        reason, suites = part.rsplit(" (", 1)
        parts[reason] = suites.rstrip(")").split(", ")
    return parts


def write_eval(run: Path, checkpoint: str, suite: str, metrics: dict, info: dict) -> str:
    return write_result(run, f"evals/{checkpoint}/{suite}", suite, checkpoint, metrics, info=info)


def make_run(root: Path) -> Path:
    run = root / "myrun"
    results = [
        write_eval(run, "sft", "tiny-world", {"accuracy": 0.5, "accuracy_stderr": 0.01, "score": 0.6}, {"split": "eval"}),
        write_eval(run, "sft", "mt-bench", {"score": 5.0, "turn-1": 5.5}, {"mode": "tiny", "judge": {"model": "oracle"}}),
        write_eval(run, "dpo", "tiny-world", {"accuracy": 0.7, "accuracy_stderr": 0.01, "score": 0.8}, {"split": "eval"}),
        write_eval(run, "dpo", "mt-bench", {"score": 6.0, "turn-1": 6.5}, {"mode": "fastchat", "judge": {"model": "gpt-4"}}),
        write_eval(run, "selm/iter-1", "mt-bench", {"score": 6.5}, {"mode": "fastchat", "judge": {"model": "gpt-4o-mini"}}),
    ]
    (run / "manifest.json").write_text(json.dumps({"results": results, "git_commit": "0123456789abcdef", "git_dirty": False}))
    (run / "config.yaml").write_text("name: myrun\nseed: 0\n")
    return run


def board(*args: str):
    res = CliRunner().invoke(app, ["leaderboard", *args])
    return res


# ---------------------------------------------------------------- rows of a run
def test_checkpoint_names_split_into_method_and_iteration():
    assert L.parse_checkpoint("selm/iter-12") == ("selm", 12)
    assert L.parse_checkpoint("a/b/iter-3") == ("a/b", 3)
    assert L.parse_checkpoint("sft") == ("sft", None)
    assert L.parse_checkpoint("selm/iter-x") == ("selm/iter-x", None)
    assert L.parse_checkpoint("iter-2") == ("iter-2", None)  # no method before the slash


def test_a_run_without_a_results_list_reads_its_suite_results_but_not_temp_or_foreign_files(tmp_path):
    run = tmp_path / "myrun"
    write_json(run / "manifest.json", {"git_commit": "abcdef0123456789"})  # no "results": every metrics.json
    write_result(run, "evals/custom/tiny-world", "tiny-world", "custom",
                 {"accuracy": 1, "flag": True, "note": "x", "score": 0.25}, method="dpo", iteration=4, info={})
    write_result(run, "evals/custom/.tmp-x", "mt-bench", "custom", {"score": 9.0})  # a temp folder: skipped
    write_result(run, ".partial/x", "mt-bench", "custom", {"turn-1": 9.0})
    write_json(run / "lib" / "metrics.json", {"checkpoint": "custom", "metrics": {"x": 1}})  # no suite
    write_json(run / "lib2" / "metrics.json", {"suite": "tiny-world", "metrics": {"x": 1}})  # no checkpoint
    write_result(run, "evals/published/alpaca-eval", "alpaca-eval", "ref-model", {"win_rate": 12.5},
                 info={"source": "alpaca_eval leaderboard", "annotator": "chatgpt"})
    rows = L.collect_rows(run)
    # method/iteration from the file win over the name; provenance: no stage.json, no config.yaml -> the manifest's
    # commit; only numeric metrics (not bools or text) become columns
    assert rows == [
        {"checkpoint": "custom", "method": "dpo", "iteration": 4, "provenance": "run myrun · commit abcdef01",
         "tiny-world/accuracy": 1.0, "tiny-world/score": 0.25, "label": "tiny world (tiny-world)"},
        {"checkpoint": "ref-model", "method": "ref-model", "iteration": None, "provenance": "alpaca_eval leaderboard",
         "alpaca-eval/win_rate": 12.5, "label": "chatgpt judge (alpaca-eval)"}]
    assert type(rows[0]["tiny-world/accuracy"]) is float  # the int 1 is stored as a float


def test_only_listed_results_are_rows_in_method_then_iteration_order(tmp_path):
    run = tmp_path / "run"
    listed = [write_result(run, f"evals/{ckpt}/tiny-world", "tiny-world", ckpt, {"accuracy": 0.5}, info={})
              for ckpt in ("zzz", "aaa", "selm/iter-2", "selm", "selm/iter-0", "selm/iter-1", "iterative-dpo/iter-1",
                           "dpo", "sft")]
    write_result(run, "evals/old/tiny-world", "tiny-world", "old", {"accuracy": 0.1})  # not listed: not in the table
    write_json(run / "manifest.json", {"results": [*listed, "evals/gone/tiny-world"]})  # a listed result that is missing
    # sft, dpo, iterative-dpo, selm first, then unknown methods by name; within a method by iteration, None counting
    # as 0 (stable: "selm" was listed before "selm/iter-0")
    assert [r["checkpoint"] for r in L.collect_rows(run)] == [
        "sft", "dpo", "iterative-dpo/iter-1", "selm", "selm/iter-0", "selm/iter-1", "selm/iter-2", "aaa", "zzz"]


def test_a_folder_of_runs_gives_rows_per_run_then_its_imports(tmp_path):
    for name, acc in (("b", 0.75), ("a", 0.5)):
        run = tmp_path / name
        write_json(run / "manifest.json", {"results": [write_result(run, "evals/sft/tiny-world", "tiny-world", "sft",
                                                                    {"accuracy": acc}, info={"split": "eval"})]})
    write_result(tmp_path / "notes", "x", "tiny-world", "sft", {"accuracy": 0.0})  # no manifest: not a run
    (tmp_path / "README").write_text("not a folder")
    write_result(tmp_path / "imports", "gpt4", "mt-bench", "gpt-4", {"score": 8.75}, method="reference",
                 info={"judge": {"model": "gpt-4"}})
    row = {"checkpoint": "sft", "method": "sft", "iteration": None, "label": "tiny world (tiny-world)"}
    assert L.collect_rows(tmp_path) == [
        {"run": "a", **row, "provenance": "run a", "tiny-world/accuracy": 0.5},
        {"run": "b", **row, "provenance": "run b", "tiny-world/accuracy": 0.75},
        {"run": "imports", "checkpoint": "gpt-4", "method": "reference", "iteration": None, "provenance": "run imports",
         "mt-bench/score": 8.75}]
    # a run folder with an imports folder: its own rows, then the imports' rows, without a run column
    (tmp_path / "a" / "imports").mkdir()
    write_result(tmp_path / "a" / "imports", "r", "mt-bench", "ref", {"score": 7.5}, info={"source": "paper"})
    assert L.collect_rows(tmp_path / "a") == [
        {**row, "provenance": "run a", "tiny-world/accuracy": 0.5},
        {"checkpoint": "ref", "method": "ref", "iteration": None, "provenance": "paper", "mt-bench/score": 7.5}]
    with pytest.raises(FileNotFoundError) as err:
        L.collect_rows(tmp_path / "nope")
    assert "not found" in str(err.value) and str(err.value).endswith(str(tmp_path / "nope"))


def test_rows_of_several_folders_name_their_run(tmp_path):
    for name, acc in (("a", 0.5), ("b", 0.6)):
        run = tmp_path / name
        write_json(run / "manifest.json", {"results": [write_result(run, "evals/sft/tiny-world", "tiny-world", "sft",
                                                                    {"accuracy": acc})]})
    rows = L.collect_many([tmp_path / "a", tmp_path / "b"], published=False)
    assert [(r["run"], r["tiny-world/accuracy"]) for r in rows] == [("a", 0.5), ("b", 0.6)]
    both = L.collect_many([tmp_path], published=False)  # a folder of runs: each row names its run
    assert [(r["run"], r["tiny-world/accuracy"]) for r in both] == [("a", 0.5), ("b", 0.6)]


def test_collect_many_reads_a_sweeps_summary_and_adds_published_rows(tmp_path, monkeypatch):
    run = tmp_path / "one"
    write_json(run / "manifest.json", {"results": [write_result(run, "e", "tiny-world", "sft", {"accuracy": 0.5},
                                                                info={})]})
    sw = tmp_path / "sw"
    write_json(sw / "sweep.json", {"grid": {"a": ["1"]}})
    write_json(sw / "summary.json", [{"a": "1", "checkpoint": "sft", "n_seeds": 1, "m/x": 2.0}])
    monkeypatch.setattr(L, "published_rows", lambda: [{"run": "published", "checkpoint": "P"}])
    rows = L.collect_many([run, sw])
    assert rows[0] == {"run": "one", "checkpoint": "sft", "method": "sft", "iteration": None, "provenance": "run one",
                       "tiny-world/accuracy": 0.5, "label": "tiny world (tiny-world)"}
    sweep = rows[1]
    provenance = sweep.pop("provenance").split(" · ")
    assert sweep == {"checkpoint": "sft", "m/x": 2.0, "run": "sw[a=1]"}  # the point's mean row, named by its values
    assert provenance[:2] == ["sweep sw", "a=1"] and "1 seed" in provenance[2]
    assert rows[2:] == [{"run": "published", "checkpoint": "P"}]
    assert [r["run"] for r in L.collect_many([run], published=False)] == ["one"]


def test_published_rows_come_from_the_csv_and_alpaca_evals_leaderboard_for_their_bases(tmp_path, monkeypatch):
    ref = tmp_path / "reference"
    write_json(ref / "published.csv",
               "model,method,iteration,base,source,mt-bench/score,alpaca-eval/win_rate\n"
               "Other,dpo,2,unknown-base,https://q,1,2\n"
               "M-iter-1,selm,1,zephyr-7b,https://hf.co/x,7.5,\n"
               "M-sft,sft,,zephyr-7b,http://y.org/z,,20.5\n"
               "L-iter-1,selm,1,llama-3-8b-instruct,https://l,,\n"
               "P-iter-1,selm,1,phi-3-mini-4k-instruct,https://p,,\n")
    fake = types.ModuleType("alpaca_eval")
    fake.__file__ = str(tmp_path / "ae" / "__init__.py")
    fake.__version__ = "9.9.9"
    leaderboard_csv = write_json(
        tmp_path / "ae/leaderboards/data_AlpacaEval_2/weighted_alpaca_eval_gpt4_turbo_leaderboard.csv",
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
    which = "leaderboard (data_AlpacaEval_2, weighted_alpaca_eval_gpt4_turbo)"
    # the zephyr base once (two rows name it); the unknown base has no leaderboard row; an empty cell is left out
    base = {"run": "published", "method": "base", "iteration": None, "provenance": f"alpaca_eval 9.9.9 {which}"}
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
    assert L.published_rows(ref)[-1]["provenance"] == f"alpaca_eval ? {which}"
    leaderboard_csv.unlink()
    assert L.published_rows(ref) == ours


def test_without_alpaca_eval_installed_the_published_rows_are_only_the_papers(tmp_path, monkeypatch):
    """Where the alpaca_eval package is not installed, the published rows are those of published.csv
    alone (no AlpacaEval 2.0 base-model rows), without an error."""
    import importlib.util

    ref = tmp_path / "reference"
    write_json(ref / "published.csv", "model,method,iteration,base,source,alpaca-eval/win_rate\n"
                                      "M-iter-1,selm,1,zephyr-7b,https://hf.co/x,20.5\n")
    monkeypatch.delitem(sys.modules, "alpaca_eval", raising=False)
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a, **k: None if name == "alpaca_eval" else real_find_spec(name, *a, **k))
    assert L.published_rows(ref) == [{"run": "published", "checkpoint": "M-iter-1", "method": "selm", "iteration": 1,
                                      "provenance": "published: hf.co/x", "alpaca-eval/win_rate": 20.5}]


def test_refresh_writes_the_csv_and_json_and_prints_the_table(tmp_path, suites):
    from selm_bench.harness.core.progress import console

    run = tmp_path / "r"
    write_json(run / "manifest.json", {"results": [write_result(run, "evals/sft/mt-bench", "mt-bench", "sft",
                                                                {"score": 6.5}, info={"judge": {"model": "gpt-4"}})]})
    with console.capture() as cap:
        rows = L.refresh(run, "my board")
    assert rows == [{"checkpoint": "sft", "method": "sft", "iteration": None, "provenance": "run r", "mt-bench/score": 6.5}]
    # label is always a column of the files (empty: the canonical judge on every question there is)
    assert list(csv.reader(io.StringIO((run / "leaderboard.csv").read_text()))) == [
        ["checkpoint", "method", "iteration", "mt-bench/score", "provenance", "label"], ["sft", "sft", "", "6.5", "run r", ""]]
    assert json.loads((run / "leaderboard.json").read_text()) == [
        {"checkpoint": "sft", "method": "sft", "iteration": None, "mt-bench/score": 6.5, "provenance": "run r",
         "label": None}]
    assert "my board" in cap.get() and "6.5" in cap.get()


def test_a_subset_and_a_loopback_judge_are_labelled_in_the_files(tmp_path, suites):
    """MT-Bench on 3 of 80 questions with gpt-4 at a loopback endpoint: the row says both, in
    leaderboard.json and leaderboard.csv; no canonical-looking empty label."""
    run = tmp_path / "r"
    info = {"mode": "fastchat", "judge": {"model": "gpt-4", "base_url": "http://127.0.0.1:9/v1"},
            "not_canonical": ["3/80 questions", "judge at http://127.0.0.1:9/v1"]}
    write_json(run / "manifest.json", {"results": [write_result(run, "evals/sft/mt-bench", "mt-bench", "sft",
                                                                {"score": 2.5}, info=info)]})
    L.write_leaderboard(run, L.collect_rows(run))
    row = json.loads((run / "leaderboard.json").read_text())[0]
    assert label_parts(row["label"]) == {note: ["mt-bench"] for note in info["not_canonical"]}
    [csv_row] = csv.DictReader(io.StringIO((run / "leaderboard.csv").read_text()))
    assert csv_row["label"] == row["label"]


# ---------------------------------------------------------------- the command
def test_json_rows_carry_provenance_and_labels(tmp_path):
    run = make_run(tmp_path)
    res = board("--results", str(run), "--all", "--format", "json")
    assert res.exit_code == 0, res.output
    rows = {(r["run"], r["checkpoint"]): r for r in json.loads(res.output)}
    config_hash = hashlib.sha256((run / "config.yaml").read_bytes()).hexdigest()[:10]
    sft, dpo, selm = rows[("myrun", "sft")], rows[("myrun", "dpo")], rows[("myrun", "selm/iter-1")]
    assert sft["provenance"].split(" · ") == ["run myrun", f"config {config_hash}", "commit 01234567"]
    assert label_parts(sft["label"]) == {"tiny world": ["mt-bench", "tiny-world"], "oracle judge": ["mt-bench"]}
    assert label_parts(dpo["label"]) == {"tiny world": ["tiny-world"]}  # MT-Bench with the published judge is canonical
    assert label_parts(selm["label"]) == {"gpt-4o-mini judge": ["mt-bench"]}
    assert (sft["tiny-world/accuracy"], dpo["mt-bench/score"]) == (0.5, 6.0)


def test_published_rows_beside_ours(tmp_path):
    run = make_run(tmp_path)
    rows = json.loads(board("--results", str(run), "--all", "--format", "json").output)
    assert json.loads(board("-r", str(run), "--all", "--format", "json").output) == rows  # the short flag
    published = {r["checkpoint"]: r for r in rows if r["run"] == "published"}
    # the SELM model cards' numbers (results/reference/published.csv)
    assert published["SELM-Zephyr-7B-iter-1"]["alpaca-eval/length_controlled_winrate"] == 20.28
    assert published["SELM-Llama-3-8B-Instruct-iter-3"]["mt-bench/score"] == 8.29
    assert published["SELM-Zephyr-7B-iter-1"]["provenance"].startswith("published: huggingface.co/ZhangShenao/")
    # base models from alpaca_eval's own AlpacaEval 2.0 leaderboard, with their standard errors
    board_csv = Path(alpaca_eval.__file__).parent / "leaderboards/data_AlpacaEval_2/weighted_alpaca_eval_gpt4_turbo_leaderboard.csv"
    with open(board_csv) as f:
        ref = {r[""]: r for r in csv.DictReader(f)}["Meta-Llama-3-8B-Instruct"]
    llama = published["Meta-Llama-3-8B-Instruct"]
    assert llama["alpaca-eval/length_controlled_winrate"] == float(ref["length_controlled_winrate"])
    assert llama["alpaca-eval/win_rate_stderr"] == float(ref["standard_error"])
    assert "alpaca_eval" in llama["provenance"] and not llama.get("label")
    assert "published" not in {r["run"] for r in json.loads(board("--results", str(run), "--no-published",
                                                                   "--format", "json").output)}


def test_compact_default_shows_each_suites_headline(tmp_path):
    run = make_run(tmp_path)
    header = board("--results", str(run), "--format", "markdown").output.splitlines()[0]  # json/csv: every metric
    metric_cols = {c.strip() for c in header.strip("|").split("|") if "/" in c and not c.strip().endswith("_stderr")}
    assert metric_cols == {"tiny-world/accuracy", "mt-bench/score", "alpaca-eval/length_controlled_winrate"}
    text = board("--results", str(run)).output
    assert "tiny-world/accuracy" in text and "turn-1" not in text and "†" in text
    assert "0.5 ±0.02" in text  # 1.96 × 0.01, the 95% interval
    suite_only = json.loads(board("--results", str(run), "--suite", "mt-bench", "--no-published", "--format", "json").output)
    assert {k for r in suite_only for k in r if "/" in k} == {"mt-bench/score", "mt-bench/turn-1"}


def test_sort_and_bad_names(tmp_path):
    run = make_run(tmp_path)
    rows = json.loads(board("--results", str(run), "--sort", "mt-bench/score", "--metric", "mt-bench/score",
                            "--format", "json").output)
    scores = [r["mt-bench/score"] for r in rows]
    assert scores == sorted(scores, reverse=True) and scores[0] == 8.44  # SELM-Phi-3-mini iter-2, the best published
    for args, msg in ((["--metric", "mt-bench/nope"], "--metric mt-bench/nope"), (["--suite", "nope"], "--suite nope"),
                      (["--sort", "x/y"], "--sort x/y"), (["--format", "xml"], "--format")):
        res = board("--results", str(run), *args)
        assert res.exit_code == 2 and res.output.strip().startswith("error:") and msg in res.output, res.output


def test_html_is_one_page(tmp_path):
    run = make_run(tmp_path)
    res = board("--results", str(run), "--format", "html")
    assert res.exit_code == 0 and res.output.lstrip().lower().startswith("<!doctype html")
    assert "SELM-Zephyr-7B-iter-1" in res.output and "oracle judge" in res.output


def test_report_of_a_folder_that_is_no_run_is_one_line_exit_2(tmp_path):
    (tmp_path / "some-folder").mkdir()
    res = CliRunner().invoke(app, ["report", str(tmp_path / "some-folder")])
    assert res.exit_code == 2 and res.output.count("\n") == 1 and "not a run folder" in res.output, res.output
    assert not (tmp_path / "some-folder" / "report.html").exists()
