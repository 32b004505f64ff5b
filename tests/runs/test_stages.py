"""From a config to its stages (harness/run/stages.py and each method's plan, trainers/methods.py): the
device and precision a run resolves to, a training stage's arguments in full, the backend and judge
options, where the world, the prompt data and the base model come from, an eval's spec, and the
names, folders and references of every stage a small config plans. Expected values by hand."""

from __future__ import annotations

import dataclasses
import types

import pytest

from selm_bench.harness.core.config import ConfigError, ExperimentConfig, load_config
from selm_bench.harness.core.specs import Ref, TinyModel, spec_key
from selm_bench.harness.run.stages import (Sources, Stage, backend_options, checkpoint_folder, eval_spec, judge_runtime,
                                           plan, precision, resolve_device, train_args)
from support.stand_ins import train_args as train_args_of


def cfg_of(**data) -> ExperimentConfig:
    """A config from sections as keyword arguments (no YAML file, no cross checks): every other
    field keeps the default of harness/core/config.py."""
    return ExperimentConfig.model_validate(data)


def test_a_stage_refers_to_its_folder_under_its_key_and_is_frozen():
    from selm_bench.harness.core.specs import DataSpec

    spec = DataSpec(source="org/d", split="train", chunks=1, expected_rows=None)
    st = Stage("data", "tmp/BOX", spec)
    assert (st.checkpoint, st.method, st.iteration) == (None, None, None)
    assert st.key == spec_key(spec)
    assert st.ref() == Ref(path="tmp/BOX", key=st.key)  # no trailing "/" and nothing else stripped
    assert st.ref("chunk-1.jsonl") == Ref(path="tmp/BOX/chunk-1.jsonl", key=st.key)
    with pytest.raises(dataclasses.FrozenInstanceError):
        st.name = "other"


def test_auto_device_and_precision_follow_the_gpu(monkeypatch):
    """auto = CUDA when a driver and torch see a GPU, else CPU; auto precision = bf16 on CUDA, fp32 elsewhere."""
    import torch

    import selm_bench.harness.run.stages as stages_module

    assert [resolve_device(d) for d in ("cpu", "mps", "cuda:1")] == ["cpu", "mps", "cuda:1"]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(stages_module, "_no_gpu_driver", lambda: True)
    assert resolve_device("auto") == "cpu"  # no driver on the machine: torch is not asked
    monkeypatch.setattr(stages_module, "_no_gpu_driver", lambda: False)
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


def test_an_sft_stage_gets_every_training_argument_of_its_section():
    cfg = cfg_of(device="cpu", seed=5, launch=ACCEL,
                 sft={"batch_size": 64, "gradient_accumulation_steps": 4, "max_steps": 7, "weight_decay": 0.01,
                      "optim": "adamw_torch", "lr_scheduler": "linear"})
    assert train_args(cfg, "sft").model_dump() == {
        "learning_rate": 3e-3, "per_device_batch_size": 8,  # 64 / (2 processes x 4 accumulation steps)
        "gradient_accumulation_steps": 4, "num_processes": 2, "epochs": 8.0, "max_steps": 7, "warmup_ratio": 0.03,
        "weight_decay": 0.01, "max_length": 256, "max_prompt_length": None, "truncation": "authors", "precompute_ref_log_probs": True,
        "logging_steps": 10, "lr_scheduler": "linear", "optim": "adamw_torch", "seed": 5, "device": "cpu",
        "precision": "fp32", "gradient_checkpointing": False}


def test_a_dpo_stage_gets_every_training_argument_of_its_section():
    cfg = cfg_of(device="cuda:1", seed=5, launch=ACCEL,
                 dpo={"batch_size": 32, "max_prompt_length": 64, "precompute_ref_log_probs": False})
    assert train_args(cfg, "dpo").model_dump() == {
        "learning_rate": 1e-4, "per_device_batch_size": 16,  # 32 / (2 x 1)
        "gradient_accumulation_steps": 1, "num_processes": 2, "epochs": 1.0, "max_steps": -1, "warmup_ratio": 0.1,
        "weight_decay": 0.0, "max_length": 256, "max_prompt_length": 64, "truncation": "authors", "precompute_ref_log_probs": False,
        "logging_steps": 10, "lr_scheduler": "cosine", "optim": None, "seed": 5, "device": "cuda:1",
        "precision": "bf16", "gradient_checkpointing": True}  # None on CUDA: on


