"""Plots and the HTML report: the plotted numbers (hand-computed), a hand-made run folder and
sweep folder rendered into one self-contained file, read back as data (sections, tables, cells:
test_drilldown.py's HTML reader), and that file opened in headless Chromium."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from selm_bench.harness.reports import plots
from selm_bench.harness.reports.report import leaderboard_html, leaderboard_page, write_report
from test_drilldown import Node, counts, members, parse, table_data

PNG = b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------- a hand-made run folder
def _write(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(obj if isinstance(obj, str) else json.dumps(obj))


def _jsonl(path: Path, rows: list[dict]) -> None:
    _write(path, "".join(json.dumps(r) + "\n" for r in rows))


TINY = {  # checkpoint -> (tiny-world accuracy, its stderr, alpaca win rate, its standard error, mt-bench score)
    "sft": (0.40, 0.02, 50.0, 0.0, 5.0),
    "dpo": (0.45, 0.02, 49.0, 0.5, 5.2),
    "iterative-dpo/iter-1": (0.50, 0.02, 53.0, 0.8, 5.7),
    "selm/iter-1": (0.52, 0.02, 54.0, 0.7, 5.8),
    "selm/iter-2": (0.55, 0.016, 55.0, 0.7, 5.9),
}


# texts of the run's items that the drill-down shows as they are
TURN_1 = "hal has 5 books and gets 7 more . How many books ?"
JUDGMENT = "verifier score 0.2500 against the gold answer; Rating: [[3.2500]]"
LOSS = "ann has 3 cups and gets 2 more . How many cups ?"
RIDDLE = "What has keys but opens no locks?"


def make_run(root: Path, shift: float = 0.0, seed: int = 0) -> Path:
    """A finished run with the shapes of a real `train-and-eval` folder (values shifted by `shift`)."""
    results = []
    for ckpt, (acc, se, wr, wse, mt) in TINY.items():
        d = root / "evals" / ckpt
        _write(d / "tiny-world/metrics.json", {"suite": "tiny-world", "checkpoint": ckpt, "metrics": {
            "accuracy": acc + shift, "accuracy_stderr": se, "score": acc + 0.05, "accuracy/add": 0.9, "accuracy/sort": 0.1}})
        _jsonl(d / "tiny-world/items.jsonl", [
            {"id": "eval-0", "category": "add", "prompt": "bob has 9 books and gets 1 more . How many books ?",
             "answer": "10", "response": "10", "score": 1.0, "correct": True},
            {"id": "eval-1", "category": "sort", "prompt": "Sort : 4 12 14", "answer": "4 12 14",
             "response": "4 12 15", "score": 0.3333333333333333, "correct": False}])
        _write(d / "mt-bench/metrics.json", {"suite": "mt-bench", "checkpoint": ckpt, "metrics": {
            "score": mt, "turn-1": mt + 0.5, "category/add": 8.0, "category/sort": 3.0, "errors": 0}})
        _jsonl(d / "mt-bench/items.jsonl", [
            {"id": "mt-0", "turn": 1, "category": "add", "question": TURN_1,
             "answer": "12", "score": 10.0, "judgment": "verifier score 1.0000 against the gold answer; Rating: [[10.0000]]"},
            {"id": "mt-0/turn-2", "question_id": "mt-0", "turn": 2, "category": "add", "question": "Add 3 to that .",
             "answer": "16", "score": 3.25,
             "judgment": JUDGMENT},
            {"id": "mt-1", "turn": 1, "category": "sort", "question": "Sort : 9 2 5", "answer": "2 9 5", "score": -1,
             "judgment": "$ERROR$"}])
        _write(d / "alpaca-eval/metrics.json", {"suite": "alpaca-eval", "checkpoint": ckpt, "metrics": {
            "win_rate": wr, "standard_error": wse, "n_total": 2, "length_controlled_winrate": None}})
        _jsonl(d / "alpaca-eval/items.jsonl", [
            {"index": 0, "id": "eval-5", "category": "add", "instruction": LOSS,
             "output": "4", "reference_output": "5", "ref_score": 1.0, "score": 0.0, "preference": 1.0},
            {"index": 1, "id": "eval-6", "category": "add", "instruction": "Reverse : b e c", "output": "c e b",
             "reference_output": "c e b", "ref_score": 1.0, "score": 1.0, "preference": 1.5},
            {"index": 2, "id": "eval-7", "instruction": "Sort : 3 1 2", "output": "1 2 3", "reference_output": "1 2 3",
             "score": None, "preference": None, "judge_error": "HTTP 500 after 5 retries"}])
        results += [f"evals/{ckpt}/{s}" for s in ("tiny-world", "mt-bench", "alpaca-eval")]
    bt = root / "evals/selm/iter-2/brainteaser"
    _write(bt / "metrics.json", {"suite": "brainteaser", "checkpoint": "selm/iter-2", "metrics": {"overall": 0.5}})
    _jsonl(bt / "items.jsonl", [
        {"id": "SP-7", "puzzle": "SP", "pred": 1, "label": 0, "correct": False, "kind": "original"},
        {"id": "SP-7_SR", "puzzle": "SP", "pred": 0, "label": 0, "correct": True, "kind": "semantic"},
        {"id": "SP-7_CR", "puzzle": "SP", "pred": 2, "label": 2, "correct": True, "kind": "context"},
        {"id": "SP-8", "puzzle": "SP", "pred": 3, "label": 3, "correct": True, "kind": "original"}])
    _jsonl(bt / "tasks/brainteaser_sp.jsonl", [{"id": "SP-7", "question": RIDDLE,
                                               "choice_list": ["A piano", "A door", "A map", "None of above"], "label": 0}])
    results.append("evals/selm/iter-2/brainteaser")
    for name, alpha in (("dpo/model", None), ("selm/iter-1/model", 0.001), ("selm/iter-2/model", 0.001)):
        log = [{"loss": 0.69 - 0.01 * s, "rewards/chosen": 0.01 * s, "rewards/rejected": -0.02 * s,
                "rewards/margins": 0.03 * s, "rewards/accuracies": 0.5 + 0.01 * s, "step": 10 * s,
                **({"rewards/ref_response": -0.005 * s} if alpha else {})} for s in (1, 2, 3)]
        _write(root / "checkpoints" / name / "train_log.json", log + [{"train_loss": 0.6, "step": 30}])
        _write(root / "checkpoints" / name / "spec.json", {"alpha": alpha} if alpha else {"beta": 0.1})
    _write(root / "checkpoints/sft/model/train_log.json", [{"loss": 4.0, "step": 10}, {"loss": 1.0, "step": 20}])
    _write(root / "config.yaml", "name: tiny\nseed: 0\nonline:\n  start: dpo\n  alpha: 0.001\n")
    _write(root / "manifest.json", {
        "stages": {"checkpoints/sft/model": {"stage": "checkpoints/sft/model", "key": "d0d0ee48e6b65aed",
                                             "status": "done", "duration_s": 64.0, "git_commit": "e17a4e5a969c"}},
        "created": "2026-11-27T09:15:54+00:00", "packages": {"torch": "2.13.0+cpu", "trl": "1.16.0"},
        "git_commit": "e17a4e5a969ce15289e9cd1a710be3523a02d550", "git_dirty": False, "seed": seed,
        "python": "3.11.7", "command": ["selm-bench", "train-and-eval"], "started": "2026-11-27T11:33:46+00:00",
        "finished": "2026-11-27T11:40:00+00:00", "results": results})
    return root


@pytest.fixture(scope="module")
def run_report(tmp_path_factory) -> tuple[Path, str]:
    run = make_run(tmp_path_factory.mktemp("run"))
    out = write_report(run)
    return out, out.read_text()


def section(html: str, sid: str) -> Node:
    (s,) = [n for n in parse(html).find("section") if n.attrs.get("id") == sid]
    return s


def kv(table: Node) -> dict[str, str]:
    """A key-value table (a <th> and a <td> per row) as a dict."""
    return {tr.find("th")[0].text(): tr.find("td")[0].text() for tr in table.find("tr")}


def header(table: Node) -> list[list[tuple[str, str | None, str | None]]]:
    """A leaderboard's two header rows: (text, rowspan, colspan) per cell."""
    return [[(c.text(), c.attrs.get("rowspan"), c.attrs.get("colspan")) for c in tr.elements()]
            for tr in table.find("thead")[0].find("tr")]


