"""Stage specs: JSON round trip, a subprocess run equal to the in-process one, and a walk over
every config field: a field that can change a stage's output changes that stage's key, a
runtime field (where results go, judge concurrency, ...) changes none."""

import hashlib
import subprocess
import sys
import typing
from pathlib import Path

import pytest
from pydantic import BaseModel

from selm_bench.harness.core.config import RUNTIME, ExperimentConfig, load_config
from selm_bench.harness.run.stages import plan
from selm_bench.harness.run.run_stage import run_stage
from selm_bench.harness.core.specs import GenerateSpec, RankSpec, from_json, spec_key, to_json

REPO = Path(__file__).resolve().parents[2]


def digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def keys(cfg: ExperimentConfig) -> dict[str, str]:
    stages, evals = plan(cfg)
    return {s.name: s.key for s in [*stages, *evals]}


def test_spec_round_trip_and_subprocess_run_equal_in_process(tmp_path):
    cfg = load_config(sets=["world.n_sft=16", "world.n_pref=8", "world.n_prompts=8", "world.n_dev=4", "world.n_eval=4",
                            "world.n_two_turn=2", "world.n_mc=4", "model.hidden_size=16", "model.num_heads=2",
                            "model.intermediate_size=32", "device=cpu"])
    world = plan(cfg)[0][0]
    gen = GenerateSpec(policy=world.ref("base-model"), prompts=world.ref("data/prompts.jsonl"), chunk=1, chunks=2,
                       candidates=["policy", "dataset"], num_samples=2, temperature=1.0, top_p=1.0, max_new_tokens=4,
                       ref_response="greedy", backend="hf", backend_options={"batch_size": 8}, device="cpu", seed=3)
    rank = RankSpec(candidates=type(world.ref())(path="gen/candidates.jsonl", key=spec_key(gen)), ranker="oracle")
    for spec in (world.spec, gen, rank):
        back = from_json(to_json(spec))
        assert back == spec and spec_key(back) == spec_key(spec) and type(back) is type(spec)

    def run_all(root: Path, in_process: bool) -> None:
        root.mkdir()
        for name, spec in (("world", world.spec), ("gen", gen), ("rank", rank)):
            out = root / name
            if in_process:
                run_stage(spec, root, out)
            else:
                (root / f"{name}.json").write_text(to_json(spec))  # outside the compared outputs
                res = subprocess.run([sys.executable, "-m", "selm_bench.harness.run.run_stage", str(root / f"{name}.json"),
                                      "--root", str(root), "--out", str(out)], capture_output=True, text=True)
                assert res.returncode == 0, res.stderr[-2000:]
                (root / f"{name}.json").unlink()

    run_all(tmp_path / "a", in_process=True)
    run_all(tmp_path / "b", in_process=False)
    a, b = digest(tmp_path / "a"), digest(tmp_path / "b")
    assert a == b and "rank/generations.jsonl" in a and "world/base-model/model.safetensors" in a


# ---------------------------------------------------------------- the field walk
def leaves(model: type[BaseModel], prefix: str = ""):
    for name, f in model.model_fields.items():
        ann = f.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            yield from leaves(ann, f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}", f


def other_value(key: str, field, value, tmp_path: Path):
    """A valid value that differs from `value` (and does not resolve to the same thing)."""
    special = {
        "device": "cuda:1", "precision": "bf16", "model.pretrained": str(tmp_path), "eval.data_dir": "/data/mirror",
        "model.trust_remote_code": [str(tmp_path)],  # the base model's permission: in the keys only when on
        "eval.judge": "openai:gpt-4", "eval.judge_base_url": "http://127.0.0.1:9/v1", "online.ranker": "walk-test",
        "online.backend": "vllm", "eval.backend": "vllm", "launch.launcher": "accelerate",
        "launch.accelerate_config": str(REPO / "configs/accelerate/zero3.yaml"), "launch.wrapper": "srun",
        "methods": ["sft"], "suites": ["tiny-world"], "online.candidates": ["policy"], "online.start": "sft",
        "suite_options": {"tiny-world": {"limit": 5}}, "name": "other", "output_dir": "elsewhere",
        "report_to": ["tensorboard", "wandb"],
        "online.ref_response": "sample", "vllm.dtype": "bfloat16", "vllm.max_model_len": 512, "vllm.python": "/opt/vllm/bin/python",
        "data.prompts": "other/prompts", "data.split": "test_prefs", "online.chunks": [2, 3], "dpo.start": "base",
        **{f"{sec}.optim": "adamw_torch" for sec in ("sft", "dpo", "online")},
        **{f"{sec}.lr_scheduler": "linear" for sec in ("sft", "dpo", "online")},
        **{f"{sec}.max_prompt_length": 64 for sec in ("dpo", "online")},
        **{f"{sec}.truncation": "cut-prompt" for sec in ("dpo", "online")},
    }
    if key in special:
        return special[key]
    if isinstance(value, list):
        return value[:-1]
    if isinstance(value, bool) or value is None and typing.get_origin(field.annotation) in (typing.Union, type(int | None)):
        return not value if isinstance(value, bool) else True
    if isinstance(value, int):
        return {0: 1, -1: 5}.get(value, value * 2)
    if isinstance(value, float):
        return 0.1 if value == 0 else value * 0.5
    raise AssertionError(f"no perturbation for {key}={value!r}")


