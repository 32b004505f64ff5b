"""Training stages under `accelerate launch` with 2 processes (gloo on this CPU machine):
the checkpoints load, the launch really had 2 processes, and the first steps' losses match a
1-process run with the same global batch. Also the launch command, the parallel strategy, and the
training worker's glue (trainers/train.py): what TRL is handed, the checks of the launch, the
preference rows, the weights' dtype and what a finished stage saves."""

import json
import math
import shlex
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch
import yaml

from selm_bench.harness.core.config import ConfigError, load_config
from selm_bench.harness.run.launch import accelerate_command
from selm_bench.harness.run.stages import train_args
from selm_bench.harness.core.specs import Strategy, TrainArgs
from support.cli import run as cli
from support.micro import LAUNCH as MICRO
from support.micro import losses
from support.stand_ins import fake_transformers
from support.stand_ins import train_args as spec_train_args

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
    assert res.returncode != 0 and "for 2 process(es)" in res.stderr and "1 were launched" in res.stderr
    assert list((tmp_path / "o").iterdir()) == []  # refused before anything was trained or written


def test_accelerate_commands(tmp_path):
    cfg = load_config(sets=["device=cpu", "launch.launcher=accelerate", "launch.num_processes=2"])
    t = train_args(cfg, "sft")
    cmd = accelerate_command(Path("s.json"), Path("/r"), Path("/o"), cfg.launch, t)
    assert cmd[1] == "launch" and "--multi_gpu" in cmd and cmd[cmd.index("--num_processes") + 1] == "2"
    assert cmd[-7:] == ["-m", "selm_bench.harness.run.run_stage", "s.json", "--root", "/r", "--out", "/o"]
    zero3 = ACC / "zero3.yaml"
    cfg = load_config(sets=["launch.launcher=accelerate", f"launch.accelerate_config={zero3}", "launch.num_processes=8",
                            "launch.wrapper=srun --nodes=2 --ntasks-per-node=1", "sft.batch_size=64"])
    cmd = accelerate_command(Path("s.json"), Path("/r"), Path("/o"), cfg.launch, train_args(cfg, "sft"))
    assert cmd[:5] == ["srun", "--nodes=2", "--ntasks-per-node=1", "bash", "-c"] and len(cmd) == 6
    # the resolved precision (here fp32 on this CPU) overrides the file's bf16; no local port behind a wrapper;
    # each node's rank from its own SLURM_NODEID, expanded by the node's shell
    inner = shlex.split(cmd[5])
    assert inner[0].endswith("accelerate") and inner[1:] == [
        "launch", "--config_file", str(zero3), "--num_processes", "8", "--mixed_precision", "no",
        "--machine_rank", "${SLURM_NODEID:-0}", "-m", "selm_bench.harness.run.run_stage", "s.json", "--root", "/r",
        "--out", "/o"]
    assert '"${SLURM_NODEID:-0}"' in cmd[5]


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


def test_a_one_machine_config_file_with_its_own_port_keeps_that_port(tmp_path):
    """A config file that fixes main_process_port (say for a firewall) launches on that port: the harness
    adds no port of its own, which would override the file's."""
    f = tmp_path / "acc.yaml"
    f.write_text(yaml.safe_dump({"distributed_type": "MULTI_GPU", "num_machines": 1, "num_processes": 2,
                                 "main_process_port": 29617}))
    cfg = load_config(sets=["launch.launcher=accelerate", f"launch.accelerate_config={f}", "launch.num_processes=2",
                            "device=cpu"])
    cmd = accelerate_command(Path("s.json"), Path("/r"), Path("/o"), cfg.launch, train_args(cfg, "sft"))
    assert cmd[cmd.index("--config_file") + 1] == str(f.resolve()) and "--main_process_port" not in cmd


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
    with pytest.raises(ConfigError) as err:
        _strategy(*acc, f"launch.accelerate_config={f}")
    assert str(err.value).startswith("launch.accelerate_config: ") and "ZeRO stage 'auto'" in str(err.value)


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