def body(table: Node) -> list[list[str]]:
    return [[c.text() for c in tr.elements()] for tr in table.find("tbody")[0].find("tr")]


def drill_block(html: str, suite: str, checkpoint: str) -> Node:
    """One suite's drill-down block (<details>) for one checkpoint."""
    kids = section(html, "drilldown").elements()
    start = next(i for i, k in enumerate(kids) if k.attrs.get("id") == f"suite-{suite}")
    return next(k for k in kids[start + 1:] if k.tag == "details" and k.find("summary")[0].text().startswith(f"{checkpoint} "))


def drill_table(html: str, suite: str, checkpoint: str, n: int = 0) -> tuple[list[str], list[list[str]]]:
    """The n-th table of one suite's drill-down block for one checkpoint."""
    return table_data(drill_block(html, suite, checkpoint).find("table")[n])


# ---------------------------------------------------------------- the plotted numbers
ROWS = [
    {"checkpoint": "sft", "method": "sft", "iteration": None, "tiny-world/accuracy": 0.40},
    {"checkpoint": "dpo", "method": "dpo", "iteration": None, "tiny-world/accuracy": 0.45, "tiny-world/accuracy_stderr": 0.02},
    {"checkpoint": "selm/iter-2", "method": "selm", "iteration": 2, "tiny-world/accuracy": 0.55},
    {"checkpoint": "selm/iter-1", "method": "selm", "iteration": 1, "tiny-world/accuracy": 0.52,
     "tiny-world/accuracy_stderr": 0.016},
]


def test_iteration_series_starts_at_the_start_checkpoint():
    lines, refs = plots.iteration_series(ROWS, "tiny-world/accuracy", start="dpo")
    assert lines == {"selm": [(0, 0.45, 0.02), (1, 0.52, 0.016), (2, 0.55, None)]}
    assert refs == {"sft": 0.40, "dpo": 0.45}
    lines, _ = plots.iteration_series(ROWS, "tiny-world/accuracy", start="base")  # no such checkpoint
    assert lines == {"selm": [(1, 0.52, 0.016), (2, 0.55, None)]}


