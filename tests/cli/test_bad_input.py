"""The bad-input table of docs/reference.md, row by row: one clear error line, the stated exit code,
nothing partial written, existing results untouched. Runs the CLI in-process (typer's runner)."""

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from conftest import write_mt_bench_fixture
from selm_bench.harness.cli import app


@pytest.fixture(scope="module")
def env(tmp_path_factory, tiny_model):
    root = tmp_path_factory.mktemp("bad")
    (root / "bad.yaml").write_text("online:\n  beta: [0.1\n")
    (root / "list.yaml").write_text("- a\n- b\n")
    (root / "a-file").write_text("x")
    (root / "stranger").mkdir()
    (root / "stranger" / "notes.txt").write_text("mine")
    mirror = write_mt_bench_fixture(root / "mirror")
    broken = write_mt_bench_fixture(root / "broken")
    with open(broken / "mt_bench" / "question.jsonl", "a") as f:
        f.write('{"question_id": 999, "turns": [\n')
    trunc = root / "trunc"
    shutil.copytree(tiny_model, trunc)
    weights = trunc / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    run = root / "run"  # an existing run folder of config "tiny": its files must survive every row
    run.mkdir()
    (run / "manifest.json").write_text(json.dumps({"stages": {}}))
    (run / "config.yaml").write_text(yaml.safe_dump({"name": "tiny"}))
    (root / "empty.jsonl").write_text("")
    return {"root": root, "model": tiny_model, "mirror": mirror, "broken": broken, "trunc": trunc, "run": run}


def digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()}


