"""The leaderboard's machine and terminal formats, and its column choices, on hand-made rows with
the expected cells written out by hand."""

import csv
import io
import json

import pytest

from selm_bench.harness.reports import leaderboard as L
from support.run_files import stand_in_suites

ROWS = [
    {"run": "r", "checkpoint": "sft", "method": "sft", "iteration": None, "tiny-world/accuracy": 0.5,
     "tiny-world/accuracy_stderr": 0.02, "mt-bench/score": 6.25, "label": "tiny world (tiny-world)", "provenance": "p1"},
    {"run": "r", "checkpoint": "selm/iter-1", "method": "selm", "iteration": 1, "tiny-world/accuracy": float("nan"),
     "mt-bench/score": 7.0, "provenance": "p2"},
]
FILE_COLUMNS = ["run", "checkpoint", "method", "iteration", "mt-bench/score", "tiny-world/accuracy",
                "tiny-world/accuracy_stderr", "provenance", "label"]


@pytest.fixture
def suites(monkeypatch):
    return stand_in_suites(monkeypatch)


def rich_rows(text: str, sep: str = "│") -> list[list[str]]:
    """The cells of each line of a rich table drawn with `sep` (│ body rows, ┃ the header)."""
    return [[c.strip() for c in line.split(sep)[1:-1]] for line in text.splitlines() if sep in line]


def test_csv_json_markdown_cells():
    assert L.columns(ROWS) == FILE_COLUMNS
    assert L.columns(ROWS, lead=["method", "nope"])[:3] == ["method", "run", "checkpoint"]
    text = L.to_csv(ROWS)
    assert "\r" not in text and text.endswith("\n")  # plain newlines
    assert list(csv.reader(io.StringIO(text))) == [
        FILE_COLUMNS,
        ["r", "sft", "sft", "", "6.25", "0.5", "0.02", "p1", "tiny world (tiny-world)"],
        ["r", "selm/iter-1", "selm", "1", "7.0", "", "", "p2", ""]]  # nan and missing: empty
    assert json.loads(L.to_json(ROWS)) == [
        {"run": "r", "checkpoint": "sft", "method": "sft", "iteration": None, "mt-bench/score": 6.25,
         "tiny-world/accuracy": 0.5, "tiny-world/accuracy_stderr": 0.02, "provenance": "p1",
         "label": "tiny world (tiny-world)"},
        {"run": "r", "checkpoint": "selm/iter-1", "method": "selm", "iteration": 1, "mt-bench/score": 7.0,
         "tiny-world/accuracy": None, "tiny-world/accuracy_stderr": None, "provenance": "p2", "label": None}]
    assert L.to_json(ROWS).startswith('[\n  {\n    "run": "r",')  # indented
    md = L.to_markdown(ROWS).splitlines()
    assert L.to_markdown(ROWS).endswith("\n") and len(md) == 4
    assert all(line.startswith("| ") and line.endswith(" |") for line in md[:1] + md[2:])
    cells = [line[2:-2].split(" | ") for line in md[:1] + md[2:]]
    assert cells == [FILE_COLUMNS,
                     ["r", "sft", "sft", "", "6.25", "0.5", "0.02", "p1", "tiny world (tiny-world)"],
                     ["r", "selm/iter-1", "selm", "1", "7", "nan", "", "p2", ""]]  # 4 significant digits
    assert md[1] == "|" + "---|" * 9


def test_write_leaderboard(tmp_path):
    L.write_leaderboard(tmp_path, ROWS)
    assert (tmp_path / "leaderboard.csv").read_text() == L.to_csv(ROWS)
    assert (tmp_path / "leaderboard.json").read_text() == L.to_json(ROWS) + "\n"