def test_headline_columns():
    rows = [{"checkpoint": "a", "tiny-world/accuracy": 0.5, "tiny-world/score": 0.6, "tiny-world/accuracy_stderr": 0.1,
             "alpaca-eval/win_rate": 50.0, "alpaca-eval/standard_error": 1.0, "lm-eval/tinyworld_mc/acc": 0.7,
             "lm-eval/tinyworld_mc/acc_norm": 0.8, "lm-eval/tinyworld_mc/acc_stderr": 0.02, "mt-bench/turn-1": 6.0,
             "mt-bench/score": 5.0, "brainteaser/original": 0.4, "brainteaser/overall": 0.3}]
    assert plots.headline_columns(rows) == ["alpaca-eval/win_rate", "brainteaser/overall", "lm-eval/tinyworld_mc/acc",
                                            "mt-bench/score", "tiny-world/accuracy"]
    rows[0]["alpaca-eval/length_controlled_winrate"] = 40.0
    rows[0]["lm-eval/average"] = 0.6
    assert plots.headline_columns(rows)[:3] == ["alpaca-eval/length_controlled_winrate", "brainteaser/overall",
                                                "lm-eval/average"]
    # without an average: each task's acc, else acc_norm, else its first metric
    tasks = [{"lm-eval/arc/ab": 1.0, "lm-eval/arc/acc_norm": 0.5, "lm-eval/gsm8k/exact_match": 0.1}]
    assert plots.headline_columns(tasks) == ["lm-eval/arc/acc_norm", "lm-eval/gsm8k/exact_match"]


def test_sweep_points_mean_and_std_across_seeds():
    def cell(alpha, seed, acc, se=None):
        row = {"checkpoint": "selm/iter-2", "method": "selm", "iteration": 2, "tiny-world/accuracy": acc}
        early = {"checkpoint": "selm/iter-1", "method": "selm", "iteration": 1, "tiny-world/accuracy": 0.0}
        if se is not None:
            row["tiny-world/accuracy_stderr"] = se
        return {"params": {"online.alpha": alpha}, "seed": seed, "rows": [early, row]}

    cells = [cell("0.1", 0, 0.5), cell("0.1", 1, 0.7), cell("0", 0, 0.4, se=0.03)]  # as typed on --grid
    pts = plots.sweep_points(cells, "online.alpha", "tiny-world/accuracy")
    assert list(pts) == ["selm/iter-2"]  # only each method's last iteration
    (x0, m0, e0, n0), (x1, m1, e1, n1) = pts["selm/iter-2"]
    assert (x0, m0, e0, n0) == (0.0, 0.4, 0.03, 1)  # one seed: the metric's stderr
    assert x1 == 0.1 and n1 == 2 and math.isclose(m1, 0.6)
    assert math.isclose(e1, math.sqrt(((0.5 - 0.6) ** 2 + (0.7 - 0.6) ** 2) / 1))  # sample std


def test_training_series_lays_iterations_end_to_end(tmp_path):
    logs = plots.training_logs(make_run(tmp_path))
    assert sorted(logs) == ["dpo", "selm/iter-1", "selm/iter-2", "sft"]
    assert logs["selm/iter-1"]["alpha"] == 0.001 and logs["dpo"]["alpha"] is None
    series = plots.training_series(logs, "rewards/margins")
    assert [x for x, _ in series["selm"]] == [10, 20, 30, 40, 50, 60]  # iter-2 continues after iter-1's step 30
    assert "sft" not in series and series["dpo"][-1] == (30, pytest.approx(0.09))


def test_plots_are_png_or_none(tmp_path):
    run = make_run(tmp_path)
    from selm_bench.harness.reports.leaderboard import collect_rows

    rows = collect_rows(run)
    for png in (plots.metric_vs_iteration_plot(rows), plots.win_rate_plot(rows), plots.mt_bench_category_plot(rows),
                plots.training_curves_plot(run),
                plots.sweep_plot([{"params": {"a": 1}, "seed": 0, "rows": rows}], "a", ["tiny-world/accuracy"])):
        assert png is not None and png.startswith(PNG) and len(png) > 1000
    assert plots.metric_vs_iteration_plot([]) is None and plots.win_rate_plot(ROWS) is None
    assert plots.mt_bench_category_plot(ROWS) is None and plots.training_curves_plot(tmp_path / "none") is None
    assert plots.sweep_plot([{"params": {"b": 1}, "seed": 0, "rows": rows}], "a", ["tiny-world/accuracy"]) is None


# ---------------------------------------------------------------- leaderboard_html
LB_ROWS = [{"run": "r1", "checkpoint": "sft", "method": "sft", "tiny-world/accuracy": 0.5,
            "tiny-world/accuracy_stderr": 0.0123, "mt-bench/score": 7.25, "provenance": "p1"},
           {"run": "r1", "checkpoint": "selm/iter-1", "method": "selm", "iteration": 1, "tiny-world/accuracy": 0.61234,
            "mt-bench/score": float("nan"), "provenance": "p2"}]


