"""What the CLI prints on success, compared whole: `list`, `leaderboard` in each format, `report`,
`plan`, and the --debug traceback (in-process, typer's runner)."""

import json


from support.cli import invoke as cli

LIST = """\
method   dpo              offline DPO on the fixed preference set (TRL DPOTrainer, sigmoid)
method   iterative-dpo    online iterations: generate, rank, DPO on best vs worst
method   selm             iterative DPO plus SELM's optimism term on y_ref
method   sft              supervised fine-tuning (TRL SFTTrainer); the starting policy
suite    alpaca-eval      AlpacaEval 2.0 (LC) win rate against a reference, via alpaca_eval
suite    brainteaser      SemEval-2024 Task 9 BRAINTEASER: lateral-thinking multiple choice (SP, WP)
suite    lm-eval          EleutherAI lm-evaluation-harness: presets (openllm), task lists, local YAML tasks
suite    mt-bench         MT-Bench (FastChat llm_judge), single-answer grading 1-10 per turn
suite    tiny-world       held-out tiny-world tasks, greedy, graded verifier (accuracy, score)
judge    openai           OpenAI-compatible chat judge, e.g. openai:gpt-4 (cached, retried)
judge    oracle           the tiny world's verifier (graded score in [0, 1])
ranker   judge            judge:<model>: pairwise preference of an OpenAI-compatible LLM, cached
ranker   oracle           the tiny world's graded verifier (needs gold answers)
ranker   pairrm           pairrm[:<hub id or path>]: PairRM (default llm-blender/PairRM-hf), pairwise, \
in-project
ranker   reward-model     reward-model:<hub id or path>: a sequence-classification scalar reward
backend  hf               transformers generate(), batched with left padding (CPU or GPU)
backend  vllm             vLLM in worker subprocesses (GPU, optional extra selm-bench[vllm]); data_parallel_size \
shards prompts over GPU groups
"""


def test_list():
    res = cli("list")
    assert res.exit_code == 0 and res.stdout == LIST


def _run(root):
    for ckpt, acc, se in (("sft", 0.5, 0.02), ("selm/iter-1", 0.625, None)):
        d = root / "evals" / ckpt / "tiny-world"
        d.mkdir(parents=True)
        metrics = {"accuracy": acc, **({"accuracy_stderr": se} if se else {}), "score": acc + 0.1}
        (d / "metrics.json").write_text(json.dumps({"suite": "tiny-world", "checkpoint": ckpt, "metrics": metrics}))
    (root / "manifest.json").write_text(json.dumps({"results": ["evals/sft/tiny-world", "evals/selm/iter-1/tiny-world"]}))
    return root


def test_leaderboard_formats(tmp_path):
    run = _run(tmp_path / "myrun")
    prov = "run myrun"
    md = cli("leaderboard", "-r", str(run), "--no-published", "--format", "markdown")
    assert md.exit_code == 0 and md.stdout == (
        "| run | checkpoint | method | iteration | tiny-world/accuracy | tiny-world/accuracy_stderr | provenance | label |\n"
        "|---|---|---|---|---|---|---|---|\n"
        f"| myrun | sft | sft |  | 0.5 | 0.02 | {prov} | tiny world (tiny-world) |\n"
        f"| myrun | selm/iter-1 | selm | 1 | 0.625 |  | {prov} | tiny world (tiny-world) |\n")
    csv = cli("leaderboard", "-r", str(run), "--no-published", "--format", "csv", "--metric", "tiny-world/score",
              "--sort", "tiny-world/score")
    assert csv.stdout == ("run,checkpoint,method,iteration,tiny-world/score,provenance,label\n"
                          f"myrun,selm/iter-1,selm,1,0.725,{prov},tiny world (tiny-world)\n"
                          f"myrun,sft,sft,,0.6,{prov},tiny world (tiny-world)\n")
    js = cli("leaderboard", "-r", str(run), "--no-published", "--format", "json", "--suite", "tiny-world")
    assert js.stdout.endswith("]\n") and [r["tiny-world/score"] for r in json.loads(js.stdout)] == [0.6, 0.725]
    html = cli("leaderboard", "-r", str(run), "--no-published", "--format", "html")
    assert html.stdout.startswith("<!DOCTYPE html>") and html.stdout.endswith("</html>\n\n")
    assert f"<title>leaderboard: {run}</title>" in html.stdout
    table = cli("leaderboard", "-r", str(run), "-r", str(run))
    assert table.exit_code == 0 and "".join(f"leaderboard: {run}, {run} + published".split()) in "".join(table.stderr.split())


def test_report_and_plan_lines(tmp_path):
    run = _run(tmp_path / "myrun")
    res = cli("report", str(run), "-o", str(tmp_path / "r.html"))
    assert res.exit_code == 0 and res.stderr == f"wrote {tmp_path / 'r.html'}\n"
    assert (tmp_path / "r.html").read_text().startswith("<!DOCTYPE html>")
    res = cli("plan", "--set", "methods=[sft]", "--set", "suites=[tiny-world]")
    assert res.exit_code == 0 and res.stdout.splitlines()[:2] == ["plan: tiny (3 stages)", "  1. world [world] -> world"]
    js = json.loads(cli("plan", "-f", "json", "--set", "methods=[sft]", "--set", "suites=[tiny-world]").stdout)
    assert [s["name"] for s in js["stages"]] == ["world", "sft", "eval sft tiny-world"] and js["name"] == "tiny"


def test_debug_shows_the_traceback_then_the_line(tmp_path):
    quiet = cli("report", str(tmp_path / "none"))
    line = quiet.stderr  # the one error line, naming the folder
    assert quiet.exit_code == 2 and line.count("\n") == 1 and line.startswith(f"error: {tmp_path / 'none'}")
    loud = cli("--debug", "report", str(tmp_path / "none"))
    assert loud.exit_code == 2 and loud.stderr.startswith("Traceback") and loud.stderr.endswith(line)
    assert loud.stderr.count("\n") > 2
    assert cli("report", str(tmp_path / "none")).stderr == line  # --debug does not stick
