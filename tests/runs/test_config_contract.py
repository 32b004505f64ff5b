"""The config's contract, field by field: every default (a changed default changes every stage key,
so results stop being comparable with earlier runs: it must be a deliberate edit of this table),
every bound at its edge (the value on the edge accepted, the one past it refused with the key
named), every documented choice accepted, and the cross-field checks: each error is one line that
starts with the key to fix."""

import pytest
from pydantic import BaseModel, ValidationError, model_validator

from selm_bench.harness.core.config import (ConfigError, ExperimentConfig, _loc, _message, apply_overrides, config_error,
                                            load_config, parse_value, validate_suite_options)

DEFAULTS = {
    "name": "tiny", "seed": 0, "output_dir": "results", "report_to": [], "device": "auto", "precision": "auto",
    "gradient_checkpointing": None, "methods": ["sft", "dpo", "iterative-dpo", "selm"],
    "suites": ["tiny-world", "lm-eval", "mt-bench", "alpaca-eval"],
    "world": {"categories": ["add", "sub", "reverse", "count", "sort", "extract"], "n_sft": 6000, "n_pref": 1500,
              "n_prompts": 1200, "n_dev": 400, "n_eval": 1000, "n_two_turn": 120, "n_mc": 300, "sft_noise": 0.0,
              "two_turn_fraction": 0.15},
    "model": {"pretrained": "", "hidden_size": 128, "num_layers": 2, "num_heads": 4, "intermediate_size": 341,
              "max_position_embeddings": 128, "trust_remote_code": []},
    "sft": {"learning_rate": 3e-3, "batch_size": 64, "gradient_accumulation_steps": 1, "epochs": 8.0, "warmup_ratio": 0.03,
            "max_length": 256, "logging_steps": 10, "lr_scheduler": "cosine", "optim": None, "max_steps": -1,
            "weight_decay": 0.0},
    "dpo": {"learning_rate": 1e-4, "batch_size": 32, "gradient_accumulation_steps": 1, "epochs": 1.0, "warmup_ratio": 0.1,
            "max_length": 256, "logging_steps": 10, "lr_scheduler": "cosine", "optim": None, "max_prompt_length": None, "truncation": "authors",
            "precompute_ref_log_probs": True, "beta": 0.1, "start": "sft", "chunk": 1},
    "online": {"learning_rate": 1e-4, "batch_size": 32, "gradient_accumulation_steps": 1, "epochs": 1.0,
               "warmup_ratio": 0.1, "max_length": 256, "logging_steps": 10, "lr_scheduler": "cosine", "optim": None,
               "max_prompt_length": None, "truncation": "authors", "precompute_ref_log_probs": True, "iterations": 2, "start": "dpo",
               "chunks": None, "keep_ties": False, "beta": 0.1, "alpha": 0.001, "nll_weight": 0.0, "num_samples": 4,
               "temperature": 1.0, "top_p": 1.0, "max_new_tokens": 24, "candidates": ["policy", "dataset"],
               "ranker": "oracle", "max_ranker_failures": 0.0, "backend": "hf", "ref_response": "greedy"},
    "eval": {"batch_size": 64, "judge": "oracle", "data_dir": "", "backend": "hf", "judge_base_url": "",
             "judge_concurrency": 8, "judge_max_retries": 5, "judge_timeout": 60.0},
    "data": {"prompts": "", "split": "train_prefs", "chunks": 1, "expected_rows": None},
    "vllm": {"tensor_parallel_size": 1, "data_parallel_size": 1, "gpu_memory_utilization": 0.9, "dtype": "auto",
             "max_model_len": None, "python": ""},
    "launch": {"launcher": "inprocess", "accelerate_config": "", "num_processes": 1, "wrapper": ""},
    "suite_options": {},
}


def test_every_default():
    assert ExperimentConfig().to_dict() == DEFAULTS