R = "{root}"
# (case, argv with {placeholders}, exit code, start of the message after "error: ")
ROWS = [
    ("malformed YAML", ["train-and-eval", "-c", f"{R}/bad.yaml"], 2, f"{R}/bad.yaml: invalid YAML at line"),
    ("config is not a mapping", ["train-and-eval", "-c", f"{R}/list.yaml"], 2, f"{R}/list.yaml: expected a mapping"),
    ("missing config file", ["train-and-eval", "-c", f"{R}/nope.yaml"], 2, "config file not found"),
    ("unknown key", ["train-and-eval", "--set", "online.betta=0.1"], 2, "online.betta: unknown key"),
    ("unknown section", ["train-and-eval", "--set", "onlin.alpha=0.1"], 2, "suite_options.onlin: not a config section"),
    ("wrong type", ["train-and-eval", "--set", "seed=zero"], 2, "seed: Input should be a valid integer"),
    ("out of range", ["train-and-eval", "--set", "online.beta=0"], 2, "online.beta: Input should be greater than 0"),
    ("not finite", ["train-and-eval", "--set", "online.alpha=.inf"], 2, "online.alpha:"),
    ("unknown method", ["train-and-eval", "--methods", "sft,ppo"], 2, "methods[1]: unknown method 'ppo'"),
    ("unknown suite", ["train-and-eval", "--suites", "tiny-world,nope"], 2, "suites[1]: unknown suite 'nope'"),
    ("unknown judge", ["train-and-eval", "--set", "eval.judge=gpt4"], 2, "eval.judge: unknown judge 'gpt4'"),
    ("unknown ranker", ["train-and-eval", "--set", "online.ranker=pairrn"], 2, "online.ranker: unknown ranker 'pairrn'"),
    ("unknown backend", ["train-and-eval", "--set", "online.backend=tgi"], 2, "online.backend: unknown backend 'tgi'"),
    ("unknown suite option", ["train-and-eval", "--set", "mt-bench.max_tokens=5"], 2, "mt-bench.max_tokens: unknown key"),
    ("--set without =", ["train-and-eval", "--set", "online.alpha"], 2, "--set online.alpha: expected KEY=VALUE"),
    ("run name escaping the results folder", ["train-and-eval", "--set", "name=../../etc"], 2, "name: String should match"),
    ("--out is a file", ["train-and-eval", "--out", f"{R}/a-file"], 2, f"--out {R}/a-file: exists and is not a directory"),
    ("--out is someone else's folder", ["train-and-eval", "--out", f"{R}/stranger"], 2,
     f"--out {R}/stranger: not empty and not a selm-bench run folder"),
    ("run folder of another config", ["train-and-eval", "--out", f"{R}/run", "--set", "name=other"], 2,
     f"--out {R}/run: a run of config 'tiny', not 'other'"),
    ("batch does not split", ["train-and-eval", "--launcher", "accelerate", "--num-processes", "3"], 2,
     "sft.batch_size: 64 is not divisible"),
    ("launcher flags without the launcher", ["train-and-eval", "--num-processes", "2"], 2,
     "--accelerate-config and --num-processes need --launcher accelerate"),
    ("missing accelerate config", ["train-and-eval", "--launcher", "accelerate", "--accelerate-config", f"{R}/no.yaml"],
     2, f"launch.accelerate_config: no such file: {R}/no.yaml"),
    ("lr list of the wrong length", ["train-and-eval", "--set", "online.learning_rate=[1e-4]"], 2,
     "online.learning_rate: 1 values for 2 iterations"),
    ("base start without a model", ["train-and-eval", "--set", "online.start=base"], 2, "model.pretrained: a `base` start"),
    ("oracle ranker on real prompts", ["train-and-eval", "--set", f"data.prompts={R}/empty.jsonl", "--set",
                                       "model.pretrained={model}", "--methods", "selm", "--set", "online.start=base"], 2,
     "online.ranker: oracle needs the tiny world"),
    ("non-existent local model", ["train-and-eval", "--set", "model.pretrained=/no/such/model"], 2,
     "model.pretrained: no such local model"),
    ("non-existent checkpoint", ["eval", "--model", f"{R}/no-model", "--suites", "tiny-world", "--out", f"{R}/e1"], 2,
     f"--model {R}/no-model: no such local checkpoint"),
    ("truncated checkpoint", ["eval", "--model", "{trunc}", "--suites", "tiny-world", "--out", f"{R}/e2"], 2,
     "--model {trunc}: model.safetensors is truncated or corrupt"),
    ("missing data file", ["eval", "--model", "{model}", "--suites", "mt-bench", "--data-dir", f"{R}/stranger",
                           "--judge", "openai:gpt-4", "--out", f"{R}/e3"], 2,
     f"before any stage: mt-bench: missing {R}/stranger/mt_bench"),
    ("broken JSON line in a data mirror", ["eval", "--model", "{model}", "--suites", "mt-bench", "--data-dir", "{broken}",
                                           "--judge", "openai:gpt-4", "--out", f"{R}/e4"], 2,
     "before any stage: {broken}/mt_bench/question.jsonl: line 4 is not valid JSON"),
    ("missing API key", ["eval", "--model", "{model}", "--suites", "mt-bench", "--data-dir", "{mirror}",
                         "--judge", "openai:gpt-4", "--out", f"{R}/e5"], 2, "before any stage: OPENAI_API_KEY is not set"),
    ("missing API key of the default judge", ["eval", "--model", "{model}", "--suites", "mt-bench", "--data-dir", "{mirror}",
                                              "--out", f"{R}/e7"], 2, "before any stage: OPENAI_API_KEY is not set"),
    ("unknown eval judge", ["eval", "--model", "{model}", "--suites", "tiny-world", "--judge", "gpt5", "--out", f"{R}/e8"], 2,
     "--judge: unknown judge 'gpt5' (known: openai, oracle)"),
    ("unknown eval suite", ["eval", "--model", "{model}", "--suites", "mt-bnch", "--out", f"{R}/e6"], 2,
     "--suites: unknown suite 'mt-bnch'"),
    ("bad leaderboard format", ["leaderboard", "--results", f"{R}/run", "--format", "xml"], 2, "--format: expected"),
    ("missing results folder", ["leaderboard", "--results", f"{R}/none"], 2, f"--results {R}/none: no such folder"),
    ("bad plan format", ["plan", "--format", "yaml"], 2, "--format: expected text or json"),
    ("unknown data-pull suite", ["data", "pull", "--suites", "gsm8k", "--to", f"{R}/pull"], 2, "gsm8k: not a suite"),
    ("import of a file that is not annotations", ["import", "--suite", "alpaca-eval", "--model", "m",
                                                  f"{R}/a-file", "--results", f"{R}/imp"], 2, f"{R}/a-file:"),
]


@pytest.mark.parametrize("case,argv,code,message", ROWS, ids=[r[0] for r in ROWS])
def test_bad_input(env, monkeypatch, case, argv, code, message):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.chdir(env["root"])  # default results/ lands here if anything were written
    fill = {k: str(v) for k, v in env.items()}
    args = [a.replace(R, fill["root"]).format(**fill) if "{" in a else a for a in argv]
    message = message.replace(R, fill["root"]).format(**fill)
    before = digest(env["root"])
    result = CliRunner().invoke(app, args)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == code, (case, result.exit_code, result.stderr[-500:])
    assert len(lines) == 1 and lines[0].startswith("error: " + message), (case, result.stderr[-500:])
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert digest(env["root"]) == before, f"{case}: something was written or changed"
    assert len(ROWS) >= 25
