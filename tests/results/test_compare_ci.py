"""`compare --format markdown|github` (a pull request's table, GitHub Actions annotations and job
summary) and `leaderboard --format json|csv` carrying every metric by default. Runs are written by
hand with known per-item records; the expected numbers are computed from those items."""

import csv
import io
import json
import re
from pathlib import Path

import pytest
from markdown_it import MarkdownIt
from typer.testing import CliRunner

from selm_bench.harness.cli import app

TW_IDS = [f"eval-{i}" for i in range(40)]
BASE_CORRECT = set(TW_IDS[:30])  # 30 / 40 = 0.75
NEW_CORRECT = set(TW_IDS[12:30])  # 12 right answers turned wrong: 18 / 40 = 0.45
MT_QUESTIONS = range(81, 91)  # 10 questions x 2 turns


def write_suite(run: Path, suite: str, items: list[dict], checkpoint: str = "selm/iter-2") -> str:
    folder = run / "evals" / checkpoint / suite.split(":")[0]
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps({"suite": suite, "checkpoint": checkpoint, "metrics": {}, "info": {}}))
    (folder / "items.jsonl").write_text("".join(json.dumps(i) + "\n" for i in items))
    return f"evals/{checkpoint}/{suite.split(':')[0]}"


def write_run(run: Path, correct: set[str], partial: set[str], mt_score: float) -> Path:
    """tiny-world items (`correct` right; `partial` of the wrong ones scored 0.5) and MT-Bench
    turns all rated `mt_score`."""
    tw = [{"id": i, "category": "add", "correct": i in correct, "score": 1.0 if i in correct else 0.5 if i in partial else 0.0}
          for i in TW_IDS]
    mt = [{"id": f"{q}/turn-{t}", "turn": t, "score": mt_score} for q in MT_QUESTIONS for t in (1, 2)]
    results = [write_suite(run, "tiny-world", tw), write_suite(run, "mt-bench", mt)]
    (run / "manifest.json").write_text(json.dumps({"results": results, "stages": {}}))
    return run


@pytest.fixture
def runs(tmp_path):
    """base: accuracy 0.75, score 0.75, MT-Bench 5; new: accuracy 0.45, score 0.45 + 6 x 0.5 / 40 = 0.525
    (6 of the 12 lost answers half right), MT-Bench 6 on every turn."""
    base = write_run(tmp_path / "base", BASE_CORRECT, set(), 5.0)
    new = write_run(tmp_path / "new", NEW_CORRECT, set(TW_IDS[:6]), 6.0)
    return str(base), str(new)


def compare(*args: str, env: dict | None = None):
    return CliRunner().invoke(app, ["compare", *args, "--resamples", "300"], env=env)


def table_rows(markdown: str) -> list[list[str]]:
    """The body cells of the (only) table the markdown renders to, as CommonMark + GFM tables do."""
    html = MarkdownIt("commonmark").enable("table").render(markdown)
    assert html.count("<table>") == 1, html
    body = html.split("<tbody>")[1].split("</tbody>")[0]
    return [re.findall(r"<td[^>]*>(.*?)</td>", row) for row in body.split("</tr>") if "<td" in row]


def json_metrics(out: str) -> dict[str, dict]:
    return {f"{m['suite']}/{m['metric']}": m for s in json.loads(out)["suites"] for m in s["metrics"]}


