"""Config, specs, plan, registry and staleness contracts pinned whole, each against a value written
out by hand: error lines in full, every default of a spec, the exact stage names, folders and refs
a small config plans, a training stage's full arguments, the registry's help and ordering rules."""

from __future__ import annotations

import dataclasses
import json
from importlib import metadata
from pathlib import Path
from types import SimpleNamespace

import pytest
from pydantic import BaseModel, ValidationError, model_validator

from selm_bench.harness.core import registry
from selm_bench.harness.core.config import (ConfigError, ExperimentConfig, ModelConfig, _loc, _message, apply_overrides,
                                       config_error, load_config, needs_remote_code, validate_suite_options)
from selm_bench.harness.run.stages import (Sources, Stage, backend_options, checkpoint_folder, eval_spec, judge_runtime, plan,
                                     precision, resolve_device, train_args)
from selm_bench.harness.core.specs import (TRAINING_KINDS, DataSpec, EvalSpec, GenerateSpec, PreferenceSpec, RankSpec, Ref,
                                      SFTSpec, TinyModel, TrainArgs, WorldSpec, from_json, spec_key, to_json)
from selm_bench.harness.run.staleness import _version, stage_env
from selm_bench.harness.core.store import stable_hash

SUITES = "alpaca-eval, brainteaser, lm-eval, mt-bench, tiny-world"  # registry.names("suite"), sorted


def cfg_of(**data) -> ExperimentConfig:
    """A config from sections as keyword arguments (no YAML file, no cross checks): every other
    field keeps the default of harness/core/config.py."""
    return ExperimentConfig.model_validate(data)


def error_line(sets: list[str]) -> str:
    with pytest.raises(ConfigError) as err:
        load_config(sets=sets)
    return str(err.value)


