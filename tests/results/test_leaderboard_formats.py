"""The leaderboard's machine and terminal formats, and its column choices, on hand-made rows with
the expected text written out by hand."""

import json

import pytest

from selm_bench.harness.reports import leaderboard as L

ROWS = [
    {"run": "r", "checkpoint": "sft", "method": "sft", "iteration": None, "tiny-world/accuracy": 0.5,
     "tiny-world/accuracy_stderr": 0.02, "mt-bench/score": 6.25, "label": "tiny world (tiny-world)", "provenance": "p1"},
    {"run": "r", "checkpoint": "selm/iter-1", "method": "selm", "iteration": 1, "tiny-world/accuracy": float("nan"),
     "mt-bench/score": 7.0, "provenance": "p2"},
]


def test_csv_json_markdown_exactly():
    assert L.columns(ROWS) == ["run", "checkpoint", "method", "iteration", "mt-bench/score", "tiny-world/accuracy",
                               "tiny-world/accuracy_stderr", "provenance", "label"]
    assert L.columns(ROWS, lead=["method", "nope"])[:3] == ["method", "run", "checkpoint"]
    assert L.to_csv(ROWS) == (
        "run,checkpoint,method,iteration,mt-bench/score,tiny-world/accuracy,tiny-world/accuracy_stderr,provenance,label\n"
        "r,sft,sft,,6.25,0.5,0.02,p1,tiny world (tiny-world)\n"
        "r,selm/iter-1,selm,1,7.0,,,p2,\n")
    assert json.loads(L.to_json(ROWS)) == [
        {"run": "r", "checkpoint": "sft", "method": "sft", "iteration": None, "mt-bench/score": 6.25,
         "tiny-world/accuracy": 0.5, "tiny-world/accuracy_stderr": 0.02, "provenance": "p1",
         "label": "tiny world (tiny-world)"},
        {"run": "r", "checkpoint": "selm/iter-1", "method": "selm", "iteration": 1, "mt-bench/score": 7.0,
         "tiny-world/accuracy": None, "tiny-world/accuracy_stderr": None, "provenance": "p2", "label": None}]
    assert L.to_json(ROWS).startswith('[\n  {\n    "run": "r",')  # indented
    assert L.to_markdown(ROWS) == (
        "| run | checkpoint | method | iteration | mt-bench/score | tiny-world/accuracy | tiny-world/accuracy_stderr "
        "| provenance | label |\n"
        "|---|---|---|---|---|---|---|---|---|\n"
        "| r | sft | sft |  | 6.25 | 0.5 | 0.02 | p1 | tiny world (tiny-world) |\n"
        "| r | selm/iter-1 | selm | 1 | 7 | nan |  | p2 |  |\n")


def test_write_leaderboard(tmp_path):
    L.write_leaderboard(tmp_path, ROWS)
    assert (tmp_path / "leaderboard.csv").read_text() == L.to_csv(ROWS)
    assert (tmp_path / "leaderboard.json").read_text() == L.to_json(ROWS) + "\n"


def test_column_choices_and_their_errors():
    assert L.headline_columns(ROWS) == ["mt-bench/score", "tiny-world/accuracy"]
    assert L.select_columns(ROWS, show_all=True) == ["mt-bench/score", "tiny-world/accuracy"]
    assert L.select_columns(ROWS, suite="tiny-world") == ["tiny-world/accuracy"]
    assert L.select_columns(ROWS, metrics=["tiny-world/accuracy"]) == ["tiny-world/accuracy"]
    for kw, line in [({"metrics": ["x/y"]}, "--metric x/y: no such column; columns: mt-bench/score, tiny-world/accuracy"),
                     ({"suite": "lm-eval"}, "--suite lm-eval: no results; suites: mt-bench, tiny-world")]:
        with pytest.raises(ValueError) as err:
            L.select_columns(ROWS, **kw)
        assert str(err.value) == line
    with pytest.raises(ValueError) as err:
        L.sort_rows(ROWS, "x/y")
    assert str(err.value) == "--sort x/y: no such column"
    rows = [{"checkpoint": "a", "m/x": 1.0}, {"checkpoint": "b"}, {"checkpoint": "c", "m/x": 3.0}, {"checkpoint": "d", "m/x": 0.0}]
    assert [r["checkpoint"] for r in L.sort_rows(rows, "m/x")] == ["c", "a", "d", "b"]
    assert L.restrict(ROWS, ["mt-bench/score"]) == [
        {k: v for k, v in r.items() if not k.startswith("tiny-world/")} for r in ROWS]
    assert L.restrict(ROWS, ["tiny-world/accuracy"])[0]["tiny-world/accuracy_stderr"] == 0.02
    assert len(L.restrict([{"checkpoint": "a", "m/x": None}], ["m/x"])) == 0
    assert L.suites_of(ROWS) == ["mt-bench", "tiny-world"]
    # AlpacaEval's headline is the LC win rate; a row without it also gets the win rate
    ae = [{"checkpoint": "a", "alpaca-eval/length_controlled_winrate": 20.0, "alpaca-eval/win_rate": 15.0},
          {"checkpoint": "b", "alpaca-eval/win_rate": 12.0}]
    assert L.headline_columns(ae) == ["alpaca-eval/length_controlled_winrate", "alpaca-eval/win_rate"]
    assert L.headline_columns(ae[:1]) == ["alpaca-eval/length_controlled_winrate"]
    assert L.headline_columns([{"checkpoint": "a", "new-suite/x": 1.0, "new-suite/y": 2.0}]) == ["new-suite/x"]