def test_an_online_iteration_trains_at_its_own_learning_rate():
    cfg = cfg_of(device="cuda:0", gradient_checkpointing=False, online={"learning_rate": [1e-4, 5e-5]})
    second = train_args(cfg, "online", 2)
    assert (second.learning_rate, second.gradient_checkpointing, second.per_device_batch_size) == (5e-5, False, 32)
    assert train_args(cfg_of(device="cpu", gradient_checkpointing=True), "online").gradient_checkpointing is True


def test_a_global_batch_that_does_not_split_over_processes_is_refused():
    """batch_size must divide by processes x accumulation steps: the error names the section's batch_size,
    its value and the product (12 over 2 x 4 = 8; the tiny default's 64 over 3 processes)."""
    cfg = cfg_of(device="cpu", launch=ACCEL, sft={"batch_size": 12, "gradient_accumulation_steps": 4})
    with pytest.raises(ConfigError) as err:
        train_args(cfg, "sft")
    assert str(err.value).startswith("sft.batch_size: 12 ") and str(err.value).endswith(" = 8")
    with pytest.raises(ConfigError) as err:
        plan(load_config(sets=["launch.launcher=accelerate", "launch.num_processes=3"]))
    assert str(err.value).startswith("sft.batch_size: 64 ") and str(err.value).endswith(" = 3")


def test_backend_options_carry_the_engine_settings_and_the_trust_of_the_named_model(tmp_path, monkeypatch):
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


def test_judge_calls_use_the_configured_concurrency_retries_and_timeout():
    cfg = cfg_of(eval={"judge_concurrency": 3, "judge_max_retries": 2, "judge_timeout": 9.5})
    assert judge_runtime(cfg) == {"concurrency": 3, "max_retries": 2, "timeout": 9.5}


def test_a_checkpoint_lives_in_its_model_folder():
    assert checkpoint_folder("selm/iter-2") == "checkpoints/selm/iter-2/model"


def test_the_tiny_world_is_the_source_of_model_data_and_prompts():
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


def test_real_prompt_data_gives_one_whole_chunk_per_iteration(tmp_path, monkeypatch):
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


def test_an_eval_spec_holds_the_suites_options_the_judge_and_the_references():
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


def test_a_plan_of_sft_alone_evaluates_against_sft():
    stages, evals = plan(cfg_of(device="cpu", methods=["sft"], suites=["tiny-world"]))
    assert [s.name for s in stages] == ["world", "sft"] and [e.name for e in evals] == ["eval sft tiny-world"]
    assert evals[0].spec.references == {"sft": Ref(path="checkpoints/sft/model", key=stages[1].key)}