def test_markdown_is_a_table_of_the_gated_metrics(runs):
    base, new = runs
    md = compare(base, new, "--format", "markdown")
    js = compare(base, new, "--format", "json")
    assert md.exit_code == js.exit_code == 1, md.output  # tiny-world accuracy, the default gate, regressed
    rows = table_rows(md.stdout)
    # default gates: each suite's headline (suites in name order)
    assert [r[0] for r in rows] == ["mt-bench/score", "tiny-world/accuracy"]
    mt, tw = rows
    # mt-bench: 20 turns, 5 -> 6 on each: delta +1, every resample +1
    assert mt[1:] == ["20", "5", "6", "+1", "[1, 1]", "improved", "pass"]
    # tiny-world: 40 items, 0.75 -> 0.45
    assert tw[1:5] == ["40", "0.75", "0.45", "-0.3"] and tw[6:] == ["regressed", "<strong>FAIL</strong>"]
    low, high = (float(x) for x in tw[5].strip("[]").split(", "))
    point = json_metrics(js.stdout)
    assert (low, high) == (float(f"{point['tiny-world/accuracy']['low']:.4g}"), float(f"{point['tiny-world/accuracy']['high']:.4g}"))
    assert high < 0
    # the verdicts are the json format's
    assert {r[0]: r[6] for r in rows} == {k: m["verdict"] for k, m in point.items() if m["gated"]}
    summary = [line for line in md.stdout.splitlines() if line.strip()][-1]
    assert "1 regression" in summary and "1 of 2 gated metrics" in summary


def test_markdown_rows_follow_metric_and_threshold(runs):
    base, new = runs
    args = [base, new, "--metric", "tiny-world/score", "--metric", "mt-bench/turn-2", "--metric", "tiny-world/accuracy",
            "--threshold", "tiny-world/accuracy=0.5"]
    md, js = compare(*args, "--format", "markdown"), compare(*args, "--format", "json")
    rows = {r[0]: r for r in table_rows(md.stdout)}
    assert set(rows) == {"tiny-world/score", "mt-bench/turn-2", "tiny-world/accuracy"}  # one row per gated metric
    assert rows["tiny-world/score"][1:5] == ["40", "0.75", "0.525", "-0.225"]
    assert rows["mt-bench/turn-2"][1:7] == ["20", "5", "6", "+1", "[1, 1]", "improved"]  # the suite's paired items
    # accuracy still regressed, but by less than its threshold: it passes; score (threshold 0) fails
    assert rows["tiny-world/accuracy"][6:] == ["regressed", "pass (threshold 0.5)"]
    assert rows["tiny-world/score"][6:] == ["regressed", "<strong>FAIL</strong>"]
    assert {k: r[6] for k, r in rows.items()} == {k: m["verdict"] for k, m in json_metrics(js.stdout).items() if m["gated"]}
    assert md.exit_code == js.exit_code == 1
    assert "1 regression" in md.stdout
    # a threshold above both drops: exit 0 in every format
    relaxed = [base, new, "--metric", "tiny-world/score", "--threshold", "tiny-world/score=0.9"]
    codes = {f: compare(*relaxed, "--format", f).exit_code for f in ("text", "json", "markdown", "github")}
    assert codes == {"text": 0, "json": 0, "markdown": 0, "github": 0}
    assert "no regression" in compare(*relaxed, "--format", "markdown").stdout


def test_github_annotations_then_the_table(runs, tmp_path):
    base, new = runs
    args = [base, new, "--metric", "tiny-world/accuracy", "--metric", "tiny-world/score", "--metric", "mt-bench/score"]
    gh = compare(*args, "--format", "github", env={"GITHUB_STEP_SUMMARY": ""})
    js, md = compare(*args, "--format", "json"), compare(*args, "--format", "markdown")
    assert gh.exit_code == js.exit_code == md.exit_code == 1
    lines = gh.stdout.splitlines()
    annotations = [line for line in lines if line.startswith("::")]
    failed = [k for k, m in json_metrics(js.stdout).items() if m["failed"]]
    assert len(failed) == 2 and len([a for a in annotations if a.startswith("::error ")]) == 2  # one per regression
    assert len(annotations) == 3 and sum(a.startswith("::notice ") for a in annotations) == 1  # mt-bench improved
    assert gh.stdout.endswith(md.stdout)  # the annotations, then the same markdown table
    assert gh.stdout[: -len(md.stdout)].strip().splitlines() == annotations
    # a regression within its threshold is no error
    gh = compare(*args, "--threshold", "tiny-world/score=0.5", "--format", "github", env={"GITHUB_STEP_SUMMARY": ""})
    assert gh.exit_code == 1 and sum(line.startswith("::error ") for line in gh.stdout.splitlines()) == 1