def test_terminal_table_cells():
    from selm_bench.harness.core.progress import console

    sweep = {"run": "s[a=1]", "checkpoint": "dpo", "method": "dpo", "tiny-world/accuracy": 0.6,
             "tiny-world/accuracy_std": 0.05, "tiny-world/accuracy_stderr": 0.01, "provenance": "sweep"}
    with console.capture() as cap:
        L.print_table([*ROWS, sweep, {"checkpoint": "x", "other/y": 1.0}], title="board [1]",
                      metric_cols=["tiny-world/accuracy", "mt-bench/score"])
    text = cap.get()
    assert "board [1]" in text
    lines = [line for line in text.splitlines() if "│" in line and ("r:sft" in line or "selm" in line or "s[a=1]" in line)]
    cells = [[c.strip() for c in line.split("│")[1:-1]] for line in lines]
    assert cells == [["r:sft", "0.5 ±0.039 †", "6.25", "tiny world", "p1"],  # 1.96 x 0.02; † on the tiny-world cell
                     ["r:selm/iter-1", "nan", "7", "", "p2"],
                     ["s[a=1]:dpo", "0.6 ±0.05 sd", "", "", "sweep"]]  # a sweep row: the spread across seeds
    assert "x" not in [c[0] for c in cells]  # a row with none of the shown metrics is left out
    with console.capture() as cap:
        L.print_table([], title="empty board")
    assert cap.get() == "empty board: no results yet\n"


def test_suite_labels_and_provenance(tmp_path):
    label = lambda suite, info: L.suite_label({"suite": suite, "info": info})
    assert label("tiny-world", {}) == ["tiny world"]
    assert label("mt-bench", {"judge": {"model": "gpt-4"}}) == []
    assert label("mt-bench", {"judge": {"model": "gpt-4o"}}) == ["gpt-4o judge"]
    assert label("mt-bench", {"mode": "tiny", "judge": {"model": "oracle"}}) == ["tiny world", "oracle judge"]
    assert label("alpaca-eval", {"annotator": "weighted_alpaca_eval_gpt4_turbo"}) == []
    assert label("alpaca-eval", {"annotator": "chatgpt"}) == ["chatgpt judge"]
    assert label("lm-eval:x", {"tasks": ["tinyworld_mc"]}) == ["tiny world"]
    assert label("new-suite", {"mode": "tiny"}) == ["tiny world"] and label("new-suite", {"mode": "real"}) == []
    assert label("lm-eval:openllm", {"tasks": ["arc_easy"]}) == []
    run = tmp_path / "myrun"
    run.mkdir()
    assert L.run_provenance(run) == "run myrun"
    (run / "config.yaml").write_text("name: x\n")  # sha256 a2a79ea37e... (sha256sum)
    (run / "manifest.json").write_text(json.dumps({"git_commit": "0123456789abcdef", "git_dirty": True}))
    assert L.run_provenance(run) == "run myrun · config a2a79ea37e · commit 01234567+dirty"
    (run / "stage.json").write_text(json.dumps({"git_commit": "fedcba9876543210"}))
    assert L.run_provenance(run, run / "stage.json") == "run myrun · config a2a79ea37e · commit fedcba98"


def test_sweep_rows(tmp_path):
    (tmp_path / "sweep.json").write_text(json.dumps({"grid": {"online.alpha": ["0", "0.1"]}, "cells": []}))
    with pytest.raises(FileNotFoundError) as err:
        L.sweep_rows(tmp_path)
    assert str(err.value) == f"{tmp_path}: the sweep has no summary.json yet (rerun `selm-bench sweep` to finish it)"
    (tmp_path / "summary.json").write_text(json.dumps([
        {"online.alpha": "0.1", "checkpoint": "selm/iter-2", "method": "selm", "n_seeds": 2, "tiny-world/accuracy": 0.6,
         "tiny-world/accuracy_std": 0.1}]))
    assert L.sweep_rows(tmp_path) == [
        {"checkpoint": "selm/iter-2", "method": "selm", "tiny-world/accuracy": 0.6, "tiny-world/accuracy_std": 0.1,
         "run": f"{tmp_path.name}[online.alpha=0.1]",
         "provenance": f"sweep {tmp_path.name} · online.alpha=0.1 · mean of 2 seed(s), ± std across seeds"}]


def test_rows_of_several_folders(tmp_path):
    for name, acc in (("a", 0.5), ("b", 0.6)):
        d = tmp_path / name / "evals" / "sft" / "tiny-world"
        d.mkdir(parents=True)
        (d / "metrics.json").write_text(json.dumps({"suite": "tiny-world", "checkpoint": "sft", "metrics": {"accuracy": acc}}))
        (tmp_path / name / "manifest.json").write_text(json.dumps({"results": ["evals/sft/tiny-world"]}))
    rows = L.collect_many([tmp_path / "a", tmp_path / "b"], published=False)
    assert [(r["run"], r["tiny-world/accuracy"]) for r in rows] == [("a", 0.5), ("b", 0.6)]
    both = L.collect_many([tmp_path], published=False)  # a folder of runs: each row names its run
    assert [(r["run"], r["tiny-world/accuracy"]) for r in both] == [("a", 0.5), ("b", 0.6)]