# (key, the value on the edge: accepted, the value past it: refused, pydantic's wording)
EDGES = [
    *[(f"world.{k}", 1, 0, "greater than or equal to 1")
      for k in ("n_sft", "n_pref", "n_prompts", "n_dev", "n_eval", "n_two_turn", "n_mc")],
    ("world.sft_noise", 0, -0.1, "greater than or equal to 0"), ("world.sft_noise", 0.99, 1, "less than 1"),
    ("world.two_turn_fraction", 0, -0.1, "greater than or equal to 0"), ("world.two_turn_fraction", 1, 1.01, "less than or equal to 1"),
    *[(f"model.{k}", 1, 0, "greater than or equal to 1") for k in ("num_layers", "intermediate_size", "max_position_embeddings")],
    ("model.hidden_size", 4, 0, "greater than or equal to 1"), ("model.num_heads", 1, 0, "greater than or equal to 1"),
    *[(f"{s}.{k}", v, bad, msg) for s in ("sft", "dpo", "online") for k, v, bad, msg in [
        ("learning_rate", 1e-9, 0, "greater than 0"), ("batch_size", 1, 0, "greater than or equal to 1"),
        ("gradient_accumulation_steps", 1, 0, "greater than or equal to 1"), ("epochs", 0.01, 0, "greater than 0"),
        ("warmup_ratio", 0, -0.1, "greater than or equal to 0"), ("warmup_ratio", 0.99, 1, "less than 1"),
        ("max_length", 8, 7, "greater than or equal to 8"), ("logging_steps", 1, 0, "greater than or equal to 1")]
      if not (s == "online" and k == "learning_rate")],
    ("sft.max_steps", -1, -2, "greater than or equal to -1"), ("sft.weight_decay", 0, -0.1, "greater than or equal to 0"),
    *[(f"{s}.max_prompt_length", 1, 0, "greater than or equal to 1") for s in ("dpo", "online")],
    ("dpo.beta", 1e-9, 0, "greater than 0"), ("dpo.chunk", 1, 0, "greater than or equal to 1"),
    ("online.iterations", 1, 0, "greater than or equal to 1"), ("online.beta", 1e-9, 0, "greater than 0"),
    ("online.alpha", 0, -0.001, "greater than or equal to 0"), ("online.nll_weight", 0, -1, "greater than or equal to 0"),
    ("online.num_samples", 0, -1, "greater than or equal to 0"), ("online.temperature", 0, -0.5, "greater than or equal to 0"),
    ("online.top_p", 1, 1.1, "less than or equal to 1"), ("online.top_p", 0.01, 0, "greater than 0"),
    ("online.max_new_tokens", 1, 0, "greater than or equal to 1"),
    ("online.max_ranker_failures", 0, -0.1, "greater than or equal to 0"),
    ("online.max_ranker_failures", 1, 1.5, "less than or equal to 1"),
    ("eval.batch_size", 1, 0, "greater than or equal to 1"), ("eval.judge_concurrency", 1, 0, "greater than or equal to 1"),
    ("eval.judge_max_retries", 0, -1, "greater than or equal to 0"), ("eval.judge_timeout", 0.1, 0, "greater than 0"),
    ("data.chunks", 1, 0, "greater than or equal to 1"), ("data.expected_rows", 1, 0, "greater than or equal to 1"),
    ("vllm.tensor_parallel_size", 1, 0, "greater than or equal to 1"), ("vllm.data_parallel_size", 1, 0, "greater than or equal to 1"),
    ("vllm.gpu_memory_utilization", 1, 1.01, "less than or equal to 1"),
    ("vllm.gpu_memory_utilization", 0.01, 0, "greater than 0"), ("vllm.max_model_len", 1, 0, "greater than or equal to 1"),
    ("launch.num_processes", 1, 0, "greater than or equal to 1"), ("seed", 0, -1, "greater than or equal to 0"),
]


@pytest.mark.parametrize("key,edge,past,wording", EDGES, ids=[f"{e[0]}={e[2]}" for e in EDGES])
def test_bounds_at_their_edge(key, edge, past, wording):
    section, _, field = key.rpartition(".")
    cfg = ExperimentConfig.model_validate({section: {field: edge}} if section else {field: edge})
    assert (getattr(getattr(cfg, section), field) if section else getattr(cfg, field)) == edge
    with pytest.raises(ConfigError) as err:
        load_config(sets=[f"{key}={past}"])
    assert str(err.value).startswith(f"{key}: Input should be {wording}")