def _spec_and_launch(err) -> tuple[str, str]:
    """What a launch mismatch names: the spec's strategy, then the launched one."""
    spec, launch = str(err.value).split(" but ")
    return spec.rpartition(" for ")[2], launch.rpartition(" is ")[2]


def test_the_worker_checks_the_launched_strategy(monkeypatch):
    from selm_bench.trainers.train import check_strategy

    for var in ("ACCELERATE_USE_DEEPSPEED", "ACCELERATE_USE_FSDP", "ACCELERATE_DEEPSPEED_ZERO_STAGE"):
        monkeypatch.delenv(var, raising=False)
    t = train_args(load_config(sets=["device=cpu"]), "sft")
    zero3 = t.model_copy(update={"strategy": Strategy(kind="deepspeed", zero_stage=3)})
    check_strategy(t)
    with pytest.raises(RuntimeError) as err:
        check_strategy(zero3)
    assert _spec_and_launch(err) == ("deepspeed ZeRO-3", "ddp")
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    monkeypatch.setenv("ACCELERATE_DEEPSPEED_ZERO_STAGE", "2")
    with pytest.raises(RuntimeError) as err:
        check_strategy(zero3)
    assert _spec_and_launch(err) == ("deepspeed ZeRO-3", "deepspeed ZeRO-2")
    with pytest.raises(RuntimeError) as err:
        check_strategy(t)
    assert _spec_and_launch(err) == ("ddp", "deepspeed ZeRO-2")
    monkeypatch.setenv("ACCELERATE_DEEPSPEED_ZERO_STAGE", "3")
    check_strategy(zero3)


def test_the_worker_recognises_an_fsdp_launch(monkeypatch):
    """accelerate's FSDP launch (ACCELERATE_USE_FSDP=true, in any case) matches an FSDP spec and is
    refused for a DDP spec, naming both."""
    from selm_bench.trainers.train import check_strategy

    for var in ("ACCELERATE_USE_DEEPSPEED", "ACCELERATE_DEEPSPEED_ZERO_STAGE"):
        monkeypatch.delenv(var, raising=False)
    t = train_args(load_config(sets=["device=cpu"]), "sft")
    fsdp = t.model_copy(update={"strategy": Strategy(kind="fsdp", sharding="FULL_SHARD", offload_param="none")})
    for value in ("true", "True"):
        monkeypatch.setenv("ACCELERATE_USE_FSDP", value)
        check_strategy(fsdp)
        with pytest.raises(RuntimeError) as err:
            check_strategy(t)
        assert _spec_and_launch(err) == ("ddp", "fsdp")


def test_deepspeeds_version_makes_only_deepspeed_stages_stale():
    from selm_bench.harness.core.specs import Ref, SFTSpec
    from selm_bench.harness.run.staleness import stage_env

    t = train_args(load_config(sets=["device=cpu"]), "sft")
    plain = SFTSpec(base=Ref(path="b"), data=Ref(path="d"), train=t)
    zero = plain.model_copy(update={"train": t.model_copy(update={"strategy": Strategy(kind="deepspeed", zero_stage=3)})})
    assert "deepspeed" not in stage_env(plain)["packages"]
    assert set(stage_env(zero)["packages"]) == {*stage_env(plain)["packages"], "deepspeed"}


