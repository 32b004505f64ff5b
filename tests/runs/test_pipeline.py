"""End to end: train-and-eval on a micro config, resume, leaderboard contract, config errors."""

import hashlib
import json
import math
from pathlib import Path

import pytest
import yaml
from support.micro import MODEL_S, micro
from support.cli import run as cli

MICRO = micro("micro",
              device=None,
              methods=["sft", "dpo", "iterative-dpo", "selm"],
              suites=["tiny-world", "lm-eval", "mt-bench", "alpaca-eval"],
              world={"n_sft": 160, "n_pref": 48, "n_prompts": 48, "n_dev": 8, "n_eval": 24, "n_two_turn": 6, "n_mc": 12},
              model=MODEL_S,
              sft={"epochs": 1, "batch_size": 32},
              dpo={"batch_size": 16},
              online={"iterations": 2, "batch_size": 16, "num_samples": 2, "max_new_tokens": 8},
              suite_options={"tiny-world": {"max_new_tokens": 8}, "mt-bench": {"max_new_tokens": 8}, "alpaca-eval": {"max_new_tokens": 8}})


def tree_digest(root: Path) -> dict[str, str]:
    """Every file's hash but the manifest's and the report's (both record this invocation's times)."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name not in ("manifest.json", "report.html")}


@pytest.fixture(scope="module")
def micro_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("micro")
    cfg = root / "micro.yaml"
    cfg.write_text(yaml.safe_dump(MICRO))
    out = root / "run"
    first = cli("train-and-eval", "--config", str(cfg), "--out", str(out))
    assert first.returncode == 0, first.stderr[-3000:]
    return cfg, out, first


EXPECTED = ["sft", "dpo", "iterative-dpo/iter-1", "iterative-dpo/iter-2", "selm/iter-1", "selm/iter-2"]


def test_leaderboard_rows_and_columns(micro_run):
    _, out, _ = micro_run
    rows = json.loads((out / "leaderboard.json").read_text())
    assert [r["checkpoint"] for r in rows] == EXPECTED
    assert [r["method"] for r in rows] == ["sft", "dpo", "iterative-dpo", "iterative-dpo", "selm", "selm"]
    assert [r["iteration"] for r in rows] == [None, None, 1, 2, 1, 2]
    for r in rows:
        for col in ("tiny-world/accuracy", "tiny-world/score", "tiny-world/accuracy_stderr", "tiny-world/score_stderr",
                    "lm-eval/tinyworld_mc/acc", "mt-bench/score", "mt-bench/turn-1", "mt-bench/turn-2",
                    "alpaca-eval/win_rate", "alpaca-eval/standard_error"):
            assert isinstance(r[col], float) and math.isfinite(r[col]), (r["checkpoint"], col)
    # each checkpoint's metrics were computed on that checkpoint (its own weights, its own answers)
    for r in rows:  # what the eval ran with is its stage's spec.json
        spec = json.loads((out / "evals" / r["checkpoint"] / "tiny-world" / "spec.json").read_text())
        assert spec["model"]["path"] == f"checkpoints/{r['checkpoint']}/model", (r["checkpoint"], spec["model"])
    # different weights, different scores: lm-eval's per-choice log-likelihoods of the same items
    lls = {c: [json.loads(line)["filtered_resps"] for line in
               (out / "evals" / c / "lm-eval" / "samples_tinyworld_mc.jsonl").read_text().splitlines()]
           for c in ("sft", "dpo", "selm/iter-2")}
    assert lls["sft"] != lls["dpo"] != lls["selm/iter-2"]
    header = (out / "leaderboard.csv").read_text().splitlines()[0].split(",")
    assert header[:3] == ["checkpoint", "method", "iteration"]
    assert "tiny-world/accuracy" in header


def test_run_store_contents(micro_run):
    _, out, _ = micro_run
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["seed"] == 0 and manifest["packages"]["trl"] and manifest["finished"]
    assert all(s["status"] == "done" for s in manifest["stages"].values())
    assert (out / "config.yaml").is_file()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    for name in EXPECTED:
        AutoTokenizer.from_pretrained(out / "checkpoints" / name / "model")
    AutoModelForCausalLM.from_pretrained(out / "checkpoints" / "selm" / "iter-2" / "model")
    gens = [json.loads(line) for line in (out / "checkpoints/selm/iter-2/rank/generations.jsonl").read_text().splitlines()]
    assert len(gens) == MICRO["world"]["n_prompts"] // 2  # disjoint chunk per iteration
    g = gens[0]
    assert {"prompt", "candidates", "scores", "chosen", "rejected", "y_ref", "used"} <= set(g)
    assert len(g["candidates"]) == 2 + 1 + 2  # K samples, greedy y_ref, dataset chosen/rejected
    metrics = json.loads((out / "evals/selm/iter-2/tiny-world/metrics.json").read_text())
    assert metrics["suite"] == "tiny-world" and "accuracy" in metrics["metrics"]
    items = (out / "evals/selm/iter-2/tiny-world/items.jsonl").read_text().splitlines()
    assert len(items) == MICRO["world"]["n_eval"]
    assert not list(out.rglob("*.tmp")), "temporary files left behind"


def test_resume_skips_everything_and_changes_nothing(micro_run):
    cfg, out, _ = micro_run
    before = tree_digest(out)
    again = cli("train-and-eval", "--config", str(cfg), "--out", str(out))
    assert again.returncode == 0, again.stderr[-2000:]
    online = [c for c in EXPECTED if "/iter-" in c]  # generate, rank and train stages each
    shared = 2  # selm's iteration 1 reuses iterative-dpo's generate and rank stages
    assert again.stderr.count("skip") == (1 + len(EXPECTED) + 2 * len(online) - shared
                                          + len(EXPECTED) * len(MICRO["suites"]))
    assert tree_digest(out) == before


def test_changed_stage_config_redoes_only_downstream(micro_run, tmp_path):
    cfg, out, _ = micro_run
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(out, copy)
    res = cli("train-and-eval", "--config", str(cfg), "--out", str(copy), "--methods", "sft,dpo,selm",
              "--suites", "tiny-world", "--set", "online.alpha=0.5")
    assert res.returncode == 0, res.stderr[-2000:]
    assert "skip sft" in res.stderr and "skip dpo" in res.stderr
    assert "done selm/iter-1" in res.stderr and "skip iterative-dpo" not in res.stderr


def test_leaderboard_json_stdout_is_only_json(micro_run):
    _, out, _ = micro_run
    res = cli("leaderboard", "--results", str(out), "--format", "json")
    assert res.returncode == 0
    rows = json.loads(res.stdout)
    assert [r["checkpoint"] for r in rows if r["run"] == "run"] == EXPECTED
    assert {r["run"] for r in rows} == {"run", "published"}  # the published reference rows beside ours
    csv_out = cli("leaderboard", "--results", str(out), "--format", "csv", "--no-published").stdout
    assert csv_out.splitlines()[0].startswith("run,checkpoint,method,iteration,")
    assert csv_out.splitlines()[0].endswith(",provenance,label")
    # A folder of runs: one table with a run column.
    multi = json.loads(cli("leaderboard", "--results", str(out.parent), "--format", "json", "--no-published").stdout)
    assert {r["run"] for r in multi} == {"run"} and len(multi) == len(EXPECTED)


def test_eval_command_on_a_checkpoint(micro_run, tmp_path):
    _, out, _ = micro_run
    model = out / "checkpoints" / "selm" / "iter-2" / "model"
    dest = tmp_path / "ev"
    res = cli("eval", "--model", str(model), "--suites", "tiny-world,mt-bench,alpaca-eval", "--out", str(dest),
              "--set", "mt-bench.limit=3", "--set", "alpaca-eval.limit=5")
    assert res.returncode == 0, res.stderr[-2000:]
    rows = json.loads((dest / "leaderboard.json").read_text())
    assert len(rows) == 1 and rows[0]["checkpoint"] == "selm/iter-2"
    assert {"tiny-world/accuracy", "mt-bench/score", "alpaca-eval/win_rate"} <= set(rows[0])
    for suite in ("tiny-world", "mt-bench", "alpaca-eval"):
        assert (dest / suite / "metrics.json").is_file() and (dest / suite / "items.jsonl").is_file()
    answers = dest / "mt-bench" / "model_answer" / "selm-iter-2.jsonl"
    assert json.loads(answers.read_text().splitlines()[0])["model_id"] == "selm/iter-2"
    tw = json.loads((dest / "tiny-world" / "metrics.json").read_text())["metrics"]
    shown = ", ".join(f"{k}={tw[k]:.3f}" for k in ("accuracy", "accuracy_stderr", "score", "score_stderr"))
    assert f"selm/iter-2 tiny-world: {shown}" in [line.strip() for line in res.stderr.splitlines()]  # the first four
    stages = json.loads((dest / "manifest.json").read_text())["stages"]  # each suite an eval stage, as in train-and-eval
    assert {name: s["status"] for name, s in stages.items()} == {
        suite: "done" for suite in ("tiny-world", "mt-bench", "alpaca-eval")}
    # The run lists its results: a stray metrics.json left in the folder is not a row.
    stray = json.loads((dest / "tiny-world" / "metrics.json").read_text()) | {"checkpoint": "stray"}
    (dest / "old" / "tiny-world").mkdir(parents=True)
    (dest / "old" / "tiny-world" / "metrics.json").write_text(json.dumps(stray))
    listed = json.loads(cli("leaderboard", "--results", str(dest), "--format", "json", "--no-published").stdout)
    assert [r["checkpoint"] for r in listed] == ["selm/iter-2"]


def test_no_judge_then_judge(micro_run, tmp_path):
    _, out, _ = micro_run
    dest = tmp_path / "nj"
    model = out / "checkpoints" / "dpo" / "model"
    res = cli("eval", "--model", str(model), "--suites", "mt-bench", "--out", str(dest), "--no-judge",
              "--set", "mt-bench.limit=3")
    assert res.returncode == 0, res.stderr[-2000:]
    assert "mt-bench/score" not in json.loads((dest / "leaderboard.json").read_text())[0]
    res = cli("judge", str(dest))
    assert res.returncode == 0, res.stderr[-2000:]
    row = json.loads((dest / "leaderboard.json").read_text())[0]
    assert math.isfinite(row["mt-bench/score"])


def test_eval_bad_suite_is_one_line_exit_2(tmp_path):
    res = cli("eval", "--model", str(tmp_path), "--suites", "mt-bench,nope", "--out", str(tmp_path / "x"))
    assert res.returncode == 2 and res.stderr.count("\n") == 1
    assert res.stderr.startswith("error: --suites: ") and "'nope'" in res.stderr
    assert not (tmp_path / "x").exists()


def test_relocated_task_yaml_points_at_the_final_folder(tmp_path):
    from selm_bench.harness.run.evaluate import relocate_task_files
    from selm_bench.harness.core.store import atomic_dir

    final = tmp_path / "evals" / "m" / "brainteaser"
    with atomic_dir(final) as tmp:
        (tmp / "tasks").mkdir()
        (tmp / "tasks" / "t.jsonl").write_text("{}\n")
        (tmp / "tasks" / "t.yaml").write_text(yaml.safe_dump({"data_files": str((tmp / "tasks" / "t.jsonl").resolve())}))
        relocate_task_files(tmp, final)
    path = yaml.safe_load((final / "tasks" / "t.yaml").read_text())["data_files"]
    assert Path(path) == (final / "tasks" / "t.jsonl").resolve() and Path(path).is_file()


def test_suite_lists_keep_lm_eval_task_lists_and_columns_use_the_base_name():
    from selm_bench.harness.cli import _split_suites
    from selm_bench.harness.reports.leaderboard import suite_column

    assert _split_suites(["lm-eval:hellaswag,arc_easy,mt-bench", "tiny-world"]) == [
        "lm-eval:hellaswag,arc_easy", "mt-bench", "tiny-world"]
    assert _split_suites(["tiny-world,lm-eval:openllm"]) == ["tiny-world", "lm-eval:openllm"]
    assert _split_suites(["nope,tiny-world"]) == ["nope", "tiny-world"]  # unknown names are reported later
    assert suite_column("lm-eval:openllm") == "lm-eval" and suite_column("mt-bench") == "mt-bench"