def test_identical_runs_no_error_exit_0(runs):
    base, _ = runs
    gh = compare(base, base, "--format", "github", env={"GITHUB_STEP_SUMMARY": ""})
    assert gh.exit_code == compare(base, base, "--format", "json").exit_code == 0
    assert "::error" not in gh.stdout
    assert [r[6:] for r in table_rows(compare(base, base, "--format", "markdown").stdout)] == [
        ["no significant change", "pass"]] * 2


def test_step_summary_gets_the_table_appended(runs, tmp_path):
    base, new = runs
    summary = tmp_path / "step-summary.md"
    summary.write_text("## earlier step\n")
    gh = compare(base, new, "--format", "github", env={"GITHUB_STEP_SUMMARY": str(summary)})
    md = compare(base, new, "--format", "markdown", env={"GITHUB_STEP_SUMMARY": ""})
    assert gh.exit_code == 1
    text = summary.read_text()
    assert text.startswith("## earlier step\n") and md.stdout in text  # appended, not overwritten
    assert len(table_rows(text[len("## earlier step\n"):])) == 2 and "::" not in text  # the table, no annotations
    # --format markdown prints only: `>> $GITHUB_STEP_SUMMARY` in a workflow does not get it twice
    compare(base, new, "--format", "markdown", env={"GITHUB_STEP_SUMMARY": str(summary)})
    assert summary.read_text() == text
    # an unwritable summary leaves the comparison (its output and exit status) as it is
    bad = compare(base, new, "--format", "github", env={"GITHUB_STEP_SUMMARY": str(tmp_path / "no" / "such" / "file")})
    assert bad.exit_code == 1 and bad.stdout == gh.stdout and "GITHUB_STEP_SUMMARY" in bad.stderr


def test_github_escapes_metric_names_in_properties(tmp_path, monkeypatch):
    """A suite `ci:check` whose paired metric is `acc,none`: the title property escapes ':' and ','
    (GitHub's workflow command rules), the message only '%', CR and LF."""
    from selm_bench.harness.core import registry

    registry.load_all()
    entry = registry.Entry("suite", "ci", object(), "test suite", headline="acc,none",
                           paired=lambda items: {"acc,none": sum(i["score"] for i in items) / len(items) if items else None})
    monkeypatch.setitem(registry._ENTRIES["suite"], "ci", entry)
    for name, right in (("base", 8), ("new", 2)):
        run = tmp_path / name
        folder = write_suite(run, "ci:check", [{"id": f"q{i}", "score": float(i < right)} for i in range(10)])
        (run / "manifest.json").write_text(json.dumps({"results": [folder], "stages": {}}))
    gh = compare(str(tmp_path / "base"), str(tmp_path / "new"), "--format", "github", env={"GITHUB_STEP_SUMMARY": ""})
    assert gh.exit_code == 1, gh.output
    [error] = [line for line in gh.stdout.splitlines() if line.startswith("::error")]
    m = re.fullmatch(r"::error title=([^:]*)::(.*)", error)
    assert m, error  # no raw ':' before the '::' that ends the properties
    title, message = m.groups()
    assert "," not in title and "ci%3Acheck/acc%2Cnone" in title
    unescape = {"%3A": ":", "%2C": ",", "%0D": "\r", "%0A": "\n", "%25": "%"}
    assert "ci:check/acc,none" in re.sub(r"%(3A|2C|0D|0A|25)", lambda x: unescape[x.group(0)], title)
    assert "ci:check/acc,none" in message and "%" not in message.replace("%25", "")
    assert "\n" not in error
    row = table_rows(gh.stdout[gh.stdout.index("**selm-bench compare**"):])[0]
    assert row[:5] == ["ci:check/acc,none", "10", "0.8", "0.2", "-0.6"]


