"""Plots and the HTML report: the plotted numbers (hand-computed), a hand-made run folder and
sweep folder rendered into one self-contained file, and that file opened in headless Chromium."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from selm_bench.harness.reports import plots
from selm_bench.harness.reports.report import leaderboard_html, leaderboard_page, write_report

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
            {"id": "mt-0", "turn": 1, "category": "add", "question": "hal has 5 books and gets 7 more . How many books ?",
             "answer": "12", "score": 10.0, "judgment": "verifier score 1.0000 against the gold answer; Rating: [[10.0000]]"},
            {"id": "mt-0/turn-2", "question_id": "mt-0", "turn": 2, "category": "add", "question": "Add 3 to that .",
             "answer": "16", "score": 3.25,
             "judgment": "verifier score 0.2500 against the gold answer; Rating: [[3.2500]]"},
            {"id": "mt-1", "turn": 1, "category": "sort", "question": "Sort : 9 2 5", "answer": "2 9 5", "score": -1,
             "judgment": "$ERROR$"}])
        _write(d / "alpaca-eval/metrics.json", {"suite": "alpaca-eval", "checkpoint": ckpt, "metrics": {
            "win_rate": wr, "standard_error": wse, "n_total": 2, "length_controlled_winrate": None}})
        _jsonl(d / "alpaca-eval/items.jsonl", [
            {"index": 0, "id": "eval-5", "category": "add", "instruction": "ann has 3 cups and gets 2 more . How many cups ?",
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
    _jsonl(bt / "tasks/brainteaser_sp.jsonl", [{"id": "SP-7", "question": "What has keys but opens no locks?",
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


class Tags(HTMLParser):
    """Every start tag with its attributes, and the text."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def parse(html: str) -> Tags:
    t = Tags()
    t.feed(html)
    return t


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
def test_leaderboard_html_cells_intervals_and_labels():
    rows = [dict(ROWS[2], **{"run": "r1", "mt-bench/score": 5.25, "label": "tiny world, oracle judge: not canonical",
                             "provenance": "run r1, config 3f2a"}),
            dict(ROWS[3], run="r1"),
            {"run": "published", "checkpoint": "zephyr-7b-beta", "method": "base", "alpaca-eval/win_rate": 10.99,
             "alpaca-eval/win_rate_stderr": 0.96, "provenance": "alpaca_eval leaderboard"}]
    html = leaderboard_html(rows)
    t = parse(html)
    cells = [s.strip() for s in t.text if s.strip()]
    assert cells[:6] == ["± standard error where there is one", "†1", "tiny world, oracle judge: not canonical",
                         "run", "checkpoint", "method"]  # the caption: the interval, then each label once
    assert "0.52 ± 0.016" in cells and "0.55" in cells and "5.25" in cells and "10.99 ± 0.96" in cells
    assert "tiny world, oracle judge: not canonical" in cells and "run r1, config 3f2a" in cells
    assert cells.count("tiny world, oracle judge: not canonical") == 1 and cells.count("†1") == 2  # once, marked
    assert "accuracy_stderr" not in cells  # shown beside its metric, not as a column
    # alpaca-eval, mt-bench, tiny-world
    assert [a.get("colspan") for tag, a in t.tags if tag == "th" and a.get("colspan")] == ["1", "1", "1"]
    assert html.count("<tr>") == 2 + 3  # two header rows, three rows
    assert "<script" not in leaderboard_html([{"checkpoint": "<script>x</script>", "method": "m"}])
    page = leaderboard_page(rows)
    assert page.startswith("<!DOCTYPE html>") and html in page and external_refs(page) == []


# ---------------------------------------------------------------- the run report
def test_run_report_content(run_report):
    out, html = run_report
    assert out.name == "report.html"
    t = parse(html)
    imgs = [a["src"] for tag, a in t.tags if tag == "img"]
    assert len(imgs) == 4 and all(s.startswith("data:image/png;base64,") for s in imgs)
    for must in ("e17a4e5a969ce15289e9cd1a710be3523a02d550", "2.13.0+cpu", "alpha: 0.001",  # provenance
                 "Sort : 4 12 14", "4 12 15",  # tiny-world failure
                 "verifier score 0.2500 against the gold answer; Rating: [[3.2500]]", "turn 1: hal has 5 books",  # MT-Bench
                 "ann has 3 cups and gets 2 more . How many cups ?",  # AlpacaEval loss
                 "SP-7", "What has keys but opens no locks?", "A door", "A piano"):  # BrainTeaser group, question, pred, gold
        assert must in html, must
    assert "0 wins, 1 losses, 1 ties, 1 not annotated" in html
    sections = re.findall(r'<section id="(\w+)"><h2>([^<]*)</h2>', html)
    assert sections == [("leaderboard", "Leaderboard"), ("plots", "Plots"), ("drilldown", "Per-suite drill-down"),
                        ("provenance", "Provenance")]
    compact = html[html.index('<table class="leaderboard">'):html.index("</table>")]
    assert ">accuracy<" in compact and "accuracy/add" not in compact and "accuracy/add" in html  # headline first and "HTTP 500 after 5 retries" in html
    assert re.search(r"<td>sort</td><td>0</td><td></td><td>1</td>", html)  # MT-Bench: only a failed judgment


