"""Leaderboard: compact headlines, published reference rows, provenance and non-canonical labels."""

import csv
import hashlib
import json
from pathlib import Path

import alpaca_eval
from typer.testing import CliRunner

from selm_bench.harness.cli import app


def write_result(run: Path, checkpoint: str, suite: str, metrics: dict, info: dict) -> str:
    folder = run / "evals" / checkpoint / suite
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metrics.json").write_text(json.dumps({"suite": suite, "checkpoint": checkpoint, "metrics": metrics,
                                                     "info": info}))
    return f"evals/{checkpoint}/{suite}"


def make_run(root: Path) -> Path:
    run = root / "myrun"
    results = [
        write_result(run, "sft", "tiny-world", {"accuracy": 0.5, "accuracy_stderr": 0.01, "score": 0.6}, {"split": "eval"}),
        write_result(run, "sft", "mt-bench", {"score": 5.0, "turn-1": 5.5}, {"mode": "tiny", "judge": {"model": "oracle"}}),
        write_result(run, "dpo", "tiny-world", {"accuracy": 0.7, "accuracy_stderr": 0.01, "score": 0.8}, {"split": "eval"}),
        write_result(run, "dpo", "mt-bench", {"score": 6.0, "turn-1": 6.5}, {"mode": "fastchat", "judge": {"model": "gpt-4"}}),
        write_result(run, "selm/iter-1", "mt-bench", {"score": 6.5}, {"mode": "fastchat", "judge": {"model": "gpt-4o-mini"}}),
    ]
    (run / "manifest.json").write_text(json.dumps({"results": results, "git_commit": "0123456789abcdef", "git_dirty": False}))
    (run / "config.yaml").write_text("name: myrun\nseed: 0\n")
    return run


def board(*args: str):
    res = CliRunner().invoke(app, ["leaderboard", *args])
    return res


def test_json_rows_carry_provenance_and_labels(tmp_path):
    run = make_run(tmp_path)
    res = board("--results", str(run), "--all", "--format", "json")
    assert res.exit_code == 0, res.output
    rows = {(r["run"], r["checkpoint"]): r for r in json.loads(res.output)}
    config_hash = hashlib.sha256((run / "config.yaml").read_bytes()).hexdigest()[:10]
    sft, dpo, selm = rows[("myrun", "sft")], rows[("myrun", "dpo")], rows[("myrun", "selm/iter-1")]
    assert sft["provenance"] == f"run myrun · config {config_hash} · commit 01234567"
    assert sft["label"] == "tiny world (mt-bench, tiny-world); oracle judge (mt-bench)"
    assert dpo["label"] == "tiny world (tiny-world)"  # MT-Bench with the published judge is canonical
    assert selm["label"] == "gpt-4o-mini judge (mt-bench)"
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