def test_a_plan_without_sft_has_no_references(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = cfg_of(device="cpu", methods=["dpo"], suites=["tiny-world"], model={"pretrained": "org/m"},
                 dpo={"start": "base"})
    stages, evals = plan(cfg)
    assert [s.name for s in stages] == ["world", "dpo"]
    assert stages[1].spec.policy == Ref(path="org/m") and evals[0].spec.references == {}


# ---------------------------------------------------------------- each method's plan (trainers/methods.py)
class _FakeSources:
    def base_model(self):
        return Ref(path="base")

    def sft_data(self):
        return Ref(path="sft.jsonl")

    def offline_pairs(self):
        return Ref(path="pairs.jsonl")

    def prompts(self, t):
        return Ref(path=f"prompts-{t}.jsonl"), t + 1, 4


def _method_cfg(ranker="judge:gpt-j", dpo_start="sft", online_start="dpo", trusted=()):
    ns = types.SimpleNamespace
    return ns(seed=4, device="cpu", model=ns(pretrained="", trusts=lambda name: name in trusted),
              eval=ns(batch_size=5, judge_base_url="http://j/v1"), dpo=ns(start=dpo_start, beta=0.3),
              online=ns(start=online_start, iterations=2, candidates=("policy", "dataset"), num_samples=3, temperature=0.9,
                        top_p=0.8, max_new_tokens=20, ref_response="greedy", backend="hf", ranker=ranker, keep_ties=True,
                        max_ranker_failures=0.1, beta=0.2, alpha=0.01, nll_weight=0.5))


@pytest.fixture
def method_train_args(monkeypatch):
    """train_args replaced in the methods module: the section and iteration become the seed and
    learning rate, so each stage's TrainArgs says which section it was planned from."""
    from selm_bench.trainers import methods

    sections = {"sft": 1, "dpo": 2, "online": 3}
    monkeypatch.setattr(methods, "train_args", lambda cfg, section, t=None: train_args_of(
        seed=sections[section], learning_rate=float(t or 0)))
    return lambda section, t=None: train_args_of(seed=sections[section], learning_rate=float(t or 0))


def test_sft_trains_the_base_model_and_dpo_starts_from_sft_or_the_base(method_train_args):
    from selm_bench.harness.core.specs import PreferenceSpec, SFTSpec
    from selm_bench.trainers.methods import DPOMethod, SFTMethod

    cfg = _method_cfg()
    assert SFTMethod().needs(cfg) == ()
    sft, = SFTMethod().plan(cfg, _FakeSources(), {}, {})
    assert sft == Stage("sft", "checkpoints/sft/model", SFTSpec(base=Ref(path="base"), data=Ref(path="sft.jsonl"),
                                                                train=method_train_args("sft"), trust_remote_code=False),
                        checkpoint="sft", method="sft")
    assert DPOMethod().needs(cfg) == ("sft",)
    dpo, = DPOMethod().plan(cfg, _FakeSources(), {"sft": sft}, {})
    start = Ref(path="checkpoints/sft/model", key=sft.key)
    assert dpo == Stage("dpo", "checkpoints/dpo/model", PreferenceSpec(
        policy=start, reference=start, pairs=Ref(path="pairs.jsonl"), loss="dpo", beta=0.3, alpha=None, nll_weight=0.0,
        train=method_train_args("dpo"), trust_remote_code=False), checkpoint="dpo", method="dpo")
    base = _method_cfg(dpo_start="base", trusted=("",))
    assert DPOMethod().needs(base) == ()
    dpo, = DPOMethod().plan(base, _FakeSources(), {}, {})
    assert (dpo.spec.policy, dpo.spec.reference, dpo.spec.trust_remote_code) == (Ref(path="base"), Ref(path="base"), True)


def test_online_iterations_chain_and_share_their_first_generation(method_train_args):
    from selm_bench.harness.core.specs import GenerateSpec, PreferenceSpec, RankSpec, SFTSpec
    from selm_bench.trainers.methods import IterativeDPOMethod, SELMMethod

    cfg = _method_cfg(trusted=("gpt-j",))
    assert SELMMethod().needs(cfg) == ("dpo",) and IterativeDPOMethod().needs(_method_cfg(online_start="base")) == ()
    dpo = Stage("dpo", "checkpoints/dpo/model", SFTSpec(base=Ref(path="b"), data=Ref(path="d"), train=train_args_of()),
                checkpoint="dpo", method="dpo")
    shared: dict = {}
    stages = SELMMethod().plan(cfg, _FakeSources(), {"dpo": dpo}, shared)
    assert [(s.name, s.folder, s.checkpoint, s.method, s.iteration) for s in stages] == [
        ("selm/iter-1/generate", "checkpoints/selm/iter-1/generate", None, "selm", 1),
        ("selm/iter-1/rank", "checkpoints/selm/iter-1/rank", None, "selm", 1),
        ("selm/iter-1", "checkpoints/selm/iter-1/model", "selm/iter-1", "selm", 1),
        ("selm/iter-2/generate", "checkpoints/selm/iter-2/generate", None, "selm", 2),
        ("selm/iter-2/rank", "checkpoints/selm/iter-2/rank", None, "selm", 2),
        ("selm/iter-2", "checkpoints/selm/iter-2/model", "selm/iter-2", "selm", 2)]
    g1, r1, t1, g2, r2, t2 = stages
    policy1 = Ref(path="checkpoints/dpo/model", key=dpo.key)
    assert g1.spec == GenerateSpec(policy=policy1, prompts=Ref(path="prompts-1.jsonl"), chunk=2, chunks=4,
                                   candidates=["policy", "dataset"], num_samples=3, temperature=0.9, top_p=0.8,
                                   max_new_tokens=20, ref_response="greedy", backend="hf",
                                   backend_options={"batch_size": 5}, device="cpu", seed=4001)  # 4 * 1000 + 1
    assert r1.spec == RankSpec(candidates=Ref(path="checkpoints/selm/iter-1/generate/candidates.jsonl", key=g1.key),
                               ranker="judge:gpt-j", keep_ties=True, max_failures=0.1, device="cpu", batch_size=5,
                               judge_base_url="http://j/v1", trust_remote_code=True)
    assert t1.spec == PreferenceSpec(policy=policy1, reference=policy1,
                                     pairs=Ref(path="checkpoints/selm/iter-1/rank/generations.jsonl", key=r1.key),
                                     loss="selm", beta=0.2, alpha=0.01, nll_weight=0.5, train=method_train_args("online", 1),
                                     trust_remote_code=False)
    policy2 = Ref(path="checkpoints/selm/iter-1/model", key=t1.key)
    assert (g2.spec.policy, g2.spec.seed, g2.spec.chunk, t2.spec.policy, t2.spec.reference, t2.spec.train) == (
        policy2, 4002, 3, policy2, policy2, method_train_args("online", 2))
    assert set(shared) == {g1.key, r1.key, g2.key, r2.key}

    # iterative-dpo planned after selm with the same settings: iteration 1's generation and ranking are selm's
    it1, ir1, itrain1, *_ = IterativeDPOMethod().plan(cfg, _FakeSources(), {"dpo": dpo}, shared)
    assert (it1, ir1) == (g1, r1)
    assert (itrain1.name, itrain1.method, itrain1.spec.loss, itrain1.spec.alpha) == ("iterative-dpo/iter-1", "iterative-dpo",
                                                                                    "dpo", None)


def test_a_ranker_without_a_judge_gets_no_endpoint_and_trust_only_for_its_named_model(method_train_args):
    from selm_bench.trainers.methods import IterativeDPOMethod

    _, rank, *_ = IterativeDPOMethod().plan(_method_cfg(ranker="reward-model:rm", online_start="base"), _FakeSources(), {}, {})
    assert (rank.spec.ranker, rank.spec.judge_base_url, rank.spec.trust_remote_code) == ("reward-model:rm", None, False)
    _, rank, *_ = IterativeDPOMethod().plan(_method_cfg(ranker="reward-model:org/rm:v2", online_start="base",
                                                        trusted=("org/rm:v2",)), _FakeSources(), {}, {})
    assert rank.spec.trust_remote_code is True  # the model is everything after the first colon
    gen, rank, *_ = IterativeDPOMethod().plan(_method_cfg(ranker="pairrm", online_start="base", trusted=("pairrm", "")),
                                              _FakeSources(), {}, {})
    assert (rank.spec.judge_base_url, rank.spec.trust_remote_code) == (None, False)  # no ":": no model to trust
    assert gen.spec.policy == Ref(path="base") and gen.spec.backend_options == {"batch_size": 5, "trust_remote_code": True}