def external_refs(html: str) -> list[str]:
    t = parse(html)
    refs = [v for _, a in t.tags for k, v in a.items() if k in ("src", "href", "srcset", "action", "poster") and v]
    bad = [r for r in refs if re.match(r"\s*(https?:)?//", r, re.I)]
    return bad + (["@import"] if "@import" in html else []) + [f"{tag}" for tag, a in t.tags if tag in ("link", "script")]


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
    t = parse(html)
    assert len([a for tag, a in t.tags if tag == "img"]) == 1
    text = " ".join(t.text)
    for c in cells:
        assert c["name"] in text
    assert "not run" in text and "5 (4 finished, 1 not run)" in text
    # seed means of selm/iter-2 accuracy at alpha 0.1: 0.55 + 0.05 + {0, 0.01}
    assert "0.605 ± 0.0071" in html
    assert '<section id="leaderboard"><h2>Sweep table</h2><h3>Mean ± std across seeds</h3>' in html
    assert html.index("<h3>Every cell</h3>") > html.index("<h3>Mean ± std across seeds</h3>")
    assert '</details><h3>Every cell</h3><div class="scroll">' in html and "</details></section>" in html
    links = [a["href"] for tag, a in t.tags if tag == "a" and not a["href"].startswith("#")]
    assert links == ["../sweep/cells/online.alpha=0.1,seed=0/report.html"]
    sections = re.findall(r'<section id="(\w+)"><h2>([^<]*)</h2>', html)
    assert sections == [("sweep", "Sweep"), ("leaderboard", "Sweep table"), ("plots", "Plots"), ("cells", "Cells")]
    assert "<tr><th>seeds</th><td>0, 1</td></tr>" in html


def test_sweep_report_without_recorded_seeds_lists_the_cells_seeds(tmp_path):
    sweep = tmp_path / "sweep"
    cells = [{"name": "b", "dir": "cells/b", "params": {}, "seed": 3}, {"name": "a", "dir": "cells/a", "params": {}, "seed": 1},
             {"name": "c", "dir": "cells/c", "params": {}, "seed": None}, {"name": "d", "dir": "cells/d", "params": {}, "seed": 3}]
    _write(sweep / "sweep.json", {"config": "c.yaml", "grid": {}, "cells": cells})  # no "seeds": sorted, distinct, no None
    html = write_report(sweep).read_text()
    assert "<tr><th>seeds</th><td>1, 3</td></tr>" in html


def test_sweep_cell_status_not_run_not_finished_finished(tmp_path):
    from selm_bench.harness.reports.report import sweep_cells

    _write(tmp_path / "cells/b/manifest.json", {"stages": {}, "finished": None})  # started, interrupted
    _write(tmp_path / "cells/c/manifest.json", {"stages": {}, "finished": "2026-11-27T10:00:00", "git_commit": "abc"})
    cells = sweep_cells(tmp_path, {"cells": [{"dir": "cells/a"}, {"dir": "cells/b"}, {"dir": "cells/c"}]})
    assert [(c["name"], c["status"], c["commit"]) for c in cells] == [
        ("cells/a", "not run", None), ("cells/b", "not finished", None), ("cells/c", "finished", "abc")]


def test_key_value_table_leaves_missing_values_blank():
    from selm_bench.harness.reports.report import _kv

    assert _kv([("seed", 0), ("commit", None), ("a<b", "x&y")]) == (
        '<table class="kv"><tbody><tr><th>seed</th><td>0</td></tr><tr><th>commit</th><td></td></tr>'
        "<tr><th>a&lt;b</th><td>x&amp;y</td></tr></tbody></table>")


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
    assert "no results yet" in html and "No suite results yet." in html and "<img" not in html


