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

from selm_bench.harness.core.config import ConfigError, load_config
from selm_bench.harness.run.launch import accelerate_command
from selm_bench.harness.run.stages import train_args
from selm_bench.harness.core.specs import Strategy, TrainArgs
from support.cli import run as cli
from support.micro import LAUNCH as MICRO
from support.micro import losses

ACC = Path(__file__).resolve().parents[2] / "configs" / "accelerate"

ARGS = ["--methods", "sft,dpo,selm", "--suites", "tiny-world"]
CHECKPOINTS = ["sft", "dpo", "selm/iter-1"]
# fp32 on CPU; the same examples make each global batch, but DDP's all-reduce sums the two
# halves' gradients in another order, so later steps drift by rounding only.
RTOL = 1e-4


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
    res = subprocess.run([sys.executable, "-m", "selm_bench.harness.run.run_stage", str(spec), "--root", str(two),
                          "--out", str(tmp_path / "o")], capture_output=True, text=True)
    assert res.returncode != 0 and "spec is for 2 process(es) but 1 were launched" in res.stderr


def test_accelerate_commands(tmp_path):
    cfg = load_config(sets=["device=cpu", "launch.launcher=accelerate", "launch.num_processes=2"])
    from selm_bench.harness.run.stages import train_args

    t = train_args(cfg, "sft")
    cmd = accelerate_command(Path("s.json"), Path("/r"), Path("/o"), cfg.launch, t)
    assert cmd[1] == "launch" and "--multi_gpu" in cmd and cmd[cmd.index("--num_processes") + 1] == "2"
    assert cmd[-7:] == ["-m", "selm_bench.harness.run.run_stage", "s.json", "--root", "/r", "--out", "/o"]
    zero3 = Path(__file__).resolve().parents[2] / "configs" / "accelerate" / "zero3.yaml"
    cfg = load_config(sets=["launch.launcher=accelerate", f"launch.accelerate_config={zero3}", "launch.num_processes=8",
                            "launch.wrapper=srun --nodes=2 --ntasks-per-node=1", "sft.batch_size=64"])
    cmd = accelerate_command(Path("s.json"), Path("/r"), Path("/o"), cfg.launch, train_args(cfg, "sft"))
    assert cmd[:5] == ["srun", "--nodes=2", "--ntasks-per-node=1", "bash", "-c"]
    # the resolved precision (here fp32 on this CPU) overrides the file's bf16; no local port behind a wrapper
    assert (f"--config_file {zero3} --num_processes 8 --mixed_precision no --machine_rank \"${{SLURM_NODEID:-0}}\" "
            "-m selm_bench.harness.run.run_stage") in cmd[5]


def test_a_config_file_gets_the_resolved_precision_and_a_free_port():
    zero3 = ACC / "zero3.yaml"
    for precision, mp in [("fp32", "no"), ("bf16", "bf16"), ("fp16", "fp16")]:
        cfg = load_config(sets=["launch.launcher=accelerate", f"launch.accelerate_config={zero3}",
                                "launch.num_processes=2", f"precision={precision}", "device=cpu"])
        cmd = accelerate_command(Path("s.json"), Path("/r"), Path("/o"), cfg.launch, train_args(cfg, "sft"))
        assert cmd[cmd.index("--mixed_precision") + 1] == mp and cmd.count("--mixed_precision") == 1
        assert int(cmd[cmd.index("--main_process_port") + 1]) > 0  # not accelerate's fixed 29500
    one = load_config(sets=["launch.launcher=accelerate", f"launch.accelerate_config={zero3}", "device=cpu"])
    assert "--main_process_port" not in accelerate_command(Path("s"), Path("/r"), Path("/o"), one.launch, train_args(one, "sft"))
    node = load_config(sets=["launch.launcher=accelerate", f"launch.accelerate_config={ACC / 'multi_node_zero3.yaml'}",
                             "launch.num_processes=2", "device=cpu"])
    assert "--main_process_port" not in accelerate_command(Path("s"), Path("/r"), Path("/o"), node.launch,
                                                           train_args(node, "sft"))  # the file's own address


def test_launch_env_names_deepspeeds_cpu_accelerator_only_for_deepspeed_on_a_cpu(monkeypatch):
    from selm_bench.harness.run.launch import launch_env

    monkeypatch.delenv("DS_ACCELERATOR", raising=False)
    t = train_args(load_config(sets=["device=cpu"]), "sft")
    zero = t.model_copy(update={"strategy": Strategy(kind="deepspeed", zero_stage=3)})
    assert "DS_ACCELERATOR" not in launch_env(t) and launch_env(t)["PYTHONUNBUFFERED"] == "1"
    assert launch_env(zero)["DS_ACCELERATOR"] == "cpu"
    assert "DS_ACCELERATOR" not in launch_env(zero.model_copy(update={"device": "cuda"}))


def _strategy(*sets: str) -> Strategy:
    return train_args(load_config(sets=["device=cpu", *sets]), "sft").strategy