# ---------------------------------------------------------------- config.py
def test_needs_remote_code_reads_auto_map_from_the_local_config(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    custom, plain, broken, empty = (tmp_path / n for n in ("custom", "plain", "broken", "empty"))
    for d in (custom, plain, broken, empty):
        d.mkdir()
    (custom / "config.json").write_text(json.dumps({"auto_map": {"AutoModelForCausalLM": "m.M"}}))
    (plain / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (broken / "config.json").write_text("{not json")
    assert needs_remote_code(custom) is True
    assert needs_remote_code("~/custom") is True  # `~` is expanded
    assert needs_remote_code(plain) is False
    assert needs_remote_code(broken) is False  # unreadable: fails later, where the model loads
    assert needs_remote_code(empty) is False
    assert needs_remote_code(tmp_path / "missing") is False


@pytest.mark.parametrize("path", ["~/nope", "./nope", "/nope", "a/b/c"])
def test_a_missing_local_model_path_is_one_line(path, tmp_path, monkeypatch):
    """Local = starts with `.`, `/` or `~`, or has more than one `/` (a hub id has exactly one)."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    assert error_line([f"model.pretrained={path}"]) == f"model.pretrained: no such local model: {path}"


def test_hub_ids_and_existing_local_paths_are_accepted(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m" / "sub").mkdir(parents=True)
    for name in ("org/model", "gpt2", "~/m", "./m", str(tmp_path / "m"), "m/sub/"):
        assert ModelConfig(pretrained=name).pretrained == name


def test_a_model_with_its_own_code_must_be_named(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model = tmp_path / "custom"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"auto_map": {"AutoConfig": "c.C"}}))
    assert error_line([f"model.pretrained={model}"]) == (
        f"model: {model} ships its own code (auto_map in config.json); to run it, name it in model.trust_remote_code")
    cfg = load_config(sets=[f"model.pretrained={model}", f"model.trust_remote_code=[{model}]"])
    assert cfg.model.trusts(str(model)) is True


def test_trusts_only_the_named_models(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    m = ModelConfig(trust_remote_code=["org/a", "rm/x"])
    assert [m.trusts(x) for x in ("org/a", "rm/x", "org/b", "")] == [True, True, False, False]
    assert ModelConfig().trusts("org/a") is False


def test_assignment_is_validated():
    cfg = ExperimentConfig()
    with pytest.raises(ValidationError):
        cfg.online.beta = 0
    with pytest.raises(ValidationError):
        cfg.world.categories = ["mul"]
    cfg.online.beta = 0.5
    assert cfg.online.beta == 0.5


@pytest.mark.parametrize("section,field,value", [
    ("sft", "lr_scheduler", "linear"), ("dpo", "lr_scheduler", "constant_with_warmup"), ("dpo", "start", "base"),
    ("online", "start", "sft"), ("online", "start", "dpo"), ("online", "start", "base"),
    ("online", "ref_response", "sample"), ("online", "candidates", ["dataset"]), ("online", "candidates", ["policy"]),
    ("vllm", "dtype", "bfloat16"), ("vllm", "dtype", "float16"), ("vllm", "dtype", "float32"),
    ("launch", "launcher", "accelerate"), ("world", "categories", ["extract"]),
    (None, "precision", "fp32"), (None, "precision", "bf16"), (None, "precision", "fp16"),
])
def test_every_documented_choice_is_accepted(section, field, value):
    cfg = ExperimentConfig.model_validate({section: {field: value}} if section else {field: value})
    assert getattr(getattr(cfg, section) if section else cfg, field) == value


def test_one_candidate_source_is_enough():
    cfg = load_config(sets=["online.num_samples=1", "online.candidates=[policy]"])
    assert (cfg.online.num_samples, cfg.online.candidates) == (1, ["policy"])
    dataset_only = load_config(sets=["online.num_samples=0", "online.candidates=[dataset]"])
    assert (dataset_only.online.num_samples, dataset_only.online.candidates) == (0, ["dataset"])


def test_an_existing_accelerate_config_is_accepted(tmp_path):
    f = tmp_path / "acc.yaml"
    f.write_text("compute_environment: LOCAL_MACHINE\n")
    assert cfg_of(launch={"accelerate_config": str(f)}).launch.accelerate_config == str(f)


def test_runtime_fields_are_exactly_the_documented_ones():
    """The module docstring's `runtime` fields: where results go, judge call handling, how stages launch."""
    marked = set()
    for name, f in ExperimentConfig.model_fields.items():
        if f.json_schema_extra == {"runtime": True}:
            marked.add(name)
        ann = f.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            marked |= {f"{name}.{k}" for k, sub in ann.model_fields.items() if sub.json_schema_extra == {"runtime": True}}
    assert marked == {"name", "output_dir", "report_to", "eval.judge_concurrency", "eval.judge_max_retries", "eval.judge_timeout",
                      "launch.launcher", "launch.accelerate_config", "launch.wrapper", "vllm.python"}


def test_loc_skips_validator_frames_and_names_the_whole_config():
    assert _loc(("methods", 1, "function-after[check(), str]")) == "methods[1]"
    assert _loc(("a", "function-after[check(), str]", "b", 0, "c")) == "a.b[0].c"  # a frame mid-path is skipped
    assert _loc(("source", "literal['fastchat','tiny']")) == "source"
    assert _loc((0,)) == "[0]"
    assert _loc(()) == "config"


def test_message_wording():
    assert _message({"type": "extra_forbidden", "msg": "Extra inputs are not permitted", "input": 1}) == "unknown key"
    assert _message({"type": "missing", "msg": "Field required", "input": 3}) == "Field required"  # no ", got"
    assert _message({"type": "value_error", "msg": "Value error, too big", "input": 7}) == "too big, got 7"
    assert _message({"type": "value_error", "msg": "Value error, 7 is too big", "input": 7}) == "7 is too big"
    assert _message({"type": "list_type", "msg": "Input should be a valid list", "input": {"a": 1}}) == (
        "Input should be a valid list")  # mappings and lists are not repeated
    assert _message({"type": "value_error", "msg": "Value error, no input"}) == "no input"


class _Checked(BaseModel):
    n: int = 0

    @model_validator(mode="after")
    def _not_five(self) -> "_Checked":
        if self.n == 5:
            raise ValueError("five is out")
        return self


def test_config_error_of_a_model_level_error_uses_the_prefix_alone():
    with pytest.raises(ValidationError) as err:
        _Checked(n=5)
    assert str(config_error(err.value)) == "config: five is out"
    assert str(config_error(err.value, "mt-bench")) == "mt-bench: five is out"
    with pytest.raises(ValidationError) as err:
        _Checked(n="x")
    assert str(config_error(err.value, "mt-bench")) == (
        "mt-bench.n: Input should be a valid integer, unable to parse string as an integer, got 'x'")


def test_validate_suite_options_fills_defaults_and_names_the_base_suite():
    assert validate_suite_options("tiny-world", {}) == {"split": "eval", "limit": None, "max_new_tokens": 24}
    assert validate_suite_options("lm-eval:openllm", {"limit": 5}) == {
        "tasks": None, "num_fewshot": None, "include_path": None, "batch_size": None, "limit": 5,
        "apply_chat_template": False}
    with pytest.raises(ConfigError) as err:
        validate_suite_options("lm-eval:openllm", {"batchsize": 4})
    assert str(err.value) == "lm-eval.batchsize: unknown key"
    with pytest.raises(ConfigError) as err:
        validate_suite_options("onlin", {"alpha": 0.1})
    assert str(err.value) == f"suite_options.onlin: not a config section or a registered suite (suites: {SUITES})"


def test_apply_overrides_splits_at_the_first_equals_and_leaves_its_input_alone():
    data = {"online": {"beta": 0.1}, "eval": {"judge": "oracle"}}
    out = apply_overrides(data, ["eval.judge_base_url=http://h/v1?a=b", "online.beta=0.2"])
    assert out == {"online": {"beta": 0.2}, "eval": {"judge": "oracle", "judge_base_url": "http://h/v1?a=b"}}
    assert data == {"online": {"beta": 0.1}, "eval": {"judge": "oracle"}}  # a deep copy was changed


# ---------------------------------------------------------------- specs.py
def test_ref_defaults_and_frozen_specs():
    assert Ref(path="org/m").model_dump() == {"path": "org/m", "key": ""}
    with pytest.raises(ValidationError):
        Ref(path="a", other=1)
    ref = Ref(path="a")
    with pytest.raises(ValidationError):
        ref.path = "b"


def test_ref_resolve(tmp_path):
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


def test_spec_defaults():
    ref = {"path": "p", "key": "k"}
    assert RankSpec(candidates=Ref(**ref), ranker="oracle").model_dump() == {
        "kind": "rank", "candidates": ref, "ranker": "oracle", "keep_ties": False, "max_failures": 0.0, "device": "cpu",
        "batch_size": 16, "judge_base_url": None, "trust_remote_code": False}
    sft, pref = _every_spec()[2:4]
    assert sft.trust_remote_code is False and pref.trust_remote_code is False


def test_spec_key_leaves_out_trust_remote_code_only_when_off():
    rank = RankSpec(candidates=Ref(path="c"), ranker="oracle")
    dumped = rank.model_dump(mode="json")
    assert spec_key(rank) == stable_hash({k: v for k, v in dumped.items() if k != "trust_remote_code"})
    on = rank.model_copy(update={"trust_remote_code": True})
    assert spec_key(on) == stable_hash({**dumped, "trust_remote_code": True})
    data = DataSpec(source="org/d", split="train", chunks=2, expected_rows=None)  # no such field at all
    assert spec_key(data) == stable_hash({"kind": "data", "source": "org/d", "split": "train", "chunks": 2,
                                          "expected_rows": None})


def test_to_json_is_sorted_one_space_indented_with_a_newline():
    spec = DataSpec(source="org/d", split="train", chunks=2, expected_rows=None)
    assert to_json(spec) == ('{\n "chunks": 2,\n "expected_rows": null,\n "kind": "data",\n "source": "org/d",\n'
                             ' "split": "train"\n}\n')
    ev = _every_spec()[6].model_copy(update={"backend_options": {"cache": Path("/c")}})
    assert json.loads(to_json(ev))["backend_options"] == {"cache": "/c"}  # JSON mode: a Path becomes its text


def test_training_kinds():
    assert TRAINING_KINDS == ("sft", "preference")


# ---------------------------------------------------------------- harness/run/stages.py
def test_stage_defaults_ref_and_frozen():
    spec = DataSpec(source="org/d", split="train", chunks=1, expected_rows=None)
    st = Stage("data", "tmp/BOX", spec)
    assert (st.checkpoint, st.method, st.iteration) == (None, None, None)
    assert st.key == spec_key(spec)
    assert st.ref() == Ref(path="tmp/BOX", key=st.key)  # no trailing "/" and nothing else stripped
    assert st.ref("chunk-1.jsonl") == Ref(path="tmp/BOX/chunk-1.jsonl", key=st.key)
    with pytest.raises(dataclasses.FrozenInstanceError):
        st.name = "other"


def test_resolve_device_and_precision(monkeypatch):
    import torch

    import selm_bench.harness.run.stages as plan_module

    assert [resolve_device(d) for d in ("cpu", "mps", "cuda:1")] == ["cpu", "mps", "cuda:1"]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(plan_module, "_no_gpu_driver", lambda: True)
    assert resolve_device("auto") == "cpu"  # no driver on the machine: torch is not asked
    monkeypatch.setattr(plan_module, "_no_gpu_driver", lambda: False)
    assert resolve_device("auto") == "cuda"
    assert precision(cfg_of()) == "bf16"  # auto on CUDA
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu"
    assert precision(cfg_of()) == "fp32"
    assert precision(cfg_of(device="cuda:1")) == "bf16"
    assert precision(cfg_of(device="mps")) == "fp32"
    assert precision(cfg_of(device="cuda:1", precision="fp16")) == "fp16"
    assert precision(cfg_of(device="cpu", precision="bf16")) == "bf16"


ACCEL = {"launcher": "accelerate", "num_processes": 2}


def test_train_args_of_sft_in_full():
    cfg = cfg_of(device="cpu", seed=5, launch=ACCEL,
                 sft={"batch_size": 64, "gradient_accumulation_steps": 4, "max_steps": 7, "weight_decay": 0.01,
                      "optim": "adamw_torch", "lr_scheduler": "linear"})
    assert train_args(cfg, "sft").model_dump() == {
        "learning_rate": 3e-3, "per_device_batch_size": 8,  # 64 / (2 processes x 4 accumulation steps)
        "gradient_accumulation_steps": 4, "num_processes": 2, "epochs": 8.0, "max_steps": 7, "warmup_ratio": 0.03,
        "weight_decay": 0.01, "max_length": 256, "max_prompt_length": None, "truncation": "authors", "precompute_ref_log_probs": True,
        "logging_steps": 10, "lr_scheduler": "linear", "optim": "adamw_torch", "seed": 5, "device": "cpu",
        "precision": "fp32", "gradient_checkpointing": False}


def test_train_args_of_dpo_in_full():
    cfg = cfg_of(device="cuda:1", seed=5, launch=ACCEL,
                 dpo={"batch_size": 32, "max_prompt_length": 64, "precompute_ref_log_probs": False})
    assert train_args(cfg, "dpo").model_dump() == {
        "learning_rate": 1e-4, "per_device_batch_size": 16,  # 32 / (2 x 1)
        "gradient_accumulation_steps": 1, "num_processes": 2, "epochs": 1.0, "max_steps": -1, "warmup_ratio": 0.1,
        "weight_decay": 0.0, "max_length": 256, "max_prompt_length": 64, "truncation": "authors", "precompute_ref_log_probs": False,
        "logging_steps": 10, "lr_scheduler": "cosine", "optim": None, "seed": 5, "device": "cuda:1",
        "precision": "bf16", "gradient_checkpointing": True}  # None on CUDA: on


def test_train_args_of_an_online_iteration():
    cfg = cfg_of(device="cuda:0", gradient_checkpointing=False, online={"learning_rate": [1e-4, 5e-5]})
    second = train_args(cfg, "online", 2)
    assert (second.learning_rate, second.gradient_checkpointing, second.per_device_batch_size) == (5e-5, False, 32)
    assert train_args(cfg_of(device="cpu", gradient_checkpointing=True), "online").gradient_checkpointing is True


def test_train_args_refuses_a_batch_that_does_not_split():
    cfg = cfg_of(device="cpu", launch=ACCEL, sft={"batch_size": 12, "gradient_accumulation_steps": 4})
    with pytest.raises(ConfigError) as err:
        train_args(cfg, "sft")
    assert str(err.value) == ("sft.batch_size: 12 is not divisible by launch.num_processes x "
                              "sft.gradient_accumulation_steps = 8")


def test_backend_options(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = cfg_of(eval={"batch_size": 16}, vllm={"tensor_parallel_size": 2, "dtype": "bfloat16"})
    assert backend_options(cfg, "hf") == {"batch_size": 16}
    assert backend_options(cfg, "vllm") == {"batch_size": 16, "tensor_parallel_size": 2, "data_parallel_size": 1,
                                            "gpu_memory_utilization": 0.9, "dtype": "bfloat16", "max_model_len": None,
                                            "python": ""}
    assert backend_options(cfg, "hf", trust_remote_code=True) == {"batch_size": 16, "trust_remote_code": True}
    trusted = cfg_of(model={"pretrained": "org/m", "trust_remote_code": ["org/m"]})
    assert backend_options(trusted, "hf") == {"batch_size": 64, "trust_remote_code": True}
    assert backend_options(trusted, "hf", trust_remote_code=False) == {"batch_size": 64}
    named_other = cfg_of(model={"pretrained": "org/m", "trust_remote_code": ["org/other"]})
    assert backend_options(named_other, "hf") == {"batch_size": 64}


def test_judge_runtime():
    cfg = cfg_of(eval={"judge_concurrency": 3, "judge_max_retries": 2, "judge_timeout": 9.5})
    assert judge_runtime(cfg) == {"concurrency": 3, "max_retries": 2, "timeout": 9.5}


def test_checkpoint_folder():
    assert checkpoint_folder("selm/iter-2") == "checkpoints/selm/iter-2/model"


def test_sources_of_the_tiny_world():
    cfg = cfg_of(online={"iterations": 3})
    src = Sources.of(cfg)
    world = src.world
    assert (world.name, world.folder, src.data) == ("world", "world", None)
    assert world.spec.tiny_model == TinyModel(hidden_size=128, num_layers=2, num_heads=4, intermediate_size=341,
                                              max_position_embeddings=128)
    assert src.stages == [world]
    assert src.base_model() == Ref(path="world/base-model", key=world.key)
    assert src.sft_data() == Ref(path="world/data/sft.jsonl", key=world.key)
    assert src.offline_pairs() == Ref(path="world/data/pref.jsonl", key=world.key)
    assert src.prompts(2) == (Ref(path="world/data/prompts.jsonl", key=world.key), 2, 3)


def test_sources_of_real_prompts(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = cfg_of(data={"prompts": "org/prompts", "chunks": 4, "expected_rows": 100}, model={"pretrained": "org/m"},
                 dpo={"chunk": 3}, online={"chunks": [2, 4]})
    src = Sources.of(cfg)
    data = src.data
    assert (data.name, data.folder, src.world) == ("data", "data", None)
    assert data.spec.model_dump() == {"kind": "data", "source": "org/prompts", "split": "train_prefs", "chunks": 4,
                                      "expected_rows": 100}
    assert src.stages == [data]
    assert src.base_model() == Ref(path="org/m")
    assert src.offline_pairs() == Ref(path="data/chunk-3.jsonl", key=data.key)
    assert src.prompts(2) == (Ref(path="data/chunk-4.jsonl", key=data.key), 1, 1)  # one whole chunk per iteration


def test_eval_spec_in_full():
    cfg = cfg_of(device="cpu", seed=4,
                 eval={"data_dir": "/mirror", "judge": "openai:gpt-4", "judge_base_url": "http://h/v1", "batch_size": 16},
                 suite_options={"lm-eval": {"limit": 5, "num_fewshot": 1}, "lm-eval:openllm": {"limit": 2}})
    model, world, refs = Ref(path="checkpoints/dpo/model", key="kd"), Ref(path="world/data", key="kw"), {
        "sft": Ref(path="checkpoints/sft/model", key="ks")}
    spec = eval_spec(cfg, model, "dpo", "lm-eval:openllm", world, refs)
    assert spec.model_dump() == {
        "kind": "eval", "model": {"path": "checkpoints/dpo/model", "key": "kd"}, "name": "dpo", "suite": "lm-eval:openllm",
        # the base suite's options, then the preset's on top
        "options": {"tasks": None, "num_fewshot": 1, "include_path": None, "batch_size": None, "limit": 2,
                    "apply_chat_template": False},
        "data_dir": "/mirror", "world": {"path": "world/data", "key": "kw"},
        "references": {"sft": {"path": "checkpoints/sft/model", "key": "ks"}}, "backend": "hf",
        "backend_options": {"batch_size": 16}, "judge": "openai:gpt-4", "judge_base_url": "http://h/v1", "device": "cpu",
        "seed": 4}
    bare = eval_spec(cfg_of(device="cpu"), model, "dpo", "tiny-world", world, {})
    assert (bare.data_dir, bare.judge_base_url, bare.options) == (None, None, {"split": "eval", "limit": None,
                                                                               "max_new_tokens": 24})


def test_plan_names_folders_and_refs_of_every_stage():
    cfg = cfg_of(device="cpu", methods=["sft", "selm"], suites=["tiny-world", "mt-bench"],
                 online={"start": "sft", "iterations": 1})
    stages, evals = plan(cfg)
    assert [(s.name, s.folder, s.checkpoint, s.method, s.iteration) for s in stages] == [
        ("world", "world", None, None, None), ("sft", "checkpoints/sft/model", "sft", "sft", None),
        ("selm/iter-1/generate", "checkpoints/selm/iter-1/generate", None, "selm", 1),
        ("selm/iter-1/rank", "checkpoints/selm/iter-1/rank", None, "selm", 1),
        ("selm/iter-1", "checkpoints/selm/iter-1/model", "selm/iter-1", "selm", 1)]
    world, sft, selm = stages[0], stages[1], stages[4]
    assert [(e.name, e.folder, e.checkpoint, e.method, e.iteration) for e in evals] == [
        ("eval sft tiny-world", "evals/sft/tiny-world", None, "sft", None),
        ("eval sft mt-bench", "evals/sft/mt-bench", None, "sft", None),
        ("eval selm/iter-1 tiny-world", "evals/selm/iter-1/tiny-world", None, "selm", 1),
        ("eval selm/iter-1 mt-bench", "evals/selm/iter-1/mt-bench", None, "selm", 1)]
    last = evals[3].spec
    assert (last.model, last.name, last.suite) == (Ref(path="checkpoints/selm/iter-1/model", key=selm.key), "selm/iter-1",
                                                   "mt-bench")
    assert last.world == Ref(path="world/data", key=world.key)
    assert all(e.spec.references == {"sft": Ref(path="checkpoints/sft/model", key=sft.key)} for e in evals)


def test_plan_of_sft_alone_references_sft():
    stages, evals = plan(cfg_of(device="cpu", methods=["sft"], suites=["tiny-world"]))
    assert [s.name for s in stages] == ["world", "sft"] and [e.name for e in evals] == ["eval sft tiny-world"]
    assert evals[0].spec.references == {"sft": Ref(path="checkpoints/sft/model", key=stages[1].key)}


def test_plan_without_sft_has_no_references(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = cfg_of(device="cpu", methods=["dpo"], suites=["tiny-world"], model={"pretrained": "org/m"},
                 dpo={"start": "base"})
    stages, evals = plan(cfg)
    assert [s.name for s in stages] == ["world", "dpo"]
    assert stages[1].spec.policy == Ref(path="org/m") and evals[0].spec.references == {}


# ---------------------------------------------------------------- registry.py
def test_unknown_kind_message_in_full():
    with pytest.raises(ValueError) as err:
        registry.register("metric", "x")
    assert str(err.value) == ("unknown registry kind 'metric'; expected one of ('method', 'suite', 'judge', 'ranker', "
                              "'backend')")


def test_entry_is_frozen_with_empty_hooks():
    e = registry.Entry("judge", "x", object, "help")
    assert (e.options, e.headline, e.paired) == (None, None, None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        e.help = "other"


class _TwoLines:
    """First line.
    Second line."""


class _NoDoc:
    pass


@pytest.mark.parametrize("kind,register", [
    ("judge", lambda name, **kw: registry.register("judge", name, **kw)), ("judge", registry.register_judge),
    ("ranker", registry.register_ranker), ("backend", registry.register_backend), ("method", registry.register_method),
])
def test_help_comes_from_the_argument_else_the_first_docstring_line(kind, register, monkeypatch):
    monkeypatch.setitem(registry._ENTRIES, kind, dict(registry._ENTRIES[kind]))
    register("two-lines")(_TwoLines)
    register("no-doc")(_NoDoc)
    register("explicit", help="Given help.")(_TwoLines)
    got = {n: registry.entry(kind, n) for n in ("two-lines", "no-doc", "explicit")}
    assert {n: e.help for n, e in got.items()} == {"two-lines": "First line.", "no-doc": "", "explicit": "Given help."}
    assert {e.kind for e in got.values()} == {kind} and got["no-doc"].obj is _NoDoc


def test_register_suite_defaults(monkeypatch):
    monkeypatch.setitem(registry._ENTRIES, "suite", dict(registry._ENTRIES["suite"]))

    class Options(BaseModel):
        pass

    registry.register_suite("default-suite", options=Options)(_TwoLines)
    e = registry.entry("suite", "default-suite")
    assert (e.kind, e.help, e.options, e.headline, e.paired) == ("suite", "First line.", Options, "score",
                                                                 registry.mean_score)


def test_suite_options_of_a_preset_and_of_an_unknown_suite():
    lm = registry.entry("suite", "lm-eval").options
    assert lm is not None and registry.suite_options("lm-eval:openllm") is lm
    assert registry.suite_options("nope") is None


def test_entries_are_by_kind_then_name(monkeypatch):
    registry.load_all()
    fake = {k: {} for k in registry.KINDS}
    for kind, name in [("backend", "c"), ("judge", "b"), ("method", "z"), ("judge", "a"), ("method", "y")]:
        fake[kind][name] = registry.Entry(kind, name, object, "")
    monkeypatch.setattr(registry, "_ENTRIES", fake)
    assert [(e.kind, e.name) for e in registry.entries()] == [
        ("method", "y"), ("method", "z"), ("judge", "a"), ("judge", "b"), ("backend", "c")]


# ---------------------------------------------------------------- staleness.py
def _installed(dist: str) -> str | None:
    try:
        return metadata.version(dist.replace("_", "-"))
    except metadata.PackageNotFoundError:
        return None


def test_stage_env_of_an_eval_adds_its_suites_code():
    env = stage_env(SimpleNamespace(kind="eval", suite="lm-eval:openllm"))
    libs = ["torch", "transformers", "lm_eval", "alpaca_eval", "fschat", "openai", "vllm"]
    assert list(env) == ["code", "packages"] and list(env["packages"]) == libs
    assert env["packages"] == {p: _installed(p) for p in libs}
    others = {stage_env(SimpleNamespace(kind="eval", suite=s))["code"] for s in ("tiny-world", "mt-bench", "nope")}
    assert env["code"] not in others and len(others) == 3  # each suite's own module counts; an unknown one adds none


def test_version_of_a_distribution_named_with_underscores():
    assert _version("huggingface_hub") == metadata.version("huggingface-hub")
    assert _version("no_such_dist_xyz") is None