def test_escaping_rules():
    from selm_bench.harness.reports.compare import escape_data, escape_property

    assert escape_data("100% a\r\nb: c, d") == "100%25 a%0D%0Ab: c, d"
    assert escape_property("100% a\r\nb: c, d") == "100%25 a%0D%0Ab%3A c%2C d"


# --- leaderboard: machine formats carry every metric ---------------------------------------------

ALL_METRICS = {"tiny-world/accuracy", "tiny-world/accuracy_stderr", "tiny-world/score", "tiny-world/score_stderr",
               "tiny-world/n", "mt-bench/score", "mt-bench/turn-1", "mt-bench/turn-2"}


def leaderboard_run(root: Path) -> Path:
    results = []
    for ckpt, acc in (("sft", 0.5), ("dpo", 0.625)):
        for suite, metrics in (("tiny-world", {"accuracy": acc, "accuracy_stderr": 0.05, "score": acc + 0.1,
                                               "score_stderr": 0.04, "n": 40}),
                               ("mt-bench", {"score": 10 * acc, "turn-1": 10 * acc + 0.5, "turn-2": 10 * acc - 0.5})):
            folder = root / "evals" / ckpt / suite
            folder.mkdir(parents=True)
            (folder / "metrics.json").write_text(json.dumps({"suite": suite, "checkpoint": ckpt, "metrics": metrics,
                                                             "info": {"mode": "tiny"}}))
            results.append(f"evals/{ckpt}/{suite}")
    (root / "manifest.json").write_text(json.dumps({"results": results}))
    return root


def board(*args: str):
    res = CliRunner().invoke(app, ["leaderboard", *args, "--no-published"])
    assert res.exit_code == 0, res.output
    return res


def test_json_and_csv_carry_every_metric_by_default(tmp_path):
    run = str(leaderboard_run(tmp_path / "run"))
    rows = json.loads(board("-r", run, "--format", "json").stdout)
    assert [r["checkpoint"] for r in rows] == ["sft", "dpo"]
    assert {k for r in rows for k in r if "/" in k} == ALL_METRICS
    assert (rows[0]["tiny-world/score_stderr"], rows[1]["mt-bench/turn-2"], rows[1]["tiny-world/n"]) == (0.04, 5.75, 40)
    header = next(csv.reader(io.StringIO(board("-r", run, "--format", "csv").stdout)))
    assert {c for c in header if "/" in c} == ALL_METRICS
    # --all still works: a no-op for the machine formats
    assert board("-r", run, "--format", "json", "--all").stdout == board("-r", run, "--format", "json").stdout
    assert board("-r", run, "--format", "csv", "--all").stdout == board("-r", run, "--format", "csv").stdout
    # --suite / --metric still narrow them
    narrowed = json.loads(board("-r", run, "--format", "json", "--metric", "mt-bench/turn-1").stdout)
    assert {k for r in narrowed for k in r if "/" in k} == {"mt-bench/turn-1"}


def test_compact_view_stays_the_default_elsewhere(tmp_path):
    run = str(leaderboard_run(tmp_path / "run"))
    md_header = board("-r", run, "--format", "markdown").stdout.splitlines()[0]
    shown = {c.strip() for c in md_header.strip("|").split("|") if "/" in c}
    assert shown == {"tiny-world/accuracy", "tiny-world/accuracy_stderr", "mt-bench/score"}  # headlines (± their error)
    assert not {"tiny-world/score_stderr", "mt-bench/turn-1", "mt-bench/turn-2"} & shown
    table = board("-r", run).stderr  # the terminal's rich table
    assert "mt-bench/score" in table and "turn-1" not in table and "score_stderr" not in table
    md_all = board("-r", run, "--format", "markdown", "--all").stdout.splitlines()[0]
    assert "mt-bench/turn-1" in md_all and "tiny-world/score_stderr" in md_all
