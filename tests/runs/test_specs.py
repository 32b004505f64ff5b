"""Stage specs: their defaults, JSON round trip and key, a reference's resolution, a subprocess run
equal to the in-process one, and a walk over every config field: a field that can change a stage's
output changes that stage's key, a runtime field (where results go, judge concurrency, ...) changes none."""

import hashlib
import json
import subprocess
import sys
import typing
from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError

from selm_bench.harness.core.config import RUNTIME, ExperimentConfig, load_config
from selm_bench.harness.core.specs import (TRAINING_KINDS, DataSpec, EvalSpec, GenerateSpec, PreferenceSpec, RankSpec, Ref,
                                           SFTSpec, TrainArgs, WorldSpec, from_json, spec_key, to_json)
from selm_bench.harness.core.store import stable_hash
from selm_bench.harness.run.stages import plan
from selm_bench.harness.run.run_stage import run_stage

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


# ---------------------------------------------------------------- each spec
def test_a_ref_defaults_to_no_key_and_specs_are_frozen_and_closed():
    assert Ref(path="org/m").model_dump() == {"path": "org/m", "key": ""}
    with pytest.raises(ValidationError):
        Ref(path="a", other=1)
    ref = Ref(path="a")
    with pytest.raises(ValidationError):
        ref.path = "b"


def test_a_ref_resolves_under_the_run_when_it_is_there_else_stays_a_hub_id(tmp_path):
    (tmp_path / "world").mkdir()
    assert Ref(path="/abs/model", key="k").resolve(tmp_path) == "/abs/model"
    assert Ref(path="world").resolve(tmp_path) == str(tmp_path / "world")  # exists under the run
    assert Ref(path="checkpoints/sft/model", key="k").resolve(tmp_path) == str(tmp_path / "checkpoints/sft/model")
    assert Ref(path="org/model").resolve(tmp_path) == "org/model"  # neither: a hub id


REQUIRED_TRAIN = dict(learning_rate=1e-3, per_device_batch_size=4, gradient_accumulation_steps=2, num_processes=1,
                      epochs=1.0, warmup_ratio=0.1, max_length=64, logging_steps=5, seed=3, device="cpu",
                      precision="fp32", gradient_checkpointing=False)


def test_train_args_defaults():
    assert TrainArgs(**REQUIRED_TRAIN).model_dump() == {
        **REQUIRED_TRAIN, "max_steps": -1, "weight_decay": 0.0, "max_prompt_length": None, "truncation": "authors",
        "precompute_ref_log_probs": True, "lr_scheduler": "cosine", "optim": None}


def _every_spec() -> list[BaseModel]:
    ref = Ref(path="p", key="k")
    train = TrainArgs(**REQUIRED_TRAIN)
    return [
        WorldSpec(world=ExperimentConfig().world, tiny_model=None, seed=0),
        DataSpec(source="org/d", split="train", chunks=2, expected_rows=None),
        SFTSpec(base=ref, data=ref, train=train),
        PreferenceSpec(policy=ref, reference=ref, pairs=ref, loss="dpo", beta=0.1, alpha=None, nll_weight=0.0, train=train),
        GenerateSpec(policy=ref, prompts=ref, chunk=1, chunks=1, candidates=["policy"], num_samples=2, temperature=1.0,
                     top_p=1.0, max_new_tokens=4, ref_response="greedy", backend="hf", backend_options={}, device="cpu",
                     seed=1),
        RankSpec(candidates=ref, ranker="oracle"),
        EvalSpec(model=ref, name="m", suite="tiny-world", options={}, data_dir=None, world=None, references={},
                 backend="hf", backend_options={}, judge=None, judge_base_url=None, device="cpu", seed=0),
    ]


def test_each_spec_kind_round_trips_through_json():
    specs = _every_spec()
    assert [s.kind for s in specs] == ["world", "data", "sft", "preference", "generate", "rank", "eval"]
    for spec in specs:
        back = from_json(to_json(spec))
        assert type(back) is type(spec) and back == spec
    assert TRAINING_KINDS == ("sft", "preference")  # the kinds that train a model


def test_spec_defaults():
    ref = {"path": "p", "key": "k"}
    assert RankSpec(candidates=Ref(**ref), ranker="oracle").model_dump() == {
        "kind": "rank", "candidates": ref, "ranker": "oracle", "keep_ties": False, "max_failures": 0.0, "device": "cpu",
        "batch_size": 16, "judge_base_url": None, "trust_remote_code": False}
    sft, pref = _every_spec()[2:4]
    assert sft.trust_remote_code is False and pref.trust_remote_code is False


def test_a_spec_key_leaves_out_trust_remote_code_only_when_off():
    rank = RankSpec(candidates=Ref(path="c"), ranker="oracle")
    dumped = rank.model_dump(mode="json")
    assert spec_key(rank) == stable_hash({k: v for k, v in dumped.items() if k != "trust_remote_code"})
    on = rank.model_copy(update={"trust_remote_code": True})
    assert spec_key(on) == stable_hash({**dumped, "trust_remote_code": True})
    data = DataSpec(source="org/d", split="train", chunks=2, expected_rows=None)  # no such field at all
    assert spec_key(data) == stable_hash({"kind": "data", "source": "org/d", "split": "train", "chunks": 2,
                                          "expected_rows": None})


def test_a_spec_file_is_sorted_one_space_indented_with_a_newline():
    spec = DataSpec(source="org/d", split="train", chunks=2, expected_rows=None)
    assert to_json(spec) == ('{\n "chunks": 2,\n "expected_rows": null,\n "kind": "data",\n "source": "org/d",\n'
                             ' "split": "train"\n}\n')
    ev = _every_spec()[6].model_copy(update={"backend_options": {"cache": Path("/c")}})
    assert json.loads(to_json(ev))["backend_options"] == {"cache": "/c"}  # JSON mode: a Path becomes its text


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


def test_runtime_fields_are_exactly_the_documented_ones():
    """The config module docstring's `runtime` fields: where results go, judge call handling, how stages launch."""
    marked = set()
    for name, f in ExperimentConfig.model_fields.items():
        if f.json_schema_extra == {"runtime": True}:
            marked.add(name)
        ann = f.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            marked |= {f"{name}.{k}" for k, sub in ann.model_fields.items() if sub.json_schema_extra == {"runtime": True}}
    assert marked == {"name", "output_dir", "report_to", "eval.judge_concurrency", "eval.judge_max_retries", "eval.judge_timeout",
                      "launch.launcher", "launch.accelerate_config", "launch.wrapper", "vllm.python"}


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
