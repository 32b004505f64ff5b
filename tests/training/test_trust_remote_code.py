"""trust_remote_code: a model's own Python code runs only when the config names
that model in `model.trust_remote_code`; every loader gets the permission from the spec, never a literal."""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from selm_bench.harness.core.config import ConfigError, load_config
from selm_bench.harness.run.stages import Stage, plan
from selm_bench.harness.core.store import stable_hash

REPO = Path(__file__).resolve().parents[2]

# A model class in the checkpoint's own file: importing it leaves a marker file behind.
CUSTOM_CODE = '''
import os
from pathlib import Path
from transformers import LlamaConfig, LlamaForCausalLM

Path(os.environ["SELM_TEST_MARKER"]).write_text("custom code ran")


class MarkedConfig(LlamaConfig):
    model_type = "marked-llama"


class MarkedLlama(LlamaForCausalLM):
    config_class = MarkedConfig
'''


@pytest.fixture()
def custom_model(tiny_model, tmp_path, monkeypatch) -> tuple[Path, Path]:
    """The tiny Llama re-labelled as a model that ships its own code (auto_map -> marked.py)."""
    path = tmp_path / "marked-model"
    shutil.copytree(tiny_model, path)
    config = json.loads((path / "config.json").read_text())
    config.update(model_type="marked-llama", architectures=["MarkedLlama"],
                  auto_map={"AutoConfig": "marked.MarkedConfig", "AutoModelForCausalLM": "marked.MarkedLlama"})
    (path / "config.json").write_text(json.dumps(config))
    (path / "marked.py").write_text(CUSTOM_CODE)
    marker = tmp_path / "marker"
    monkeypatch.setenv("SELM_TEST_MARKER", str(marker))
    monkeypatch.setenv("HF_MODULES_CACHE", str(tmp_path / "modules"))
    return path, marker


def test_hf_backend_runs_a_models_code_only_when_allowed(custom_model):
    from selm_bench.trainers.generation import HFBackend

    path, marker = custom_model
    with pytest.raises(ValueError, match="trust_remote_code"):
        HFBackend(str(path))
    assert not marker.exists()
    backend = HFBackend(str(path), trust_remote_code=True)
    assert type(backend.model).__name__ == "MarkedLlama" and marker.read_text() == "custom code ran"


def test_config_refuses_a_local_model_with_code_it_does_not_name(custom_model):
    path, marker = custom_model
    with pytest.raises(ConfigError) as refused:
        load_config(None, sets=[f"model.pretrained={path}"])
    msg = str(refused.value)
    assert msg.startswith(f"model: {path} ") and "ships its own code" in msg and msg.endswith("model.trust_remote_code")
    with pytest.raises(ConfigError, match="ships its own code"):  # naming another model does not allow this one
        load_config(None, sets=[f"model.pretrained={path}", "model.trust_remote_code=[some/other-model]"])
    assert not marker.exists()
    cfg = load_config(None, sets=[f"model.pretrained={path}", f"model.trust_remote_code=[{path}]"])  # named: accepted
    assert cfg.model.trusts(str(path)) is True and not marker.exists()  # and nothing of its code ran yet


def test_a_model_ships_its_own_code_when_its_local_config_has_an_auto_map(tmp_path, monkeypatch):
    from selm_bench.harness.core.config import needs_remote_code

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


def test_only_the_named_models_are_trusted():
    from selm_bench.harness.core.config import ModelConfig

    m = ModelConfig(trust_remote_code=["org/a", "rm/x"])
    assert [m.trusts(x) for x in ("org/a", "rm/x", "org/b", "")] == [True, True, False, False]
    assert ModelConfig().trusts("org/a") is False


def test_the_allow_list_reaches_every_stage_that_loads_the_model(custom_model):
    path, _ = custom_model
    sets = ["methods=[sft,dpo,selm]", "online.iterations=1"]
    stages, evals = plan(load_config(None, sets=sets))
    trusted_stages, trusted_evals = plan(load_config(None, sets=[
        *sets, f"model.pretrained={path}", f"model.trust_remote_code=[{path}]"]))
    for st in stages + evals:  # the default: nothing trusted
        assert not getattr(st.spec, "trust_remote_code", False)
        assert "trust_remote_code" not in getattr(st.spec, "backend_options", {})
    loads = {s.name: s.spec for s in trusted_stages if s.spec.kind in ("sft", "preference")}
    assert set(loads) == {"sft", "dpo", "selm/iter-1"} and all(s.trust_remote_code for s in loads.values())
    gen = next(s.spec for s in trusted_stages if s.spec.kind == "generate")
    assert gen.backend_options["trust_remote_code"] is True
    assert evals and all(e.spec.backend_options["trust_remote_code"] is True for e in trusted_evals)
    rank = next(s.spec for s in trusted_stages if s.spec.kind == "rank")
    assert rank.trust_remote_code is False  # the oracle ranker is not the named model


def test_keys_of_untrusted_stages_do_not_include_the_field():
    """Runs made before the allow-list existed keep their keys: the key is the hash of the spec without it."""
    stages, _ = plan(load_config(None, sets=["methods=[sft]"]))
    sft = next(s for s in stages if s.name == "sft")
    dumped = sft.spec.model_dump(mode="json")
    assert dumped.pop("trust_remote_code") is False
    assert sft.key == stable_hash(dumped)
    on = sft.spec.model_copy(update={"trust_remote_code": True})
    assert Stage(sft.name, sft.folder, on).key != sft.key


def test_eval_command_refuses_a_model_with_code_it_does_not_name(custom_model, tmp_path):
    path, marker = custom_model
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    base = [sys.executable, "-m", "selm_bench.harness.cli", "eval", "--model", str(path), "--suites", "tiny-world",
            "--out", str(tmp_path / "run")]
    refused = subprocess.run(base, capture_output=True, text=True, env=env, cwd=tmp_path)
    assert refused.returncode == 2 and not marker.exists() and not (tmp_path / "run").exists()
    assert refused.stderr.count("\n") == 1 and refused.stderr.startswith(f"error: --model {path}: ")
    assert "ships its own code" in refused.stderr and f"--set 'model.trust_remote_code=[{path}]'" in refused.stderr


def test_no_loader_turns_trust_on_by_itself():
    """Every trust_remote_code argument in the code is a variable (from a spec or the config), never True."""
    literal_true = []
    for path in [p for d in ("harness", "trainers", "evals", "benchmarks", "tools") for p in (REPO / d).rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.keyword) and node.arg == "trust_remote_code":
                if isinstance(node.value, ast.Constant) and node.value.value is not False:
                    literal_true.append(f"{path.name}:{node.value.lineno}")
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and "trust_remote_code=True" in node.value:
                literal_true.append(f"{path.name}:{node.lineno}")
    assert literal_true == []