# ---------------------------------------------------------------- the training worker's glue (trainers/train.py)
def test_trl_gets_the_specs_training_arguments(tmp_path):
    """What TRL is handed, field by field: the batch, the schedule, the precision flags, CPU, the
    seeds, no checkpoints saved mid-run, no trackers and no progress bars of its own."""
    from selm_bench.trainers.train import trainer_kwargs

    assert trainer_kwargs(spec_train_args(), tmp_path / "o") == {
        "output_dir": str(tmp_path / "o"), "per_device_train_batch_size": 4, "gradient_accumulation_steps": 2,
        "learning_rate": 2e-5, "num_train_epochs": 3.0, "max_steps": -1, "warmup_steps": 0.05, "weight_decay": 0.0,
        "lr_scheduler_type": "cosine", "logging_steps": 10, "save_strategy": "no", "report_to": [], "seed": 3,
        "data_seed": 3, "bf16": False, "fp16": False, "use_cpu": True, "gradient_checkpointing": False,
        "disable_tqdm": True, "dataloader_num_workers": 0, "max_length": 128, "dataset_num_proc": None}
    bf16 = trainer_kwargs(spec_train_args(precision="bf16", device="cuda", optim="adamw_torch", weight_decay=0.01,
                                          max_steps=3, gradient_checkpointing=True), tmp_path)
    assert (bf16["bf16"], bf16["fp16"], bf16["use_cpu"], bf16["optim"]) == (True, False, False, "adamw_torch")
    assert (bf16["weight_decay"], bf16["max_steps"], bf16["gradient_checkpointing"]) == (0.01, 3, True)
    fp16 = trainer_kwargs(spec_train_args(precision="fp16", device="cuda"), tmp_path)
    assert (fp16["bf16"], fp16["fp16"], "optim" in fp16) == (False, True, False)  # no optim set: transformers' default


def test_the_worker_checks_the_launched_world_size(monkeypatch):
    from selm_bench.trainers.train import check_world_size

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    check_world_size(spec_train_args())  # no WORLD_SIZE: one process
    with pytest.raises(RuntimeError) as err:
        check_world_size(spec_train_args(num_processes=4))
    assert "for 4 process(es)" in str(err.value) and "1 were launched" in str(err.value)
    monkeypatch.setenv("WORLD_SIZE", "1")
    with pytest.raises(RuntimeError) as err:
        check_world_size(spec_train_args(num_processes=2))
    assert "for 2 process(es)" in str(err.value) and "1 were launched" in str(err.value)
    monkeypatch.setenv("WORLD_SIZE", "2")
    check_world_size(spec_train_args(num_processes=2))


def test_preference_rows_become_trl_conversations_without_unused_pairs():
    from selm_bench.trainers.train import assistant, preference_rows, user

    assert user("hi") == [{"role": "user", "content": "hi"}]
    assert assistant("yo") == [{"role": "assistant", "content": "yo"}]
    rows = [{"prompt": "p", "chosen": "c", "rejected": "r", "y_ref": "y", "used": True},
            {"prompt": "q", "chosen": "c2", "rejected": "r2", "y_ref": "y2", "used": False},
            {"prompt": "s", "chosen": "c3", "rejected": "r3", "y_ref": "y3"}]
    conv = lambda role, text: [{"role": role, "content": text}]  # noqa: E731
    assert preference_rows(rows, with_ref=False) == [
        {"prompt": conv("user", "p"), "chosen": conv("assistant", "c"), "rejected": conv("assistant", "r")},
        {"prompt": conv("user", "s"), "chosen": conv("assistant", "c3"), "rejected": conv("assistant", "r3")}]
    assert [r["ref_response"] for r in preference_rows(rows, with_ref=True)] == [conv("assistant", "y"), conv("assistant", "y3")]


@pytest.mark.parametrize("deepspeed, precision, dtype", [
    (None, "bf16", torch.float32),  # fp32 weights, the Trainer autocasts
    ("TRUE", "bf16", torch.bfloat16),  # DeepSpeed wants half-precision weights (the flag read case-blind)
    ("true", "fp16", torch.float16),
    ("true", "fp32", torch.float32),
    ("false", "fp16", torch.float32),
])
def test_weights_dtype_follows_deepspeed_and_precision_and_remote_code_stays_off(monkeypatch, deepspeed, precision, dtype):
    from selm_bench.trainers.train import _load_model

    calls = []

    class AutoModelForCausalLM:
        @staticmethod
        def from_pretrained(path, **kw):
            calls.append((path, kw))
            return "model"

    fake_transformers(monkeypatch, AutoModelForCausalLM=AutoModelForCausalLM)
    if deepspeed is None:
        monkeypatch.delenv("ACCELERATE_USE_DEEPSPEED", raising=False)
    else:
        monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", deepspeed)
    assert _load_model("/ckpt", spec_train_args(precision=precision)) == "model"
    assert calls == [("/ckpt", {"dtype": dtype, "trust_remote_code": False})]