def test_every_field_reaches_the_keys_and_runtime_fields_do_not(tmp_path):
    from selm_bench.harness.core.registry import register_ranker

    @register_ranker("walk-test", help="a second ranker for the field walk")
    class _Other:
        pass

    real = ["data.prompts=HuggingFaceH4/ultrafeedback_binarized", f"model.pretrained={tmp_path}", "methods=[dpo, selm]",
            "dpo.start=base", "online.ranker=reward-model:rm", "data.chunks=4", "data.expected_rows=100"]
    bases = {  # a field only reaches a spec where the config uses it
        "vllm": ["online.backend=vllm", "eval.backend=vllm"],  # vllm's engine options: when a stage uses vllm
        "data": real, "dpo.chunk": real, "online.chunks": real,  # real prompt data
        "dpo.start": [f"model.pretrained={tmp_path}"], "model.trust_remote_code": [f"model.pretrained={tmp_path}"],
    }
    checked = 0
    for key, field in leaves(ExperimentConfig):
        base = load_config(sets=bases.get(key, bases.get(key.split(".")[0], [])))
        data = base.to_dict()
        node = data
        *path, last = key.split(".")
        for p in path:
            node = node[p]
        node[last] = other_value(key, field, node[last], tmp_path)
        changed = ExperimentConfig.model_validate(data)
        before, after = keys(base), keys(changed)
        runtime = (field.json_schema_extra or {}) == RUNTIME
        if runtime:
            assert after == before, f"runtime field {key} changed a stage key"
        else:
            assert after != before, f"{key} can change a stage's output but no stage key changed"
        checked += 1
    assert checked >= 70


def test_a_spec_is_the_only_input(tmp_path):
    """The key changes with every field the runner reads: here, one training hyperparameter."""
    a = plan(load_config())[0]
    b = plan(load_config(sets=["online.max_length=128"]))[0]
    ka, kb = {s.name: s.key for s in a}, {s.name: s.key for s in b}
    assert ka["sft"] == kb["sft"] and ka["dpo"] == kb["dpo"]
    assert ka["iterative-dpo/iter-1/generate"] == kb["iterative-dpo/iter-1/generate"]  # generation does not read max_length
    assert ka["selm/iter-1"] != kb["selm/iter-1"] and ka["selm/iter-2/generate"] != kb["selm/iter-2/generate"]