def test_leaderboard_table_groups_metrics_under_their_suite_with_intervals():
    (t,) = parse(leaderboard_html(LB_ROWS)).find("table")
    assert t.attrs == {"class": "leaderboard"} and t.find("caption")[0].text().startswith("± standard error")
    assert header(t) == [[("run", "2", None), ("checkpoint", "2", None), ("method", "2", None), ("iteration", "2", None),
                          ("mt-bench", None, "1"), ("tiny-world", None, "1"), ("provenance", "2", None)],
                         [("score", None, None), ("accuracy", None, None)]]
    assert body(t) == [["r1", "sft", "sft", "", "7.25", "0.5 ± 0.012", "p1"],  # the stderr beside its metric, 2 digits
                       ["r1", "selm/iter-1", "selm", "1", "", "0.6123", "p2"]]  # NaN: blank; 4 significant digits
    assert [[c.attrs.get("class") for c in tr.elements()] for tr in t.find("tbody")[0].find("tr")][0] == [
        None, None, None, None, "num", "num", None]  # numbers right-aligned
    assert not t.find("ul") and not parse(leaderboard_html(LB_ROWS)).find("ul")  # no labels: no notes


def test_a_seed_spread_is_shown_before_a_standard_error():
    # two metrics of one suite share its heading; a seed spread (_std) is preferred to a standard error
    (t,) = parse(leaderboard_html([{"checkpoint": "dpo", "x/a": 1, "x/b": "text", "x/a_std": 0.25, "x/a_stderr": 0.5,
                                    "seeds": "2"}])).find("table")
    assert t.find("caption")[0].text().startswith("± std across seeds")
    assert header(t) == [[("checkpoint", "2", None), ("seeds", "2", None), ("x", None, "3")],
                         [("a", None, None), ("a_stderr", None, None), ("b", None, None)]]
    assert body(t) == [["dpo", "2", "1 ± 0.25", "0.5", "text"]]


LONG = "tiny world (mt-bench, tiny-world); oracle judge (mt-bench)"


def test_a_label_is_a_mark_on_the_cells_it_names_and_a_note_under_the_table():
    rows = [{"checkpoint": "sft", "tiny-world/accuracy": 0.4, "mt-bench/score": 5.0, "alpaca-eval/win_rate": 50.0,
             "label": LONG},
            {"checkpoint": "dpo", "tiny-world/accuracy": 0.5, "mt-bench/score": 6.0, "alpaca-eval/win_rate": 51.0,
             "label": LONG},
            {"checkpoint": "selm", "tiny-world/accuracy": 0.6, "alpaca-eval/win_rate": 52.0, "label": "subset"},
            {"checkpoint": "zephyr", "alpaca-eval/win_rate": 10.99, "provenance": "published"}]
    doc = parse(leaderboard_html(rows))
    (t,) = doc.find("table")
    assert [h for h, _, _ in header(t)[0]] == ["checkpoint", "alpaca-eval", "mt-bench", "tiny-world", "provenance"]
    assert body(t) == [["sft", "50", "5 †1", "0.4 †1", ""],  # the suites the label names carry its mark
                       ["dpo", "51", "6 †1", "0.5 †1", ""],
                       ["selm †2", "52", "", "0.6", ""],  # a label naming no suite: the checkpoint carries it
                       ["zephyr", "10.99", "", "", "published"]]  # canonical: no mark
    assert max(len(c) for r in body(t) for c in r) < 12  # no long label cell pushes the metrics aside
    (notes,) = doc.find("ul", "notes")
    items = [li.text() for li in notes.find("li")]
    assert [i.split(" ", 1)[0] for i in items] == ["†1", "†2"]
    for label in (LONG, "subset"):  # each distinct label once, under the table and nowhere in it
        assert sum(i.endswith(label) for i in items) == 1 and label not in t.text()
    one = parse(leaderboard_html(rows[:2]))  # one label: a plain dagger, as in the terminal
    assert body(one.find("table")[0])[0][2:] == ["5 †", "0.4 †"] and one.find("li")[0].text().startswith("† ")


def test_leaderboard_text_is_escaped_and_its_page_self_contained():
    evil = "<script>x</script>"
    doc = parse(leaderboard_html([{"checkpoint": evil, "method": "m", "provenance": evil, "label": evil, "t/a": 1.0}]))
    assert not doc.find("script") and [r[0] for r in body(doc.find("table")[0])] == [evil + " †"]
    assert doc.find("li")[0].text().endswith(evil)
    page = leaderboard_page(LB_ROWS, title="board <1>")
    assert page.startswith("<!DOCTYPE html>") and page.endswith("</html>\n") and external_refs(page) == []
    assert parse(page).find("title")[0].text() == "board <1>"
    assert body(parse(page).find("table", "leaderboard")[0]) == body(parse(leaderboard_html(LB_ROWS)).find("table")[0])
    assert body(parse(leaderboard_html([])).find("table")[0]) == [["no results yet"]]


