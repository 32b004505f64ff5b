"""Bad config: one clear line naming the key, exit code 2, nothing written."""

import subprocess
import sys

import pytest
import yaml
from pydantic import ValidationError

from selm_bench.harness.core.config import ConfigError, ExperimentConfig, ModelConfig, load_config

BAD = [
    ({"online": {"beta": 0}}, "online.beta"),
    ({"online": {"beta": -1.0}}, "online.beta"),
    ({"online": {"alpha": -0.1}}, "online.alpha"),
    ({"online": {"iterations": 0}}, "online.iterations"),
    ({"methods": ["sft", "ppo"]}, "methods[1]"),
    ({"suites": ["tiny-world", "nope"]}, "suites[1]"),
    ({"online": {"betta": 0.1}}, "online.betta"),
    ({"surprise": 1}, "surprise"),
    ({"seed": "zero"}, "seed"),
    ({"sft": {"learning_rate": "fast"}}, "sft.learning_rate"),
    ({"online": {"ranker": "pairrm-typo"}}, "online.ranker"),
    ({"methods": "selm"}, "methods"),
    ({"online": {"candidates": []}}, "online.candidates"),
    ({"online": {"iterations": 5}, "world": {"n_prompts": 4}}, "online.iterations"),
    ({"suite_options": {"onlin": {"alpha": 0.1}}}, "suite_options.onlin"),
    ({"suite_options": {"tiny-world": {"limt": 10}}}, "tiny-world.limt"),
    ({"world": {"categories": []}}, "world.categories"),
    ({"model": {"num_heads": 0}}, "model.num_heads"),
    ({"model": {"pretrained": "/no/such/model"}}, "model.pretrained"),
    ({"sft": {"epochs": -1}}, "sft.epochs"),
    ({"eval": {"batch_size": 0}}, "eval.batch_size"),
    ({"online": {"max_new_tokens": 0}}, "online.max_new_tokens"),
    ({"online": {"alpha": float("inf")}}, "online.alpha"),
    ({"online": {"start": "selm"}}, "online.start"),
    ({"device": "gpu"}, "device"),
    ({"eval": {"judge_concurrency": 0}}, "eval.judge_concurrency"),
]


@pytest.mark.parametrize("data,key", BAD)
def test_bad_values_name_the_key(tmp_path, data, key):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value).startswith(key + ":")


@pytest.mark.parametrize("path", ["~/nope", "./nope", "/nope", "a/b/c"])
def test_a_missing_local_model_path_is_refused_naming_the_key(path, tmp_path, monkeypatch):
    """Local = starts with `.`, `/` or `~`, or has more than one `/` (a hub id has exactly one)."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as err:
        load_config(sets=[f"model.pretrained={path}"])
    msg = str(err.value)
    assert msg.startswith("model.pretrained: ") and msg.endswith(f": {path}") and "no such local model" in msg


def test_hub_ids_and_existing_local_paths_are_accepted(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m" / "sub").mkdir(parents=True)
    for name in ("org/model", "gpt2", "~/m", "./m", str(tmp_path / "m"), "m/sub/"):
        assert ModelConfig(pretrained=name).pretrained == name


def test_a_config_changed_after_loading_is_validated_again():
    cfg = ExperimentConfig()
    with pytest.raises(ValidationError):
        cfg.online.beta = 0
    with pytest.raises(ValidationError):
        cfg.world.categories = ["mul"]
    cfg.online.beta = 0.5
    assert cfg.online.beta == 0.5


def test_default_config_loads():
    cfg = load_config()
    assert cfg.name == "tiny" and cfg.online.beta > 0 and cfg.methods == ["sft", "dpo", "iterative-dpo", "selm"]


def test_set_overrides_and_suite_options():
    cfg = load_config(sets=["online.alpha=0.01", "mt-bench.max_new_tokens=64", "online.candidates=[policy]"])
    assert cfg.online.alpha == 0.01 and cfg.online.candidates == ["policy"]
    assert cfg.suite_options["mt-bench"]["max_new_tokens"] == 64


@pytest.mark.parametrize("args,needle", [
    (["--set", "online.beta=0"], "online.beta"),
    (["--methods", "sft,bogus"], "methods[1]"),
    (["--config", "missing.yaml"], "config file not found"),
    (["--set", "onlin.alpha=0.01"], "suite_options.onlin"),
    (["--set", "lm-eval.batchsize=4"], "lm-eval.batchsize"),
])
def test_cli_exit_code_2_and_nothing_written(tmp_path, args, needle):
    out = tmp_path / "run"
    res = subprocess.run([sys.executable, "-m", "selm_bench.harness.cli", "train-and-eval", "--out", str(out), *args],
                         capture_output=True, text=True, cwd=tmp_path)
    assert res.returncode == 2
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], res.stderr
    assert "Traceback" not in res.stderr
    assert not out.exists()
    assert res.stdout == ""


def test_online_methods_can_start_from_sft():
    from selm_bench.harness.run.stages import plan

    cfg = load_config(sets=["online.start=sft", "methods=[selm]"])
    stages, _ = plan(cfg)
    assert [s.name for s in stages] == ["world", "sft", "selm/iter-1/generate", "selm/iter-1/rank", "selm/iter-1",
                                        "selm/iter-2/generate", "selm/iter-2/rank", "selm/iter-2"]
    sft, gen, train = stages[1], stages[2], stages[4]
    assert gen.spec.policy.key == sft.key and train.spec.policy == sft.ref() and train.spec.reference == sft.ref()
    assert train.spec.pairs.key == stages[3].key