@pytest.mark.parametrize("module", ["harness", "trainers", "evals"])
def test_no_import_cycles(module):
    """Imports keep the pipeline's direction: no module of the project imports one that imports it back."""
    import ast

    graph: dict[str, set[str]] = {}
    for path in REPO.glob("*/*.py"):
        if path.parent.name not in ("harness", "trainers", "evals"):
            continue
        name = f"selm_bench.{path.parent.name}.{path.stem}"
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("selm_bench."):
                deps.add(node.module)
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name.startswith("selm_bench.")}
        graph[name] = {d for d in deps if d != name}

    def reach(start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            for d in graph.get(todo.pop(), ()):
                if d not in seen:
                    seen.add(d)
                    todo.append(d)
        return seen

    for name in graph:
        if name.startswith(f"selm_bench.{module}"):
            cyc = [d for d in graph[name] if name in reach(d)]
            assert not cyc, f"{name} <-> {cyc}"


def test_trainer_arguments_follow_the_spec(tmp_path):
    """What TRL is handed: the precision flags, CPU, the schedule and the batch, field by field."""
    from selm_bench.harness.core.specs import TrainArgs
    from selm_bench.trainers.train import trainer_kwargs

    base = dict(learning_rate=3e-3, per_device_batch_size=8, gradient_accumulation_steps=2, num_processes=1, epochs=1.0,
                warmup_ratio=0.1, max_length=96, logging_steps=5, seed=7, device="cpu", precision="fp32",
                gradient_checkpointing=False)
    fp32 = trainer_kwargs(TrainArgs(**base), tmp_path)
    assert (fp32["bf16"], fp32["fp16"], fp32["use_cpu"], fp32["seed"], fp32["data_seed"]) == (False, False, True, 7, 7)
    assert (fp32["per_device_train_batch_size"], fp32["gradient_accumulation_steps"], fp32["warmup_steps"]) == (8, 2, 0.1)
    assert (fp32["lr_scheduler_type"], fp32["max_steps"], fp32["save_strategy"], "optim" not in fp32) == ("cosine", -1, "no", True)
    bf16 = trainer_kwargs(TrainArgs(**{**base, "precision": "bf16", "device": "cuda", "optim": "adamw_torch"}), tmp_path)
    assert (bf16["bf16"], bf16["fp16"], bf16["use_cpu"], bf16["optim"]) == (True, False, False, "adamw_torch")
    fp16 = trainer_kwargs(TrainArgs(**{**base, "precision": "fp16", "device": "cuda"}), tmp_path)
    assert (fp16["bf16"], fp16["fp16"]) == (False, True)


def test_trainer_inputs_by_hand(tmp_path, monkeypatch, tiny_model):
    """Preference rows as TRL's conversations (unused pairs skipped), the launched-process check's
    line, and the weights' dtype: fp32 with autocast, half precision only under DeepSpeed."""
    import torch

    from selm_bench.harness.core.specs import TrainArgs
    from selm_bench.trainers.train import _load_model, check_world_size, preference_rows, trainer_kwargs

    rows = [{"prompt": "p", "chosen": "c", "rejected": "r", "y_ref": "y", "used": True},
            {"prompt": "q", "chosen": "c2", "rejected": "r2", "y_ref": "y2", "used": False},
            {"prompt": "s", "chosen": "c3", "rejected": "r3", "y_ref": "y3"}]
    conv = lambda role, text: [{"role": role, "content": text}]
    assert preference_rows(rows, with_ref=False) == [
        {"prompt": conv("user", "p"), "chosen": conv("assistant", "c"), "rejected": conv("assistant", "r")},
        {"prompt": conv("user", "s"), "chosen": conv("assistant", "c3"), "rejected": conv("assistant", "r3")}]
    assert [r["ref_response"] for r in preference_rows(rows, with_ref=True)] == [conv("assistant", "y"), conv("assistant", "y3")]
    t = TrainArgs(learning_rate=1e-3, per_device_batch_size=4, gradient_accumulation_steps=1, num_processes=2, epochs=1.0,
                  warmup_ratio=0.0, max_length=64, logging_steps=1, seed=0, device="cpu", precision="bf16",
                  gradient_checkpointing=True, weight_decay=0.01, max_steps=3)
    monkeypatch.setenv("WORLD_SIZE", "1")
    with pytest.raises(RuntimeError) as err:
        check_world_size(t)
    assert str(err.value) == "this stage's spec is for 2 process(es) but 1 were launched"
    monkeypatch.setenv("WORLD_SIZE", "2")
    check_world_size(t)
    kw = trainer_kwargs(t, tmp_path)
    assert (kw["weight_decay"], kw["max_steps"], kw["gradient_checkpointing"], kw["max_length"], kw["logging_steps"]) == (
        0.01, 3, True, 64, 1)
    assert (kw["output_dir"], kw["disable_tqdm"], kw["dataloader_num_workers"], kw["report_to"]) == (str(tmp_path), True, 0, [])
    monkeypatch.delenv("ACCELERATE_USE_DEEPSPEED", raising=False)
    assert next(_load_model(str(tiny_model), t).parameters()).dtype == torch.float32
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    assert next(_load_model(str(tiny_model), t).parameters()).dtype == torch.bfloat16
    assert next(_load_model(str(tiny_model), t.model_copy(update={"precision": "fp32"})).parameters()).dtype == torch.float32