def test_column_choices_and_their_errors():
    assert L.select_columns(ROWS, show_all=True) == ["mt-bench/score", "tiny-world/accuracy"]
    assert L.select_columns(ROWS, suite="tiny-world") == ["tiny-world/accuracy"]
    assert L.select_columns(ROWS, metrics=["tiny-world/accuracy"]) == ["tiny-world/accuracy"]
    # an error names the flag and its value, then what there is
    for kw, flag, choices in [({"metrics": ["x/y"]}, "--metric x/y:", "columns: mt-bench/score, tiny-world/accuracy"),
                              ({"suite": "lm-eval"}, "--suite lm-eval:", "suites: mt-bench, tiny-world")]:
        with pytest.raises(ValueError) as err:
            L.select_columns(ROWS, **kw)
        assert str(err.value).startswith(flag) and str(err.value).endswith(choices)
    with pytest.raises(ValueError) as err:
        L.sort_rows(ROWS, "x/y")
    assert str(err.value).startswith("--sort x/y:")
    assert L.restrict(ROWS, ["mt-bench/score"]) == [
        {k: v for k, v in r.items() if not k.startswith("tiny-world/")} for r in ROWS]
    assert L.restrict(ROWS, ["tiny-world/accuracy"])[0]["tiny-world/accuracy_stderr"] == 0.02
    assert len(L.restrict([{"checkpoint": "a", "m/x": None}], ["m/x"])) == 0
    assert L.suites_of(ROWS) == ["mt-bench", "tiny-world"]


def test_sort_is_best_first_with_rows_lacking_the_metric_last():
    rows = [{"checkpoint": "a", "m/x": 1.0}, {"checkpoint": "b"}, {"checkpoint": "c", "m/x": 3.0},
            {"checkpoint": "d", "m/x": 0.0}, {"checkpoint": "n", "m/x": -2.0}]
    # zero sorts between the positive and the negative values, not with the missing one
    assert [r["checkpoint"] for r in L.sort_rows(rows, "m/x")] == ["c", "a", "d", "n", "b"]


def test_headline_is_the_registered_metric_else_a_fallback_the_row_has(suites):
    assert L.headline_columns(ROWS) == ["mt-bench/score", "tiny-world/accuracy"]
    # MT-Bench's headline is score; a row with only turn-1 falls back to its own first metric (stderr left out)
    assert L.headline_columns([{"checkpoint": "a", "mt-bench/turn-1": 5.0, "mt-bench/turn-1_stderr": 0.1}]) == [
        "mt-bench/turn-1"]
    # an unregistered suite: win_rate, then score, then accuracy, then its first metric by name
    assert L.headline_columns([{"checkpoint": "a", "x-suite/score": 1.0, "x-suite/win_rate": 2.0}]) == ["x-suite/win_rate"]
    assert L.headline_columns([{"checkpoint": "a", "x-suite/aaa": 3.0, "x-suite/accuracy": 1.0,
                                "x-suite/score": 2.0}]) == ["x-suite/score"]
    assert L.headline_columns([{"checkpoint": "a", "x-suite/aaa": 3.0, "x-suite/accuracy": 1.0}]) == ["x-suite/accuracy"]
    assert L.headline_columns([{"checkpoint": "a", "x-suite/y": 2.0, "x-suite/x": 1.0}]) == ["x-suite/x"]
    assert L.headline_columns([{"checkpoint": "a", "x-suite/b_std": 1.0, "x-suite/c": 2.0}]) == ["x-suite/c"]
    assert L.headline_columns([{"checkpoint": "a", "x-suite/a_stderr": 1.0, "x-suite/b": 2.0}]) == ["x-suite/b"]
    # the headline, plus for the row without it the first metric that row has a value for (score is None there)
    rows = [{"checkpoint": "a", "tiny-world/accuracy": 0.5, "tiny-world/score": 0.5},
            {"checkpoint": "b", "tiny-world/accuracy": None, "tiny-world/score": None, "tiny-world/n": 3.0}]
    assert L.headline_columns(rows) == ["tiny-world/accuracy", "tiny-world/n"]
    assert L.headline_columns(rows[:1]) == ["tiny-world/accuracy"]


def test_alpaca_eval_headline_is_the_lc_win_rate_else_the_win_rate():
    ae = [{"checkpoint": "a", "alpaca-eval/length_controlled_winrate": 20.0, "alpaca-eval/win_rate": 15.0},
          {"checkpoint": "b", "alpaca-eval/win_rate": 12.0}]
    assert L.headline_columns(ae) == ["alpaca-eval/length_controlled_winrate", "alpaca-eval/win_rate"]
    assert L.headline_columns(ae[:1]) == ["alpaca-eval/length_controlled_winrate"]