# ---------------------------------------------------------------- the run report
def test_run_report_content(run_report):
    out, html = run_report
    assert out.name == "report.html"
    doc = parse(html)
    imgs = [n.attrs["src"] for n in doc.find("img")]
    assert len(imgs) == 4 and all(s.startswith("data:image/png;base64,") for s in imgs)
    assert [(s.attrs["id"], s.find("h2")[0].text()) for s in doc.find("section")] == [
        ("leaderboard", "Leaderboard"), ("plots", "Plots"), ("drilldown", "Per-suite drill-down"),
        ("provenance", "Provenance")]
    assert [a.attrs["href"] for a in doc.find("nav")[0].find("a")] == [
        "#leaderboard", "#plots", "#drilldown", "#provenance"]
    # the leaderboard: each suite's headline first, every metric collapsed under it
    board = section(html, "leaderboard")
    compact, full = board.find("table", "leaderboard")
    assert header(compact)[1] == [("win_rate", None, None), ("overall", None, None), ("score", None, None),
                                  ("accuracy", None, None)]
    assert ("accuracy/add", None, None) in header(full)[1] and board.find("details")[0].find("table") == [full]
    assert [r[:2] + r[3:7] for r in body(compact)][-1] == ["selm/iter-2", "selm", "55 ± 0.7", "0.5", "5.9", "0.55 ± 0.016 †"]
    # provenance: the run's facts, package versions, config.yaml
    prov = section(html, "provenance")
    assert kv(prov.find("table", "kv")[0])["git commit"] == "e17a4e5a969ce15289e9cd1a710be3523a02d550"
    assert table_data(prov.find("table", "items")[0])[1] == [["torch", "2.13.0+cpu"], ["trl", "1.16.0"]]
    assert "alpha: 0.001" in prov.find("pre")[0].text()
    # drill-down: the tiny-world failure, MT-Bench's lowest rating with its turn 1 and the judge's words,
    # MT-Bench's failed judgment, the AlpacaEval loss, the BrainTeaser group with its question
    assert drill_table(html, "tiny-world", "sft", 1)[1] == [["sort", "Sort : 4 12 14", "4 12 14", "4 12 15", "0.3333"]]
    mt_summary, mt_lowest = drill_table(html, "mt-bench", "sft", 0)[1], drill_table(html, "mt-bench", "sft", 1)[1]
    assert mt_summary == [["add", "2", "6.625", "0"], ["sort", "0", "", "1"]]  # sort: only a failed judgment
    assert mt_lowest[0][1:] == ["mt-0 / 2", f"turn 1: {TURN_1} Add 3 to that .", "16", "3.25", JUDGMENT]
    assert drill_table(html, "alpaca-eval", "sft", 1)[1] == [[LOSS, "4", "5", "1"]]
    ((puzzle, group, marks, *rest),) = drill_table(html, "brainteaser", "selm/iter-2", 1)[1]
    assert (puzzle, group, members(marks), rest) == (
        "SP", "SP-7", {"original": "✗", "semantic": "✓", "context": "✓"}, [RIDDLE, "A door", "A piano"])
    alpaca = drill_block(html, "alpaca-eval", "sft")
    assert counts(alpaca.find("p")[0].text()) == {"wins": 0, "losses": 1, "ties": 1, "not annotated": 1, "of": 3}
    assert alpaca.find("div", "txt")[0].text() == "HTTP 500 after 5 retries"  # the failed judgment's reason


def test_text_from_result_files_is_escaped_in_the_report(tmp_path):
    evil = "<script>alert(1)</script>"
    run = make_run(tmp_path / "run")
    d = run / "evals" / "sft"
    _jsonl(d / "alpaca-eval/items.jsonl", [{"instruction": evil, "output": evil, "reference_output": "5", "preference": 1.0}])
    _jsonl(d / "mt-bench/items.jsonl", [{"id": "q", "turn": 1, "category": evil, "question": "q", "answer": evil,
                                          "score": 1.0, "judgment": evil}])
    _write(run / "config.yaml", f"name: {evil}\n")
    html = write_report(run).read_text()
    doc = parse(html)
    assert not doc.find("script") and external_refs(html) == []
    assert drill_table(html, "alpaca-eval", "sft", 0)[1] == [[evil, evil, "5", "1"]]
    assert drill_table(html, "mt-bench", "sft", 1)[1] == [[evil, "q / 1", "q", evil, "1", evil]]
    assert doc.find("title")[0].text() == f"selm-bench report: {evil}" and evil in doc.find("pre")[0].text()


def external_refs(html: str) -> list[str]:
    doc = parse(html)
    refs = [v for n in doc.find() for k, v in n.attrs.items() if k in ("src", "href", "srcset", "action", "poster") and v]
    bad = [r for r in refs if re.match(r"\s*(https?:)?//", r, re.I)]
    return bad + (["@import"] if "@import" in html else []) + [n.tag for n in doc.find() if n.tag in ("link", "script")]


def test_report_is_self_contained(run_report):
    assert external_refs(run_report[1]) == []
    assert external_refs('<img src="https://x/y.png"><a href="//cdn">') == ["https://x/y.png", "//cdn"]  # the check bites


