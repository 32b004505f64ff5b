"""`selm-bench import` reproduces published AlpacaEval numbers and adds reference rows."""

import json
import subprocess
import sys

import pytest

from support.fixtures import openhermes_annotations


def test_import_alpaca_eval_openhermes(tmp_path):
    """Published AlpacaEval 2.0 numbers of OpenHermes-2.5-Mistral-7B (alpaca_eval's leaderboard) from its
    annotations: ../shared/data's full file, else the committed fixture (tests/fixtures/README.md)."""
    ann = openhermes_annotations(tmp_path)
    res = subprocess.run([sys.executable, "-m", "selm_bench.harness.cli", "import", "--suite", "alpaca-eval", "--model",
                          "OpenHermes-2.5-Mistral-7B", str(ann), "--results", str(tmp_path)],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
    out = subprocess.run([sys.executable, "-m", "selm_bench.harness.cli", "leaderboard", "--results", str(tmp_path),
                          "--format", "json", "--all", "--no-published"], capture_output=True, text=True)
    (row,) = json.loads(out.stdout)
    assert row["checkpoint"] == "OpenHermes-2.5-Mistral-7B" and row["method"] == "reference"
    assert row["alpaca-eval/win_rate"] == pytest.approx(10.3404, abs=1e-4)
    assert row["alpaca-eval/standard_error"] == pytest.approx(0.9357, abs=1e-4)
    assert (row["alpaca-eval/n_wins"], row["alpaca-eval/n_wins_base"], row["alpaca-eval/n_draws"],
            row["alpaca-eval/n_total"]) == (75, 727, 3, 805)
    assert row["alpaca-eval/discrete_win_rate"] == pytest.approx(9.5031, abs=1e-4)


def test_import_mt_bench_judgments(tmp_path):
    rows = []
    for model, scores in (("m1", [8, 6, -1, 9]), ("m2", [5, 5, 5, 5])):
        for i, s in enumerate(scores):
            rows.append({"question_id": 81 + i // 2, "model": model, "judge": ["gpt-4", "single-v1"],
                         "user_prompt": "", "judgment": f"[[{s}]]", "score": s, "turn": 1 + i % 2, "tstamp": 0})
    f = tmp_path / "gpt-4_single.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    res = subprocess.run([sys.executable, "-m", "selm_bench.harness.cli", "import", "--suite", "mt-bench", str(f),
                          "--results", str(tmp_path / "res")], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
    got = {json.loads(p.read_text())["checkpoint"]: json.loads(p.read_text())["metrics"]
           for p in (tmp_path / "res" / "imports" / "mt-bench").rglob("metrics.json")}
    assert got["m1"]["score"] == pytest.approx((8 + 6 + 9) / 3) and got["m1"]["errors"] == 1
    assert got["m1"]["turn-1"] == pytest.approx(8.0) and got["m1"]["turn-2"] == pytest.approx(7.5)
    assert got["m2"]["score"] == 5


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "selm_bench.harness.cli", *args], capture_output=True, text=True)


def test_import_into_a_run_directory_adds_reference_rows_to_its_leaderboard(tmp_path):
    run = tmp_path / "run"
    (run / "evals" / "sft" / "tiny-world").mkdir(parents=True)
    (run / "manifest.json").write_text(json.dumps({"results": ["evals/sft/tiny-world"]}))
    (run / "evals" / "sft" / "tiny-world" / "metrics.json").write_text(
        json.dumps({"suite": "tiny-world", "checkpoint": "sft", "metrics": {"accuracy": 0.5}}))
    f = tmp_path / "j.jsonl"
    f.write_text(json.dumps({"question_id": 81, "model": "ref-model", "judge": ["gpt-4", "single-v1"],
                             "user_prompt": "", "judgment": "[[7]]", "score": 7, "turn": 1, "tstamp": 0}) + "\n")
    assert _cli("import", "--suite", "mt-bench", str(f), "--results", str(run)).returncode == 0
    rows = json.loads((run / "leaderboard.json").read_text())
    assert [(r["checkpoint"], r["method"]) for r in rows] == [("sft", "sft"), ("ref-model", "reference")]
    assert rows[1]["mt-bench/score"] == 7.0 and rows[0]["tiny-world/accuracy"] == 0.5


