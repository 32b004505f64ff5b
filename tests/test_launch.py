"""Training stages under `accelerate launch` with 2 processes (gloo on this CPU machine):
the checkpoints load, the launch really had 2 processes, and the first steps' losses match a
1-process run with the same global batch."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from selm_bench.harness.config import load_config
from selm_bench.harness.launch import accelerate_command

MICRO = {
    "name": "micro-launch",
    "seed": 0,
    "device": "cpu",
    "world": {"n_sft": 128, "n_pref": 32, "n_prompts": 32, "n_dev": 8, "n_eval": 16, "n_two_turn": 4, "n_mc": 8},
    "model": {"hidden_size": 32, "num_layers": 1, "num_heads": 2, "intermediate_size": 64},
    "sft": {"epochs": 1, "batch_size": 32, "logging_steps": 1},
    "dpo": {"batch_size": 16, "logging_steps": 1},
    "online": {"iterations": 1, "batch_size": 16, "num_samples": 2, "max_new_tokens": 8, "logging_steps": 1},
    "suite_options": {"tiny-world": {"max_new_tokens": 8}},
}
ARGS = ["--methods", "sft,dpo,selm", "--suites", "tiny-world"]
CHECKPOINTS = ["sft", "dpo", "selm/iter-1"]
# fp32 on CPU; the same examples make each global batch, but DDP's all-reduce sums the two
# halves' gradients in another order, so later steps drift by rounding only.
RTOL = 1e-4


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "selm_bench.harness.cli", *args], capture_output=True, text=True)


def losses(run: Path, ckpt: str) -> list[float]:
    log = json.loads((run / "checkpoints" / ckpt / "model" / "train_log.json").read_text())
    return [e["loss"] for e in log if "loss" in e]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("launch")
    cfg = root / "micro.yaml"
    cfg.write_text(yaml.safe_dump(MICRO))
    one = cli("train-and-eval", "--config", str(cfg), "--out", str(root / "one"), *ARGS)
    assert one.returncode == 0, one.stderr[-3000:]
    two = cli("train-and-eval", "--config", str(cfg), "--out", str(root / "two"), *ARGS,
              "--launcher", "accelerate", "--num-processes", "2")
    assert two.returncode == 0, two.stderr[-3000:]
    return root / "one", root / "two", two


def test_two_processes_train_and_checkpoints_load(runs):
    _, two, res = runs
    from transformers import AutoModelForCausalLM

    for ckpt in CHECKPOINTS:
        info = json.loads((two / "checkpoints" / ckpt / "model" / "train_info.json").read_text())
        assert info["num_processes"] == 2, (ckpt, info)
        AutoModelForCausalLM.from_pretrained(two / "checkpoints" / ckpt / "model")
        spec = json.loads((two / "checkpoints" / ckpt / "model" / "spec.json").read_text())
        assert spec["train"]["num_processes"] == 2 and spec["train"]["per_device_batch_size"] * 2 == (
            MICRO["sft"]["batch_size"] if ckpt == "sft" else 16)
    rows = json.loads((two / "leaderboard.json").read_text())
    assert [r["checkpoint"] for r in rows] == CHECKPOINTS
    assert "leaderboard" in res.stderr


def test_first_losses_match_one_process_with_the_same_global_batch(runs):
    one, two, _ = runs
    for ckpt in CHECKPOINTS:
        single, double = losses(one, ckpt), losses(two, ckpt)
        assert len(single) == len(double) >= 2, ckpt
        for step, (a, b) in enumerate(zip(single[:3], double[:3])):
            assert math.isclose(a, b, rel_tol=RTOL), (ckpt, step, a, b)


def test_spec_rejects_a_launch_of_another_size(runs, tmp_path):
    """The worker checks the launched world size against the spec (which is in the key)."""
    _, two, _ = runs
    spec = two / "checkpoints" / "dpo" / "model" / "spec.json"
    res = subprocess.run([sys.executable, "-m", "selm_bench.harness.run_stage", str(spec), "--root", str(two),
                          "--out", str(tmp_path / "o")], capture_output=True, text=True)
    assert res.returncode != 0 and "spec is for 2 process(es) but 1 were launched" in res.stderr


def test_accelerate_commands(tmp_path):
    cfg = load_config(sets=["device=cpu", "launch.launcher=accelerate", "launch.num_processes=2"])
    from selm_bench.harness.plan import train_args

    t = train_args(cfg, "sft")
    cmd = accelerate_command(Path("s.json"), Path("/r"), Path("/o"), cfg.launch, t)
    assert cmd[1] == "launch" and "--multi_gpu" in cmd and cmd[cmd.index("--num_processes") + 1] == "2"
    assert cmd[-7:] == ["-m", "selm_bench.harness.run_stage", "s.json", "--root", "/r", "--out", "/o"]
    zero3 = Path(__file__).resolve().parent.parent / "configs" / "accelerate" / "zero3.yaml"
    cfg = load_config(sets=["launch.launcher=accelerate", f"launch.accelerate_config={zero3}", "launch.num_processes=8",
                            "launch.wrapper=srun --nodes=2 --ntasks-per-node=1", "sft.batch_size=64"])
    cmd = accelerate_command(Path("s.json"), Path("/r"), Path("/o"), cfg.launch, train_args(cfg, "sft"))
    assert cmd[:5] == ["srun", "--nodes=2", "--ntasks-per-node=1", "bash", "-c"]
    assert f"--config_file {zero3} --num_processes 8 --machine_rank \"${{SLURM_NODEID:-0}}\" -m selm_bench.harness.run_stage" in cmd[5]


def test_global_batch_must_split_evenly():
    from selm_bench.harness.config import ConfigError
    from selm_bench.harness.plan import plan

    cfg = load_config(sets=["launch.launcher=accelerate", "launch.num_processes=3"])
    with pytest.raises(ConfigError, match=r"^sft.batch_size: 64 is not divisible"):
        plan(cfg)