def test_sweep_report(tmp_path):
    sweep = tmp_path / "sweep"
    cells = []
    for alpha, shift in (("0", 0.0), ("0.1", 0.05)):  # sweep.json keeps the values as typed
        for seed in (0, 1):
            name = f"online.alpha={alpha},seed={seed}"
            make_run(sweep / "cells" / name, shift=shift + 0.01 * seed, seed=seed)
            cells.append({"name": name, "dir": f"cells/{name}", "params": {"online.alpha": alpha}, "seed": seed})
    cells.append({"name": "online.alpha=1,seed=0", "dir": "cells/online.alpha=1,seed=0",
                  "params": {"online.alpha": "1"}, "seed": 0})  # not run yet
    _write(sweep / "cells/online.alpha=0.1,seed=0/report.html", "<html></html>")
    _write(sweep / "sweep.json", {"config": "configs/tiny.yaml", "grid": {"online.alpha": ["0", "0.1", "1"]},
                                  "seeds": [0, 1], "cells": cells})
    out = write_report(sweep, tmp_path / "elsewhere" / "sweep.html")
    html = out.read_text()
    assert external_refs(html) == []
    doc = parse(html)
    assert len(doc.find("img")) == 1
    assert [(s.attrs["id"], s.find("h2")[0].text()) for s in doc.find("section")] == [
        ("sweep", "Sweep"), ("leaderboard", "Sweep table"), ("plots", "Plots"), ("cells", "Cells")]
    intro = kv(section(html, "sweep").find("table", "kv")[0])
    assert (intro["seeds"], json.loads(intro["grid"])) == ("0, 1", {"online.alpha": ["0", "0.1", "1"]})
    assert [int(n) for n in re.findall(r"\d+", intro["cells"])] == [5, 4, 1]  # 5 cells, 4 finished, 1 not run
    # several seeds: the mean ± std across seeds first, then every cell (each with its compact and full table)
    table = section(html, "leaderboard")
    assert [h.text() for h in table.find("h3")] == ["Mean ± std across seeds", "Every cell"]
    means, _, every, _ = table.find("table", "leaderboard")
    assert [e.tag for e in table.elements()][1:4] == ["h3", "div", "details"]
    # seed means of selm/iter-2 accuracy at alpha 0.1: 0.55 + 0.05 + {0, 0.01} -> 0.605 ± std 0.0071
    row = next(r for r in body(means) if r[:2] == ["online.alpha=0.1", "selm/iter-2"])
    assert row[[h for h, _, _ in header(means)[0]].index("seeds")] == "2" and "0.605 ± 0.0071 †" in row
    assert len(body(every)) == 4 * len(TINY)
    status = table_data(section(html, "cells").find("table")[0])
    assert status[0] == ["cell", "params", "seed", "status", "commit", "cell report"]
    assert [(r[0], r[3]) for r in status[1]] == [(c["name"], s) for c, s in zip(cells, ["finished"] * 4 + ["not run"])]
    links = [n.attrs["href"] for n in section(html, "cells").find("a")]
    assert links == ["../sweep/cells/online.alpha=0.1,seed=0/report.html"]


def test_sweep_report_without_recorded_seeds_lists_the_cells_seeds(tmp_path):
    sweep = tmp_path / "sweep"
    cells = [{"name": "b", "dir": "cells/b", "params": {}, "seed": 3}, {"name": "a", "dir": "cells/a", "params": {}, "seed": 1},
             {"name": "c", "dir": "cells/c", "params": {}, "seed": None}, {"name": "d", "dir": "cells/d", "params": {}, "seed": 3}]
    _write(sweep / "sweep.json", {"config": "c.yaml", "grid": {}, "cells": cells})  # no "seeds": sorted, distinct, no None
    html = write_report(sweep).read_text()
    assert kv(section(html, "sweep").find("table", "kv")[0])["seeds"] == "1, 3"


def test_sweep_cell_status_not_run_not_finished_finished(tmp_path):
    from selm_bench.harness.reports.report import sweep_cells

    _write(tmp_path / "cells/b/manifest.json", {"stages": {}, "finished": None})  # started, interrupted
    _write(tmp_path / "cells/c/manifest.json", {"stages": {}, "finished": "2026-11-27T10:00:00", "git_commit": "abc"})
    cells = sweep_cells(tmp_path, {"cells": [{"dir": "cells/a"}, {"dir": "cells/b"}, {"dir": "cells/c"}]})
    assert [(c["name"], c["status"], c["commit"]) for c in cells] == [
        ("cells/a", "not run", None), ("cells/b", "not finished", None), ("cells/c", "finished", "abc")]


def test_key_value_table_leaves_missing_values_blank():
    from selm_bench.harness.reports.report import _kv

    (t,) = parse(_kv([("seed", 0), ("commit", None), ("a<b", "x&y")])).find("table")
    assert t.attrs == {"class": "kv"} and kv(t) == {"seed": "0", "commit": "", "a<b": "x&y"}


def test_sweep_cells_are_named_by_their_name_else_their_folder(tmp_path):
    from selm_bench.harness.reports.report import sweep_cells

    cells = sweep_cells(tmp_path, {"cells": [{"name": "alpha=0,seed=0", "dir": "cells/a"}, {"dir": "cells/b"}]})
    assert [(c["name"], c["status"], c["rows"]) for c in cells] == [("alpha=0,seed=0", "not run", []),
                                                                     ("cells/b", "not run", [])]