@pytest.mark.parametrize("suite,content", [("mt-bench", "not json\n"), ("mt-bench", '{"question_id": 1}\n'),
                                           ("alpaca-eval", '{"a": 1}')])
def test_import_bad_file_is_one_line_exit_2(tmp_path, suite, content):
    f = tmp_path / "bad.json"
    f.write_text(content)
    res = _cli("import", "--suite", suite, "--model", "m", str(f), "--results", str(tmp_path / "res"))
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and str(f) in res.stderr, res.stderr
    assert not (tmp_path / "res").exists()


def test_import_prints_one_line_on_success_and_on_each_refusal(tmp_path):
    """`import` says where it wrote; a refusal is one `error:` line, exit 2, naming the offending file,
    flag or value, and writes nothing (in-process)."""
    import ast

    from typer.testing import CliRunner

    from selm_bench.harness.cli import app

    rows = [{"question_id": 81, "model": m, "judge": ["gpt-4", "single-v1"], "user_prompt": "", "judgment": "[[7]]",
             "score": 7, "turn": 1, "tstamp": 0} for m in ("org/m1", "m2")]
    f = tmp_path / "j.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    res_dir = tmp_path / "res"
    run = lambda *args: CliRunner().invoke(app, ["import", *args, "--results", str(res_dir)])
    ok = run("--suite", "mt-bench", "--model", "org/m1", str(f))
    dest = res_dir / "imports" / "mt-bench" / "org-m1" / "metrics.json"
    first = ok.stderr.splitlines()[0]
    assert ok.exit_code == 0 and first.startswith("imported mt-bench") and first.endswith(f"org/m1 -> {dest}"), ok.stderr
    saved = json.loads(dest.read_text())
    assert (saved["suite"], saved["checkpoint"], saved["method"], saved["info"]["source"]) == (
        "mt-bench", "org/m1", "reference", str(f.resolve()))
    assert not (res_dir / "imports" / "mt-bench" / "m2").exists()  # --model picks one
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    def refused(*args):
        """The one error line of a refused import (exit 2, nothing written)."""
        res = run(*args)
        assert res.exit_code == 2 and res.stderr.startswith("error: ") and res.stderr.count("\n") == 1, (args, res.stderr)
        assert sorted(p.name for p in res_dir.rglob("metrics.json")) == ["metrics.json"]  # only the first import's
        return res.stderr.strip()

    assert refused("--suite", "mt-bench", str(tmp_path / "none.jsonl")).startswith(f"error: {tmp_path / 'none.jsonl'}: ")
    line = refused("--suite", "alpaca-eval", str(f))
    assert "--model" in line and "alpaca-eval" in line
    line = refused("--suite", "gsm8k", str(f))
    assert line.startswith("error: --suite") and line.endswith("'gsm8k'")
    assert refused("--suite", "mt-bench", str(empty)).startswith(f"error: {empty}: ")
    line = refused("--suite", "mt-bench", "--model", "m3", str(f))
    assert line.startswith("error: --model m3") and str(f) in line and line.endswith("(has: m2, org/m1)")
    bad = tmp_path / "bad.jsonl"
    bad.write_text("not json\n")
    line = refused("--suite", "mt-bench", str(bad))
    assert line.startswith(f"error: {bad}: ") and "FastChat" in line and "DataFileError" in line and "line 1" in line
    bad.write_text('{"a": 1}')
    line = refused("--suite", "alpaca-eval", "--model", "m", str(bad))
    assert line.startswith(f"error: {bad}: ") and "alpaca_eval" in line and "1 rows" in line
    assert ast.literal_eval(line.split("missing keys ")[1]) == ["instruction", "output_1", "output_2", "preference"]