def test_the_strategy_comes_from_the_accelerate_config_file(tmp_path):
    acc = ["launch.launcher=accelerate"]
    assert _strategy() == _strategy(*acc) == Strategy()  # in-process; accelerate without a file: DDP
    assert _strategy(f"launch.accelerate_config={ACC / 'zero3.yaml'}") == Strategy()  # in-process ignores the file
    assert _strategy(*acc, f"launch.accelerate_config={ACC / 'multi_gpu.yaml'}") == Strategy()
    assert _strategy(*acc, f"launch.accelerate_config={ACC / 'single_gpu.yaml'}") == Strategy()
    zero3 = Strategy(kind="deepspeed", zero_stage=3, offload_optimizer="none", offload_param="none")
    assert _strategy(*acc, f"launch.accelerate_config={ACC / 'zero3.yaml'}") == zero3
    assert _strategy(*acc, f"launch.accelerate_config={ACC / 'multi_node_zero3.yaml'}") == zero3
    assert _strategy(*acc, f"launch.accelerate_config={ACC / 'zero2.yaml'}") == zero3.model_copy(update={"zero_stage": 2})
    ds_json = tmp_path / "ds.json"
    ds_json.write_text(json.dumps({"zero_optimization": {"stage": 3, "offload_optimizer": {"device": "cpu"}}}))
    f = tmp_path / "acc.yaml"
    f.write_text(yaml.safe_dump({"distributed_type": "DEEPSPEED", "deepspeed_config": {"deepspeed_config_file": str(ds_json)}}))
    assert _strategy(*acc, f"launch.accelerate_config={f}") == Strategy(kind="deepspeed", zero_stage=3,
                                                                       offload_optimizer="cpu", offload_param="none")
    f.write_text(yaml.safe_dump({"distributed_type": "FSDP", "fsdp_config": {"fsdp_sharding_strategy": "SHARD_GRAD_OP",
                                                                             "fsdp_offload_params": True}}))
    assert _strategy(*acc, f"launch.accelerate_config={f}") == Strategy(kind="fsdp", sharding="SHARD_GRAD_OP",
                                                                       offload_param="cpu")
    f.write_text(yaml.safe_dump({"distributed_type": "DEEPSPEED", "deepspeed_config": {"zero_stage": "auto"}}))
    with pytest.raises(ConfigError, match=r"^launch.accelerate_config: .*ZeRO stage 'auto' is not 0, 1, 2 or 3"):
        _strategy(*acc, f"launch.accelerate_config={f}")


def test_the_strategy_is_in_the_training_keys_only_when_sharded():
    """DDP, ZeRO-2 and ZeRO-3 get different training keys; the default keeps its JSON (no `strategy`) and so its keys."""
    from selm_bench.harness.run.stages import plan
    from selm_bench.harness.core.specs import to_json

    def training_keys(*sets: str) -> dict[str, str]:
        stages, _ = plan(load_config(sets=["device=cpu", "methods=[sft, dpo, selm]", "online.iterations=1", *sets]))
        return {s.name: s.key for s in stages}

    acc = ["launch.launcher=accelerate"]
    inproc, ddp = training_keys(), training_keys(*acc, f"launch.accelerate_config={ACC / 'multi_gpu.yaml'}")
    z2 = training_keys(*acc, f"launch.accelerate_config={ACC / 'zero2.yaml'}")
    z3 = training_keys(*acc, f"launch.accelerate_config={ACC / 'zero3.yaml'}")
    assert inproc == ddp == training_keys(*acc)
    for name in ("sft", "dpo", "selm/iter-1"):
        assert len({ddp[name], z2[name], z3[name]}) == 3, name
    assert z3["world"] == ddp["world"] and z3["selm/iter-1/generate"] != ddp["selm/iter-1/generate"]  # downstream of dpo
    t = train_args(load_config(sets=["device=cpu"]), "sft")
    assert "strategy" not in t.model_dump() and '"strategy"' not in to_json(t)
    zero = t.model_copy(update={"strategy": Strategy(kind="deepspeed", zero_stage=3)})
    assert zero.model_dump()["strategy"]["zero_stage"] == 3 and TrainArgs.model_validate_json(to_json(zero)) == zero


def test_the_worker_checks_the_launched_strategy(monkeypatch):
    from selm_bench.trainers.train import check_strategy

    for var in ("ACCELERATE_USE_DEEPSPEED", "ACCELERATE_USE_FSDP", "ACCELERATE_DEEPSPEED_ZERO_STAGE"):
        monkeypatch.delenv(var, raising=False)
    t = train_args(load_config(sets=["device=cpu"]), "sft")
    zero3 = t.model_copy(update={"strategy": Strategy(kind="deepspeed", zero_stage=3)})
    check_strategy(t)
    with pytest.raises(RuntimeError, match="spec is for deepspeed ZeRO-3 but the launch is ddp"):
        check_strategy(zero3)
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    monkeypatch.setenv("ACCELERATE_DEEPSPEED_ZERO_STAGE", "2")
    with pytest.raises(RuntimeError, match="spec is for deepspeed ZeRO-3 but the launch is deepspeed ZeRO-2"):
        check_strategy(zero3)
    with pytest.raises(RuntimeError, match="spec is for ddp but the launch is deepspeed ZeRO-2"):
        check_strategy(t)
    monkeypatch.setenv("ACCELERATE_DEEPSPEED_ZERO_STAGE", "3")
    check_strategy(zero3)


def test_deepspeeds_version_makes_only_deepspeed_stages_stale():
    from selm_bench.harness.core.specs import Ref, SFTSpec
    from selm_bench.harness.run.staleness import stage_env

    t = train_args(load_config(sets=["device=cpu"]), "sft")
    plain = SFTSpec(base=Ref(path="b"), data=Ref(path="d"), train=t)
    zero = plain.model_copy(update={"train": t.model_copy(update={"strategy": Strategy(kind="deepspeed", zero_stage=3)})})
    assert "deepspeed" not in stage_env(plain)["packages"]
    assert set(stage_env(zero)["packages"]) == {*stage_env(plain)["packages"], "deepspeed"}


def test_global_batch_must_split_evenly():
    from selm_bench.harness.core.config import ConfigError
    from selm_bench.harness.run.stages import plan

    cfg = load_config(sets=["launch.launcher=accelerate", "launch.num_processes=3"])
    with pytest.raises(ConfigError, match=r"^sft.batch_size: 64 is not divisible"):
        plan(cfg)
