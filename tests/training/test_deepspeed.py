"""DeepSpeed ZeRO under `accelerate launch` on 2 gloo processes (CPU), with the shipped configs as
they are: ZeRO-3 trains sft, dpo and one selm iteration, ZeRO-2 trains sft; every checkpoint loads
with from_pretrained; ZeRO-3 loads the models already partitioned (each process holds half of the
parameters); the first logged losses equal a DDP run's (configs/accelerate/multi_gpu.yaml) from the
same inputs; and a DDP rerun into the ZeRO-3 run's folder retrains its training stages (the strategy
is in their keys) instead of reusing them."""

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytest.importorskip("deepspeed", reason="DeepSpeed is not installed (pip install deepspeed)")

from support.cli import run as cli  # noqa: E402
from support.micro import LAUNCH as MICRO  # noqa: E402
from support.micro import losses  # noqa: E402

ACC = Path(__file__).resolve().parents[2] / "configs" / "accelerate"
# test_launch's micro world and model; a larger step size and no warmup so that the preference
# losses move off log(2) within the logged steps, and a chosen-NLL term for selm.
DS_MICRO = {**MICRO, "name": "micro-deepspeed",
            "dpo": {**MICRO["dpo"], "learning_rate": 0.01, "warmup_ratio": 0.0},
            "online": {**MICRO["online"], "learning_rate": 0.01, "warmup_ratio": 0.0, "nll_weight": 1.0}}
ARGS = ["--suites", "tiny-world", "--launcher", "accelerate", "--num-processes", "2"]
CHECKPOINTS = ["sft", "dpo", "selm/iter-1"]
TRAINING = ["checkpoints/sft/model", "checkpoints/dpo/model", "checkpoints/selm/iter-1/model"]
# fp32 (mixed_precision no) on CPU: DDP and ZeRO reduce the same gradients in another order, so the
# first steps agree to rounding (measured: dpo and selm within 8e-8 relative, sft to 4 decimals for 30 steps).
RTOL = 1e-4


def run(cfg: Path, out: Path, acc: str, methods: str) -> subprocess.CompletedProcess:
    res = cli("train-and-eval", "--config", str(cfg), "--out", str(out), "--methods", methods, *ARGS,
              "--accelerate-config", str(ACC / acc))
    if res.returncode != 0:  # every stage log in full, as text (pytest shortens a tuple's repr)
        logs = "\n".join(f"--- {f.name}\n{f.read_text(errors='replace')[-20000:]}" for f in sorted((out / "logs").glob("*.log")))
        pytest.fail(f"train-and-eval exit {res.returncode}\n{res.stderr[-3000:]}\n{logs}", pytrace=False)
    return res


def keys(run_dir: Path) -> dict[str, str]:
    return {k: v["key"] for k, v in json.loads((run_dir / "manifest.json").read_text())["stages"].items()}


def info(run_dir: Path, ckpt: str) -> dict:
    return json.loads((run_dir / "checkpoints" / ckpt / "model" / "train_info.json").read_text())


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("deepspeed")
    cfg = root / "micro.yaml"
    cfg.write_text(yaml.safe_dump(DS_MICRO))
    # DeepSpeed's CPU collectives compile an op on first use (g++, about a minute, then cached in
    # ~/.cache/torch_extensions): build it in one process, not in two workers at once.
    env = {**os.environ, "DS_ACCELERATOR": "cpu"}
    build = subprocess.run([sys.executable, "-c", "from deepspeed.accelerator import get_accelerator; "
                            "get_accelerator().create_op_builder('ShareMemCommBuilder').load()"],
                           capture_output=True, text=True, env=env)
    assert build.returncode == 0, build.stderr[-3000:]

    z3 = root / "run"
    run(cfg, z3, "zero3.yaml", "sft,dpo,selm")
    zero3 = {"keys": keys(z3), "losses": {c: losses(z3, c) for c in CHECKPOINTS},
             "info": {c: info(z3, c) for c in CHECKPOINTS},
             "spec": json.loads((z3 / "checkpoints/sft/model/spec.json").read_text()),
             "leaderboard": [r["checkpoint"] for r in json.loads((z3 / "leaderboard.json").read_text())]}
    shutil.copytree(z3 / "checkpoints", root / "zero3-checkpoints")  # the DDP rerun replaces them
    ddp_res = run(cfg, z3, "multi_gpu.yaml", "sft,dpo,selm")  # the same folder
    z2 = root / "zero2"
    run(cfg, z2, "zero2.yaml", "sft")
    return {"root": root, "zero3": zero3, "ddp": z3, "ddp_stderr": ddp_res.stderr, "zero2": z2}