# (--set values, the key the line starts with, a short token of what is wrong)
CROSS_CHECKS = [
    (["launch.num_processes=2"], "launch.num_processes", "--launcher accelerate"),
    (["online.iterations=5", "world.n_prompts=4"], "online.iterations", "(world.n_prompts = 4)"),
    (["online.chunks=[1, 2]"], "online.chunks", "data.prompts"),
    (["model.hidden_size=10", "model.num_heads=4"], "model", "num_heads"),
    (["online.num_samples=0", "online.candidates=[policy]"], "online", "no candidates"),
    (["online.learning_rate=[]"], "online.learning_rate", "got []"),
    (["online.learning_rate=0"], "online.learning_rate", "got 0.0"),
    (["model.trust_remote_code=['  ']"], "model.trust_remote_code", "empty model name"),
    (["online.start=base"], "model.pretrained", "`base` start"),
    (["dpo.start=base"], "model.pretrained", "`base` start"),
    (["world.categories=[add, mul]"], "world.categories[1]", "'mul'"),
    (["device=cuda:x"], "device", "got 'cuda:x'"),
    (["name=-x"], "name", "got '-x'"),
    (["launch.accelerate_config=/no/file.yaml"], "launch.accelerate_config", "/no/file.yaml"),
    (["online.betta=1"], "online.betta", "unknown key"),
    (["nosection"], "--set nosection", "KEY=VALUE"),
    (["nosection=1"], "--set nosection", "unknown key"),
    (["seed.x=1"], "--set seed.x", "not a section"),
]


@pytest.mark.parametrize("sets,key,token", CROSS_CHECKS)
def test_cross_field_and_set_errors_name_the_key(sets, key, token):
    with pytest.raises(ConfigError) as err:
        load_config(sets=sets)
    msg = str(err.value)
    assert msg.startswith(f"{key}: ") and token in msg and "\n" not in msg


def test_real_prompt_cross_checks(tmp_path):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text("")
    real = [f"data.prompts={prompts}", "data.chunks=4", "model.pretrained=org/model-7b", "online.start=base",
            "online.ranker=pairrm"]
    cfg = load_config(sets=[*real, "methods=[selm]", "online.chunks=[2, 4]"])
    assert [cfg.online.chunk(t) for t in (1, 2)] == [2, 4]
    for sets, key, token in [
        (["methods=[selm]", "online.chunks=[2, 5]"], "online.chunks", "chunk 5"),
        (["methods=[selm]", "online.chunks=[0, 1]"], "online.chunks", "chunk 0"),
        (["methods=[dpo]", "dpo.start=base", "dpo.chunk=5"], "dpo.chunk", "chunk 5"),
        (["methods=[sft]"], "methods", "SFT corpus"),
        (["methods=[dpo]"], "dpo.start", "`base`"),
        (["methods=[selm]", "online.start=sft"], "dpo.start", "`base`"),
        (["methods=[selm]", "online.ranker=oracle"], "online.ranker", "pairrm"),
    ]:
        with pytest.raises(ConfigError) as err:
            load_config(sets=[*real, *sets])
        assert str(err.value).startswith(f"{key}: ") and token in str(err.value), sets
    assert load_config(sets=[*real, "methods=[dpo]", "dpo.start=base", "dpo.chunk=4"]).dpo.chunk == 4
    assert load_config(sets=["online.iterations=4", "world.n_prompts=4"]).online.iterations == 4  # as many prompts: enough


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
    cfg = ExperimentConfig.model_validate({"launch": {"accelerate_config": str(f)}})
    assert cfg.launch.accelerate_config == str(f)


# ---------------------------------------------------------------- how an error line is made
def test_an_error_names_its_place_in_the_config_without_validator_frames():
    assert _loc(("methods", 1, "function-after[check(), str]")) == "methods[1]"
    assert _loc(("a", "function-after[check(), str]", "b", 0, "c")) == "a.b[0].c"  # a frame mid-path is skipped
    assert _loc(("source", "literal['fastchat','tiny']")) == "source"
    assert _loc((0,)) == "[0]"
    assert _loc(()) == "config"


def test_an_error_says_unknown_key_and_repeats_a_short_input_only():
    extra = {"type": "extra_forbidden", "msg": "Extra inputs are not permitted", "input": 1}
    as_list = {"type": "list_type", "msg": "Input should be a valid list", "input": {"a": 1}}
    assert _message(extra) == "unknown key"
    assert _message({"type": "missing", "msg": "Field required", "input": 3}) == "Field required"  # no ", got"
    assert _message({"type": "value_error", "msg": "Value error, too big", "input": 7}) == "too big, got 7"
    assert _message({"type": "value_error", "msg": "Value error, 7 is too big", "input": 7}) == "7 is too big"
    assert _message(as_list) == as_list["msg"]  # mappings and lists are not repeated
    assert _message({"type": "value_error", "msg": "Value error, no input"}) == "no input"