def test_terminal_table_cells():
    from selm_bench.harness.core.progress import console

    sweep = {"run": "s[a=1]", "checkpoint": "dpo", "method": "dpo", "tiny-world/accuracy": 0.6,
             "tiny-world/accuracy_std": 0.05, "tiny-world/accuracy_stderr": 0.01, "provenance": "sweep"}
    with console.capture() as cap:
        L.print_table([*ROWS, sweep, {"checkpoint": "x", "other/y": 1.0}], title="board [1]",
                      metric_cols=["tiny-world/accuracy", "mt-bench/score"])
    text = cap.get()
    assert "board [1]" in text
    assert rich_rows(text) == [["r:sft", "0.5 ±0.039 †", "6.25", "tiny world", "p1"],  # 1.96 x 0.02; † on tiny-world
                               ["r:selm/iter-1", "nan", "7", "", "p2"],
                               ["s[a=1]:dpo", "0.6 ±0.05 sd", "", "", "sweep"]]  # a sweep row: the spread across seeds
    # the row with none of the shown metrics ("x") is left out
    with console.capture() as cap:
        L.print_table([], title="empty board")
    assert cap.get().startswith("empty board:") and "no results" in cap.get() and cap.get().count("\n") == 1


def test_terminal_table_header_caption_and_zero_spread():
    from selm_bench.harness.core.progress import console

    rows = [{"checkpoint": "sft", "t/a": 0.5, "t/a_stderr": 0.0, "provenance": "p"},
            {"checkpoint": "dpo", "t/a": 0.25, "t/a_std": 0.0, "label": "x judge (t); tiny world (mt-bench)"},
            {"checkpoint": "ipo", "t/a": 0.75, "t/a_stderr": 0.5}]
    with console.capture() as cap:
        L.print_table(rows, title="t [x]", metric_cols=["t/a"])
    text = cap.get()
    assert rich_rows(text) == [["sft", "0.5", "", "p"],  # stderr 0: no interval
                               ["dpo", "0.25 ±0 sd †", "x judge; tiny world", ""],  # an sd of 0 is still a spread
                               ["ipo", "0.75 ±0.98", "", ""]]  # 1.96 x 0.5
    assert [r for r in rich_rows(text, "┃") if "checkpoint" in r] == [["checkpoint", "t/a", "not canonical", "provenance"]]
    assert text.splitlines()[0].strip() == "t [x]"  # the title, markup brackets kept
    caption = " ".join(text.split())  # the legend of ±, ± sd and †, however rich wraps it
    assert all(token in caption for token in ("95% interval", "1.96", "± sd", "std across seeds", "†"))


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
    assert L.run_provenance(run).split(" · ") == ["run myrun", "config a2a79ea37e", "commit 01234567+dirty"]
    (run / "stage.json").write_text(json.dumps({"git_commit": "fedcba9876543210"}))  # the stage's own commit wins
    assert L.run_provenance(run, run / "stage.json").split(" · ") == ["run myrun", "config a2a79ea37e", "commit fedcba98"]


def test_sweep_rows_are_each_points_mean_named_by_its_values(tmp_path):
    (tmp_path / "sweep.json").write_text(json.dumps({"grid": {"online.alpha": ["0", "0.1"]}, "cells": []}))
    with pytest.raises(FileNotFoundError) as err:
        L.sweep_rows(tmp_path)
    assert str(err.value).startswith(f"{tmp_path}:") and "summary.json" in str(err.value)
    (tmp_path / "summary.json").write_text(json.dumps([
        {"online.alpha": "0.1", "checkpoint": "selm/iter-2", "method": "selm", "n_seeds": 2, "tiny-world/accuracy": 0.6,
         "tiny-world/accuracy_std": 0.1}]))
    [row] = L.sweep_rows(tmp_path)
    provenance = row.pop("provenance").split(" · ")
    assert row == {"checkpoint": "selm/iter-2", "method": "selm", "tiny-world/accuracy": 0.6,
                   "tiny-world/accuracy_std": 0.1, "run": f"{tmp_path.name}[online.alpha=0.1]"}
    assert provenance[:2] == [f"sweep {tmp_path.name}", "online.alpha=0.1"]
    assert "2 seed" in provenance[2] and "std across seeds" in provenance[2]
