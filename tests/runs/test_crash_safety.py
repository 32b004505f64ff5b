"""kill -9 during training, generation, evaluation and judging, then a rerun: the leaderboard
equals an uninterrupted run's, and no temp folder is left behind."""

import json
import signal
import subprocess
import sys

import pytest
import yaml
from support.micro import micro

MICRO = micro("crash",
              methods=["sft", "dpo", "selm"],
              suites=["tiny-world", "mt-bench", "alpaca-eval"],
              world={"n_sft": 64, "n_pref": 16, "n_prompts": 16, "n_dev": 4, "n_eval": 12, "n_two_turn": 4, "n_mc": 4},
              sft={"epochs": 1, "batch_size": 16},
              dpo={"batch_size": 8},
              online={"iterations": 1, "batch_size": 8, "num_samples": 2, "max_new_tokens": 6},
              suite_options={"tiny-world": {"max_new_tokens": 6}, "mt-bench": {"max_new_tokens": 6}, "alpaca-eval": {"max_new_tokens": 6}})


def command(cfg, out):
    return [sys.executable, "-m", "selm_bench.harness.cli", "train-and-eval", "--config", str(cfg), "--out", str(out)]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    root = tmp_path_factory.mktemp("crash")
    cfg = root / "c.yaml"
    cfg.write_text(yaml.safe_dump(MICRO))
    res = subprocess.run(command(cfg, root / "whole"), capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
    return cfg, json.loads((root / "whole" / "leaderboard.json").read_text())


# The line after which the process is killed, and what runs then.
POINTS = [("done world", "sft training"), ("done dpo", "generation"),
          ("done selm/iter-1 in", "evaluation"), ("done eval sft tiny-world", "judging (mt-bench, alpaca-eval)")]


@pytest.mark.parametrize("marker,during", POINTS, ids=[p[1] for p in POINTS])
def test_kill_9_then_rerun_gives_the_same_leaderboard(reference, tmp_path, marker, during):
    cfg, expected = reference
    out = tmp_path / "run"
    proc = subprocess.Popen(command(cfg, out), stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    seen = False
    for line in proc.stderr:
        if marker in line:
            proc.send_signal(signal.SIGKILL)
            seen = True
            break
    proc.wait(timeout=300)
    assert seen and proc.returncode == -signal.SIGKILL, f"never saw {marker!r}"
    again = subprocess.run(command(cfg, out), capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-2000:]
    rows = json.loads((out / "leaderboard.json").read_text())
    # provenance names the run folder ("run whole" vs "run run"); config hash and commit agree
    assert [r.pop("provenance").split(" · ", 1)[1] for r in rows] == \
        [r["provenance"].split(" · ", 1)[1] for r in expected]
    assert rows == [{k: v for k, v in r.items() if k != "provenance"} for r in expected]
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp") and p.is_dir()]