class _Checked(BaseModel):
    n: int = 0

    @model_validator(mode="after")
    def _not_five(self) -> "_Checked":
        if self.n == 5:
            raise ValueError("five is out")
        return self


def test_a_whole_model_error_is_prefixed_by_the_section_alone():
    with pytest.raises(ValidationError) as err:
        _Checked(n=5)
    assert str(config_error(err.value)) == "config: five is out"
    assert str(config_error(err.value, "mt-bench")) == "mt-bench: five is out"
    with pytest.raises(ValidationError) as err:
        _Checked(n="x")
    field = str(config_error(err.value, "mt-bench"))
    assert field.startswith("mt-bench.n: ") and field.endswith(", got 'x'")


def test_suite_options_get_their_defaults_and_errors_name_the_base_suite():
    assert validate_suite_options("tiny-world", {}) == {"split": "eval", "limit": None, "max_new_tokens": 24}
    assert validate_suite_options("lm-eval:openllm", {"limit": 5}) == {
        "tasks": None, "num_fewshot": None, "include_path": None, "batch_size": None, "limit": 5,
        "apply_chat_template": False}
    with pytest.raises(ConfigError) as err:
        validate_suite_options("lm-eval:openllm", {"batchsize": 4})
    assert str(err.value) == "lm-eval.batchsize: unknown key"
    with pytest.raises(ConfigError) as err:
        validate_suite_options("onlin", {"alpha": 0.1})
    msg = str(err.value)
    assert msg.startswith("suite_options.onlin: ")
    assert msg.rpartition("(suites: ")[2].rstrip(")").split(", ") == [
        "alpaca-eval", "brainteaser", "lm-eval", "mt-bench", "tiny-world"]  # every registered suite, sorted


def test_an_override_splits_at_the_first_equals_and_leaves_its_input_alone():
    data = {"online": {"beta": 0.1}, "eval": {"judge": "oracle"}}
    out = apply_overrides(data, ["eval.judge_base_url=http://h/v1?a=b", "online.beta=0.2"])
    assert out == {"online": {"beta": 0.2}, "eval": {"judge": "oracle", "judge_base_url": "http://h/v1?a=b"}}
    assert data == {"online": {"beta": 0.1}, "eval": {"judge": "oracle"}}  # a deep copy was changed


def test_overrides_and_values():
    assert parse_value("64") == 64 and parse_value("[a, b]") == ["a", "b"] and parse_value("true") is True
    assert parse_value("a: [b") == "a: [b"  # not YAML: the raw text
    data = apply_overrides({"online": {"beta": 0.1}}, ["online.alpha=0.5", "name=007", "mt-bench.judge.x=1",
                                                       "data.split=1e3"])
    assert data == {"online": {"beta": 0.1, "alpha": 0.5}, "name": "007", "data": {"split": "1e3"},
                    "suite_options": {"mt-bench": {"judge.x": 1}}}  # text fields stay text
    cfg = load_config(sets=["online.learning_rate=[1e-4, 5e-5]"])
    assert [cfg.online.lr(t) for t in (1, 2)] == [1e-4, 5e-5] and load_config().online.lr(2) == 3e-4  # tiny.yaml's
    assert [load_config().online.chunk(t) for t in (1, 2)] == [1, 2]


def test_yaml_errors_name_the_file_and_the_line(tmp_path):
    bad = tmp_path / "c.yaml"
    bad.write_text("seed: 0\nonline:\n  beta: [0.1\n")
    with pytest.raises(ConfigError) as err:
        load_config(bad)
    assert str(err.value).startswith(f"{bad}: ") and str(err.value).endswith(" line 4")
    bad.write_text("- a\n")
    with pytest.raises(ConfigError) as err:
        load_config(bad)
    assert str(err.value).startswith(f"{bad}: ") and str(err.value).endswith("got list")
    bad.write_text("")
    assert load_config(bad).name == "tiny"  # an empty file: every default
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path / "none.yaml")
    assert "not found" in str(err.value) and str(err.value).endswith(str(tmp_path / "none.yaml"))
    assert load_config(overrides={"seed": 3, "name": None}).seed == 3


def test_each_iteration_samples_with_its_own_seed():
    from selm_bench.harness.run.stages import plan

    stages, _ = plan(load_config(sets=["seed=3", "methods=[iterative-dpo]", "online.iterations=3"]))
    assert [s.spec.seed for s in stages if s.spec.kind == "generate"] == [3001, 3002, 3003]  # seed x 1000 + iteration