def test_a_real_checkpoint_loads_in_fp32_and_in_half_precision_only_under_deepspeed(monkeypatch, tiny_model):
    from selm_bench.trainers.train import _load_model

    t = spec_train_args(precision="bf16")
    monkeypatch.delenv("ACCELERATE_USE_DEEPSPEED", raising=False)
    assert next(_load_model(str(tiny_model), t).parameters()).dtype == torch.float32
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    assert next(_load_model(str(tiny_model), t).parameters()).dtype == torch.bfloat16
    assert next(_load_model(str(tiny_model), t.model_copy(update={"precision": "fp32"})).parameters()).dtype == torch.float32


class _FakeTrainer:
    def __init__(self, main=True):
        self.main = main
        self.saved, self.removed = [], []
        self.state = types.SimpleNamespace(log_history=[{"loss": 1.5}])
        self.accelerator = types.SimpleNamespace(num_processes=3, distributed_type="MULTI_GPU", device="cuda:0",
                                                 mixed_precision="bf16")
        self.args = types.SimpleNamespace(learning_rate=1e-6, lr_scheduler_type="linear", optim="adamw_torch",
                                          per_device_train_batch_size=4, gradient_accumulation_steps=2,
                                          gradient_checkpointing=True)

    def save_model(self, path):
        self.saved.append(path)

    def is_world_process_zero(self):
        return self.main

    def remove_callback(self, cb):
        self.removed.append(cb)


def test_a_finished_stage_saves_model_log_and_train_info_from_the_main_process_only(tmp_path):
    from selm_bench.trainers.train import _save

    saved = []
    tok = types.SimpleNamespace(save_pretrained=saved.append)
    tr = _FakeTrainer()
    _save(tr, tok, tmp_path)
    assert (tr.saved, saved) == ([str(tmp_path)], [str(tmp_path)])
    assert (tmp_path / "train_log.json").read_text() == '[\n {\n  "loss": 1.5\n }\n]'  # indent=1
    assert json.loads((tmp_path / "train_info.json").read_text()) == {
        "num_processes": 3, "distributed_type": "MULTI_GPU", "device": "cuda:0", "mixed_precision": "bf16",
        "learning_rate": 1e-6, "lr_scheduler": "linear", "optim": "adamw_torch", "global_batch": 24,  # 4 x 2 x 3
        "gradient_checkpointing": True}
    assert (tmp_path / "train_info.json").read_text().startswith('{\n "num_processes": 3,\n')

    other = tmp_path / "rank1"
    other.mkdir()
    tr1 = _FakeTrainer(main=False)
    _save(tr1, tok, other)  # every process saves the model (ZeRO-3 gathers it), only the main one writes files
    assert tr1.saved == [str(other)] and saved == [str(tmp_path)] and list(other.iterdir()) == []


def test_training_prints_no_log_line_of_its_own(monkeypatch):
    from selm_bench.trainers.train import _quiet

    class PrinterCallback:
        pass

    fake_transformers(monkeypatch)
    monkeypatch.setitem(sys.modules, "transformers.trainer_callback", types.SimpleNamespace(PrinterCallback=PrinterCallback))
    tr = _FakeTrainer()
    assert _quiet(tr) is tr and tr.removed == [PrinterCallback]


def test_training_progress_advances_once_a_step(monkeypatch):
    from selm_bench.trainers import train

    events = []

    class Bar:
        def advance(self, k):
            events.append(("advance", k))

    class CM:
        def __init__(self, desc, total):
            events.append(("open", desc, total))

        def __enter__(self):
            return Bar()

        def __exit__(self, *exc):
            events.append(("close", exc))

    monkeypatch.setattr(train, "progress", CM)
    fake_transformers(monkeypatch, TrainerCallback=object)
    cb = train._progress_callback("selm")
    state = types.SimpleNamespace(max_steps=2)
    cb.on_train_begin(None, state, None)
    cb.on_step_end(None, state, None)
    cb.on_step_end(None, state, None)
    cb.on_train_end(None, state, None)
    assert events == [("open", "selm", 2), ("advance", 1), ("advance", 1), ("close", (None, None, None))]