# ---------------------------------------------------------------- in a browser
CHECK = """<script>
window.addEventListener("load", () => {
  const imgs = Array.from(document.images);
  const t = document.querySelector("table.leaderboard");
  const box = t ? t.getBoundingClientRect() : {width: 0, height: 0};
  document.body.setAttribute("data-check", JSON.stringify({
    images: imgs.length, rendered: imgs.filter(i => i.complete && i.naturalWidth > 0).length,
    rows: t ? t.tBodies[0].rows.length : 0, width: box.width, height: box.height}));
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

    shot = tmp_path / "report.png"
    res = browse(exe, tmp_path / "profile2", f"--screenshot={shot}", out.as_uri())
    assert shot.is_file(), res.stderr[-2000:]
    data = shot.read_bytes()
    assert data.startswith(PNG) and len(data) > 10_000


# ---------------------------------------------------------------- exact HTML of the pieces, written by hand
def test_leaderboard_html_exactly():
    rows = [{"run": "r1", "checkpoint": "sft", "method": "sft", "tiny-world/accuracy": 0.5,
             "tiny-world/accuracy_stderr": 0.0123, "mt-bench/score": 7.25, "label": "a<b", "provenance": "p1"},
            {"run": "r1", "checkpoint": "selm/iter-1", "method": "selm", "iteration": 1, "tiny-world/accuracy": 0.61234,
             "mt-bench/score": float("nan"), "provenance": "p2"}]
    top = ('<th rowspan="2">run</th><th rowspan="2">checkpoint</th><th rowspan="2">method</th>'
           '<th rowspan="2">iteration</th><th rowspan="2">label</th><th colspan="1">mt-bench</th>'
           '<th colspan="1">tiny-world</th><th rowspan="2">provenance</th>')
    body = ('<tr><td>r1</td><td>sft</td><td>sft</td><td></td><td>†1</td><td class="num">7.25</td>'
            '<td class="num">0.5 ± 0.012</td><td>p1</td></tr>'
            '<tr><td>r1</td><td>selm/iter-1</td><td>selm</td><td>1</td><td></td><td></td>'
            '<td class="num">0.6123</td><td>p2</td></tr>')
    assert leaderboard_html(rows) == (
        '<table class="leaderboard"><caption>± standard error where there is one'
        '<br><span>†1</span> <span>a&lt;b</span></caption>'  # the label once, under the table; its cells carry the mark
        f"<thead><tr>{top}</tr><tr><th>score</th><th>accuracy</th></tr></thead><tbody>{body}</tbody></table>")
    # two metrics of one suite share its heading; a seed spread (_std) is preferred to a standard error
    two = leaderboard_html([{"checkpoint": "dpo", "x/a": 1, "x/b": "text", "x/a_std": 0.25, "x/a_stderr": 0.5, "seeds": "2"}])
    assert two == ('<table class="leaderboard"><caption>± std across seeds where there is one</caption><thead><tr>'
                   '<th rowspan="2">checkpoint</th><th rowspan="2">seeds</th><th colspan="3">x</th></tr><tr><th>a</th>'
                   '<th>a_stderr</th><th>b</th></tr></thead><tbody><tr><td>dpo</td><td>2</td><td class="num">1 ± 0.25</td>'
                   '<td class="num">0.5</td><td>text</td></tr></tbody></table>')


def test_page_and_figure_exactly():
    from selm_bench.harness.reports.report import CSS, _figure, _page

    assert _figure(None, "x") == ""
    assert _figure(b"\x89PNG", "a<b") == ('<figure><img src="data:image/png;base64,iVBORw==" alt="a&lt;b">'
                                         "<figcaption>a&lt;b</figcaption></figure>")
    assert _page("T&1", [("s1", "One", "<p>1</p>"), ("s2", "Two<", "")]) == (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>T&amp;1</title>'
        f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{CSS}</style></head>'
        '<body><h1>T&amp;1</h1><nav><a href="#s1">One</a> <a href="#s2">Two&lt;</a></nav>'
        '<section id="s1"><h2>One</h2><p>1</p></section><section id="s2"><h2>Two&lt;</h2></section></body></html>\n')


def test_provenance_html_exactly(tmp_path):
    from selm_bench.harness.reports.report import provenance_html

    manifest = {"git_commit": "abcdef1234567890", "git_dirty": True, "seed": 3, "python": "3.12",
                "command": ["selm-bench", "train-and-eval"], "created": "c0", "started": "s0", "finished": None,
                "kept_stale": ["sft", "dpo"], "packages": {"torch": "2.13.0"},
                "stages": {"sft": {"status": "done", "duration_s": 12.5, "key": "k1", "git_commit": "0123456789abcdef",
                                   "ended": "e0"}}}
    _write(tmp_path / "checkpoints/sft/model/train_info.json",
           {"device": "cpu", "mixed_precision": "no", "num_processes": 2, "global_batch": 64, "learning_rate": 0.003})
    _write(tmp_path / "checkpoints/.tmp-dpo/model/train_info.json", {"device": "half-written"})  # a temp folder: skipped
    kv = ("<tr><th>git commit</th><td>abcdef1234567890 (uncommitted changes)</td></tr><tr><th>seed</th><td>3</td></tr>"
          "<tr><th>python</th><td>3.12</td></tr><tr><th>command</th><td>selm-bench train-and-eval</td></tr>"
          "<tr><th>created</th><td>c0</td></tr><tr><th>started</th><td>s0</td></tr><tr><th>finished</th><td></td></tr>"
          "<tr><th>kept stale</th><td>sft, dpo</td></tr>")
    assert provenance_html(tmp_path, manifest, "name: x<y\n") == (
        f'<table class="kv"><tbody>{kv}</tbody></table>'
        '<h3>Package versions</h3><table class="items"><thead><tr><th>package</th><th>version</th></tr></thead>'
        "<tbody><tr><td>torch</td><td>2.13.0</td></tr></tbody></table>"
        '<h3>Stages</h3><table class="items"><thead><tr><th>stage</th><th>status</th><th>seconds</th><th>key</th>'
        "<th>commit</th><th>ended</th></tr></thead><tbody><tr><td>sft</td><td>done</td><td>12.5</td><td>k1</td>"
        "<td>0123456789ab</td><td>e0</td></tr></tbody></table>"
        '<h3>Training setup</h3><table class="items"><thead><tr><th>checkpoint</th><th>device</th>'
        "<th>mixed precision</th><th>processes</th><th>global batch</th><th>learning rate</th></tr></thead>"
        "<tbody><tr><td>checkpoints/sft/model</td><td>cpu</td><td>no</td><td>2</td><td>64</td><td>0.003</td></tr>"
        "</tbody></table><h3>config.yaml</h3><pre>name: x&lt;y\n</pre>")
    bare = provenance_html(tmp_path / "none", {"stages": {"sft": {}}}, "")  # a record with nothing in it yet
    assert "<tbody><tr><td>sft</td><td></td><td></td><td></td><td></td><td></td></tr></tbody>" in bare
    clean = provenance_html(tmp_path / "none", {"git_commit": "abc"}, "")
    assert clean.startswith('<table class="kv"><tbody><tr><th>git commit</th><td>abc</td></tr>')
    assert "kept stale" not in clean and "Training setup" not in clean and clean.endswith("<h3>config.yaml</h3><p>none</p>")


def test_run_summary_line(tmp_path):
    _write(tmp_path / "manifest.json", {"stages": {"a": {"status": "done"}, "b": {"status": "running"}}, "results": [],
                                        "git_commit": "0123456789abcdef"})
    html = write_report(tmp_path).read_text()
    assert (f'<p class="muted">{tmp_path.resolve()} · not finished (in progress or interrupted) · 1/2 stages done'
            " · commit 0123456789ab</p>") in html
    assert "<title>selm-bench report: " + tmp_path.name + "</title>" in html
    _write(tmp_path / "manifest.json", {"stages": {"a": {"status": "done"}}, "results": [], "finished": "t"})
    _write(tmp_path / "config.yaml", "name: my-run\n")
    html = write_report(tmp_path).read_text()
    assert " · finished · 1/1 stages done · commit ?</p>" in html and "<title>selm-bench report: my-run</title>" in html


def test_seed_means_of_a_grid_without_parameters():
    from selm_bench.harness.reports.report import seed_means

    cells = [{"params": {}, "seed": s, "rows": [{"run": f"c{s}", "checkpoint": "sft", "method": "sft",
                                                 "tiny-world/accuracy": acc, "label": "tiny"}]}
             for s, acc in ((0, 0.4), (1, 0.6))]
    (row,) = seed_means(cells)
    assert (row["run"], row["checkpoint"], row["seeds"], row["label"]) == ("(defaults)", "sft", "2", "tiny")
    assert math.isclose(row["tiny-world/accuracy"], 0.5) and math.isclose(row["tiny-world/accuracy_std"], math.sqrt(0.02))