def test_bad_targets(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such folder"):
        write_report(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="not a run folder"):
        write_report(tmp_path / "empty")
    _write(tmp_path / "bad/sweep.json", {"cells": [{"params": {}}]})
    with pytest.raises(ValueError, match=r"cells\[0\]"):
        write_report(tmp_path / "bad")
    assert not list(tmp_path.rglob("report.html"))


def test_report_without_results(tmp_path):
    _write(tmp_path / "manifest.json", {"stages": {}, "results": []})
    html = write_report(tmp_path).read_text()
    assert body(section(html, "leaderboard").find("table")[0]) == [["no results yet"]]
    assert [p.text() for p in section(html, "drilldown").find("p")] == ["No suite results yet."]
    assert [p.text() for p in section(html, "plots").find("p")] == ["No plottable results yet."]
    assert not parse(html).find("img")


# ---------------------------------------------------------------- in a browser
CHECK = """<script>
window.addEventListener("load", () => {
  const imgs = Array.from(document.images);
  const t = document.querySelector("table.leaderboard");
  const box = t ? t.getBoundingClientRect() : {width: 0, height: 0, right: 0};
  document.body.setAttribute("data-check", JSON.stringify({
    images: imgs.length, rendered: imgs.filter(i => i.complete && i.naturalWidth > 0).length,
    rows: t ? t.tBodies[0].rows.length : 0, width: box.width, height: box.height, right: box.right}));
});
</script>"""


def chromium() -> str:
    exe = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not exe:
        pytest.skip("chromium not installed: install Debian's package (as root: apt-get install -y chromium); "
                    ".ci/run does this in CI")
    return exe


def browse(exe: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-default-apps", "--disable-extensions", "--disable-sync",
             "--no-first-run", "--no-default-browser-check", "--mute-audio", "--hide-scrollbars",
             "--force-device-scale-factor=1", "--host-resolver-rules=MAP * ~NOTFOUND",  # nothing resolves: offline
             f"--user-data-dir={profile}", "--window-size=1280,2000", "--virtual-time-budget=10000"]
    return subprocess.run([exe, *flags, *args], capture_output=True, text=True, timeout=180)


def test_report_renders_in_chromium(run_report, tmp_path):
    exe = chromium()
    out, html = run_report
    probe = tmp_path / "probe.html"  # the report plus a probe script that writes what rendered into the DOM
    probe.write_text(html.replace("</body>", CHECK + "</body>"))
    dom = browse(exe, tmp_path / "profile", "--dump-dom", probe.as_uri())
    m = re.search(r'data-check="([^"]*)"', dom.stdout)
    assert m, f"no probe result in the DOM (rc {dom.returncode}): {dom.stderr[-2000:]}"
    check = json.loads(m.group(1).replace("&quot;", '"'))
    assert check["images"] == 4 and check["rendered"] == 4
    assert check["rows"] == len(TINY) and check["width"] > 0 and check["height"] > 0
    assert check["right"] <= 1280  # the leaderboard's metrics fit a 1280-pixel window (no label column)

    shot = tmp_path / "report.png"
    res = browse(exe, tmp_path / "profile2", f"--screenshot={shot}", out.as_uri())
    assert shot.is_file(), res.stderr[-2000:]
    data = shot.read_bytes()
    assert data.startswith(PNG) and len(data) > 10_000


# ---------------------------------------------------------------- the pieces
def test_page_has_the_title_a_nav_link_per_section_and_inline_css():
    from markupsafe import Markup

    from selm_bench.harness.reports.report import _figures, _page

    page = _page("T&1", [("s1", "One", Markup("<p>1</p>")), ("s2", "Two<", "<p>2</p>")])
    doc = parse(page)
    assert page.startswith("<!DOCTYPE html>") and page.endswith("</html>\n")
    assert doc.find("title")[0].text() == "T&1" and doc.find("h1")[0].text() == "T&1"
    assert [(a.attrs["href"], a.text()) for a in doc.find("nav")[0].find("a")] == [("#s1", "One"), ("#s2", "Two<")]
    assert [(s.attrs["id"], [e.tag for e in s.elements()]) for s in doc.find("section")] == [
        ("s1", ["h2", "p"]), ("s2", ["h2"])]  # HTML (Markup) goes in as HTML, a plain str as text
    assert doc.find("section")[1].text() == "Two< <p>2</p>"
    assert "table.leaderboard" in doc.find("style")[0].text() and not doc.find("link")
    (fig,) = parse(_figures([(None, "nothing to draw"), (b"\x89PNG", "a<b")])).find("figure")
    assert fig.find("img")[0].attrs == {"src": "data:image/png;base64,iVBORw==", "alt": "a<b"}
    assert fig.find("figcaption")[0].text() == "a<b"
    assert [p.text() for p in parse(_figures([(None, "x")])).find("p")] == ["No plottable results yet."]


def test_provenance_lists_facts_packages_stages_training_setup_and_config(tmp_path):
    from selm_bench.harness.reports.report import provenance_html

    manifest = {"git_commit": "abcdef1234567890", "git_dirty": True, "seed": 3, "python": "3.12",
                "command": ["selm-bench", "train-and-eval"], "created": "c0", "started": "s0", "finished": None,
                "kept_stale": ["sft", "dpo"], "packages": {"torch": "2.13.0"},
                "stages": {"sft": {"status": "done", "duration_s": 12.5, "key": "k1", "git_commit": "0123456789abcdef",
                                   "ended": "e0"}}}
    _write(tmp_path / "checkpoints/sft/model/train_info.json",
           {"device": "cpu", "mixed_precision": "no", "num_processes": 2, "global_batch": 64, "learning_rate": 0.003})
    _write(tmp_path / "checkpoints/.tmp-dpo/model/train_info.json", {"device": "half-written"})  # a temp folder: skipped
    doc = parse(provenance_html(tmp_path, manifest, "name: x<y\n"))
    facts = kv(doc.find("table", "kv")[0])
    assert facts == {"git commit": facts["git commit"], "seed": "3", "python": "3.12", "command": "selm-bench train-and-eval",
                     "created": "c0", "started": "s0", "finished": "", "kept stale": "sft, dpo"}
    assert facts["git commit"].startswith("abcdef1234567890 (") and "uncommitted" in facts["git commit"]
    assert [h.text() for h in doc.find("h3")] == ["Package versions", "Stages", "Training setup", "config.yaml"]
    packages, stages, setup = (table_data(t) for t in doc.find("table", "items"))
    assert packages == (["package", "version"], [["torch", "2.13.0"]])
    assert stages == (["stage", "status", "seconds", "key", "commit", "ended"],
                      [["sft", "done", "12.5", "k1", "0123456789ab", "e0"]])  # the stage's commit to 12 characters
    assert setup == (["checkpoint", "device", "mixed precision", "processes", "global batch", "learning rate"],
                     [["checkpoints/sft/model", "cpu", "no", "2", "64", "0.003"]])
    assert doc.find("pre")[0].text() == "name: x<y"
    bare = parse(provenance_html(tmp_path / "none", {"stages": {"sft": {}}}, ""))  # a record with nothing in it yet
    assert table_data(bare.find("table", "items")[0])[1] == [["sft", "", "", "", "", ""]]  # no packages: no table
    clean = parse(provenance_html(tmp_path / "none", {"git_commit": "abc"}, ""))
    assert kv(clean.find("table", "kv")[0])["git commit"] == "abc" and "kept stale" not in kv(clean.find("table", "kv")[0])
    assert [h.text() for h in clean.find("h3")] == ["Package versions", "Stages", "config.yaml"]
    assert clean.elements()[-1].tag == "p" and clean.elements()[-1].text() == "none"  # no config.yaml


def test_a_training_setup_value_missing_from_train_info_is_an_empty_cell(tmp_path):
    """A train_info.json without some fields (written by an older version, say) leaves those cells blank."""
    from selm_bench.harness.reports.report import provenance_html

    _write(tmp_path / "checkpoints/sft/model/train_info.json", {"device": "cpu"})
    doc = parse(provenance_html(tmp_path, {"git_commit": "abc"}, ""))
    (setup,) = [table_data(t) for t in doc.find("table", "items") if table_data(t)[0][0] == "checkpoint"]
    assert setup[1] == [["checkpoints/sft/model", "cpu", "", "", "", ""]]


def test_run_summary_line(tmp_path):
    _write(tmp_path / "manifest.json", {"stages": {"a": {"status": "done"}, "b": {"status": "running"}}, "results": [],
                                        "git_commit": "0123456789abcdef"})
    html = write_report(tmp_path).read_text()
    where, status, done, commit = section(html, "leaderboard").find("p", "muted")[0].text().split(" · ")
    assert (where, status.startswith("not finished"), done, commit) == (
        str(tmp_path.resolve()), True, "1/2 stages done", "commit 0123456789ab")
    assert parse(html).find("title")[0].text() == "selm-bench report: " + tmp_path.name  # no config: the folder's name
    _write(tmp_path / "manifest.json", {"stages": {"a": {"status": "done"}}, "results": [], "finished": "t"})
    _write(tmp_path / "config.yaml", "name: my-run\n")
    html = write_report(tmp_path).read_text()
    assert section(html, "leaderboard").find("p", "muted")[0].text().split(" · ")[1:] == [
        "finished", "1/1 stages done", "commit ?"]
    assert parse(html).find("title")[0].text() == "selm-bench report: my-run"


def test_seed_means_of_a_grid_without_parameters():
    from selm_bench.harness.reports.report import seed_means

    cells = [{"params": {}, "seed": s, "rows": [{"run": f"c{s}", "checkpoint": "sft", "method": "sft",
                                                 "tiny-world/accuracy": acc, "label": "tiny"}]}
             for s, acc in ((0, 0.4), (1, 0.6))]
    (row,) = seed_means(cells)
    assert (row["run"], row["checkpoint"], row["seeds"], row["label"]) == ("(defaults)", "sft", "2", "tiny")
    assert math.isclose(row["tiny-world/accuracy"], 0.5) and math.isclose(row["tiny-world/accuracy_std"], math.sqrt(0.02))