def test_zero3_trains_every_stage_and_the_checkpoints_load(runs):
    from transformers import AutoModelForCausalLM

    z3 = runs["zero3"]
    for ckpt in CHECKPOINTS:
        i = z3["info"][ckpt]
        assert (i["distributed_type"], i["zero_stage"], i["num_processes"], i["mixed_precision"]) == (
            "DistributedType.DEEPSPEED", 3, 2, "no"), (ckpt, i)
        model = AutoModelForCausalLM.from_pretrained(runs["root"] / "zero3-checkpoints" / ckpt / "model")
        assert all(p.numel() > 0 for p in model.parameters())  # the whole weights, gathered on save
    assert z3["spec"]["train"]["strategy"] == {"kind": "deepspeed", "zero_stage": 3, "offload_optimizer": "none",
                                               "offload_param": "none", "sharding": None}
    assert z3["leaderboard"] == CHECKPOINTS


def test_zero3_loads_the_models_partitioned(runs):
    """zero3_init_flag: the TRL config exists before the models load, so each process holds about
    half of the parameters from the start (the reference model too), not the whole model."""
    for ckpt in CHECKPOINTS:
        loaded = runs["zero3"]["info"][ckpt]["params_at_load"]
        assert set(loaded) == ({"policy"} if ckpt == "sft" else {"policy", "reference"})
        for model, n in loaded.items():
            assert 0 < n["local"] <= 0.55 * n["full"], (ckpt, model, n)
        ddp = info(runs["ddp"], ckpt)["params_at_load"]
        assert all(n["local"] == n["full"] == loaded["policy"]["full"] for n in ddp.values()), (ckpt, ddp)


def test_first_losses_match_ddp(runs):
    ddp = runs["ddp"]
    for ckpt in CHECKPOINTS:
        zero3, plain = runs["zero3"]["losses"][ckpt], losses(ddp, ckpt)
        assert len(zero3) == len(plain) >= 2, ckpt
        for step, (a, b) in enumerate(zip(zero3[:3], plain[:3])):
            assert math.isclose(a, b, rel_tol=RTOL), (ckpt, step, a, b)
        assert any(abs(x - math.log(2)) > 1e-3 for x in plain[:3]) or ckpt == "sft", (ckpt, plain)  # losses that moved
    zero2 = losses(runs["zero2"], "sft")
    assert len(zero2) >= 2 and all(math.isclose(a, b, rel_tol=RTOL) for a, b in zip(zero2[:3], losses(ddp, "sft")[:3]))


def test_zero2_trains_and_its_checkpoint_loads(runs):
    from transformers import AutoModelForCausalLM

    i = info(runs["zero2"], "sft")
    assert (i["distributed_type"], i["zero_stage"], i["num_processes"]) == ("DistributedType.DEEPSPEED", 2, 2)
    assert i["params_at_load"]["policy"]["local"] == i["params_at_load"]["policy"]["full"]  # ZeRO-2 keeps the model whole
    AutoModelForCausalLM.from_pretrained(runs["zero2"] / "checkpoints" / "sft" / "model")


def test_another_strategy_in_the_same_folder_retrains(runs):
    """The DDP rerun into the ZeRO-3 run's folder reuses the world but none of the training stages."""
    before, after, err = runs["zero3"]["keys"], keys(runs["ddp"]), runs["ddp_stderr"]
    assert before["world"] == after["world"] and "skip world" in err
    for stage in TRAINING:
        assert before[stage] != after[stage], stage
    for ckpt in CHECKPOINTS:
        assert f"skip {ckpt} " not in err and f"skip {ckpt}\n" not in err, ckpt
        assert info(runs["ddp"], ckpt)["distributed_type"] in {"DistributedType.MULTI_GPU", "DistributedType.MULTI_CPU"}  # CPU: gloo
    assert "strategy" not in json.loads((runs["ddp"] / "checkpoints/sft/model/spec.json").read_text())["train"]
