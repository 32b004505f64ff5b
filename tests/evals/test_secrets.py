"""Secrets: the judge key comes from the environment only and is in no file written and no output;
YAML is loaded safely (trust_remote_code: tests/training/test_trust_remote_code.py). A rejected key quoted
back by the endpoint stays out of the error line: tests/evals/test_openai_judge.py for MT-Bench and the
`openai:` client, tests/evals/test_alpaca_eval.py for AlpacaEval."""

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import REPO, write_mt_bench_fixture
from support.fixtures import FlakyOpenAI, write_alpaca_reference

SENTINEL = "sk-SENTINEL-7f3a9c1e5b2d4086"


def _cli(*args: str, env: dict, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "selm_bench.harness.cli", *args], capture_output=True, text=True,
                          env=env, cwd=cwd)


def _env(tmp_path: Path) -> dict:
    """The sentinel key in the environment; every cache and home folder a library could write to is
    under tmp_path, so the grep below sees it."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return {**os.environ, "OPENAI_API_KEY": SENTINEL, "NO_PROXY": "127.0.0.1,localhost", "HOME": str(home),
            "XDG_CACHE_HOME": str(home / ".cache"), "SELM_BENCH_DATA": str(home / "data"), "MPLCONFIGDIR": str(home / "mpl")}


def _leaks(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and SENTINEL.encode() in p.read_bytes()]


def test_judged_mt_bench_and_alpaca_eval_leave_the_key_nowhere(tmp_path, tiny_model):
    """`selm-bench eval` on MT-Bench and AlpacaEval against the flaky loopback endpoint (faults, so
    retries and failure reasons are exercised), then `selm-bench judge` on the same folder: the
    sentinel key is in no file under the run, the home or the caches, and in no output."""
    fake = FlakyOpenAI()
    try:
        data = write_alpaca_reference(write_mt_bench_fixture(tmp_path / "data"), 4)
        env, out = _env(tmp_path), tmp_path / "run"
        sets = ["--set", f"eval.judge_base_url={fake.url}", "--set", "eval.judge_max_retries=0",
                "--set", "eval.judge_timeout=0.5", "--set", "mt-bench.max_new_tokens=4",
                "--set", "alpaca-eval.max_new_tokens=4"]
        first = _cli("eval", "--model", str(tiny_model), "--suites", "mt-bench,alpaca-eval", "--data-dir", str(data),
                     "--judge", "openai:gpt-4", "--out", str(out), *sets, env=env, cwd=tmp_path)
        assert first.returncode == 0, first.stderr[-2000:]
        failed = sum(json.loads((out / s / "metrics.json").read_text())["info"]["judge"]["failures"]
                     for s in ("mt-bench", "alpaca-eval"))
        assert failed >= 1  # the faults reached both the reasons and the records
        second = _cli("judge", str(out), env=env, cwd=tmp_path)
        assert second.returncode == 0, second.stderr[-2000:]
        assert len(fake.prompts) > 0
    finally:
        fake.server.shutdown()
        fake.server.server_close()
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(written) > 20 and _leaks(tmp_path) == []
    for proc in (first, second):
        assert SENTINEL not in proc.stdout + proc.stderr


def _sources() -> list[Path]:
    return [p for d in ("harness", "trainers", "evals", "benchmarks", "tools") for p in (REPO / d).rglob("*.py")]


def test_yaml_is_only_loaded_safely(tmp_path):
    """Every YAML read is yaml.safe_load; a config with a Python tag is refused before anything runs."""
    unsafe = []
    for path in _sources():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "yaml":
                if node.attr in ("load", "load_all", "full_load", "full_load_all", "unsafe_load", "unsafe_load_all"):
                    unsafe.append(f"{path.name}:{node.lineno} yaml.{node.attr}")
    assert unsafe == []
    marker = tmp_path / "pwned"
    cfg = tmp_path / "evil.yaml"
    cfg.write_text(f"name: !!python/object/apply:os.system ['touch {marker}']\n")
    proc = _cli("plan", "--config", str(cfg), env=_env(tmp_path), cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.startswith("error: ") and not marker.exists()
