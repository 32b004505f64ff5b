"""Model cards (harness/reports/modelcard.py) on a real micro run: one README.md per checkpoint folder, Hub
front matter, hyperparameters equal to spec.json, eval numbers equal to leaderboard.json, byte-identical
on a rerun; `push_to_hub` uploads a loadable model and the card, and offline fails before any call."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from selm_bench.harness.reports.modelcard import (PushError, check_push, files_to_upload, push_run, push_to_hub,
                                          write_model_cards)
from support.micro import micro

MICRO = micro("cards",
              methods=["sft", "dpo"],
              suites=["tiny-world"],
              sft={"epochs": 1, "batch_size": 16})
LOADABLE = {"README.md", "chat_template.jinja", "config.json", "generation_config.json", "model.safetensors",
            "tokenizer.json", "tokenizer_config.json"}


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("cards")
    cfg, out = tmp / "c.yaml", tmp / "run"
    cfg.write_text(yaml.safe_dump(MICRO))
    cmd = [sys.executable, "-m", "selm_bench.harness.cli", "train-and-eval", "--config", str(cfg), "--out", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    write_model_cards(out)
    return out


def front_matter(text: str) -> dict:
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n", 2)[1])


def section(text: str, title: str) -> str:
    return text.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def table(text: str) -> list[list[str]]:
    """A markdown table's body rows, cells stripped (header and rule skipped)."""
    lines = [ln for ln in text.splitlines() if ln.startswith("|")]
    return [[c.strip() for c in ln.strip("|").split(" | ")] for ln in lines[2:]]


def test_one_card_per_checkpoint_with_hub_front_matter(run):
    cards = sorted(p.relative_to(run).as_posix() for p in run.rglob("README.md"))
    assert cards == ["checkpoints/dpo/model/README.md", "checkpoints/sft/model/README.md"]
    for method in ("sft", "dpo"):
        text = (run / "checkpoints" / method / "model" / "README.md").read_text()
        meta = front_matter(text)
        # the Hub's metadata: a transformers model for the Hub's text-generation task (a causal LM), tagged
        # selm-bench, trl, its method and tiny-world (docs/reference.md); the tiny world's base is a random
        # Llama made in the run: no Hub id to name
        assert meta == {"library_name": "transformers", "pipeline_tag": "text-generation",
                        "tags": ["selm-bench", "trl", method, "tiny-world"]}
        origin = section(text, "Trained from")
        assert "tiny world" in origin and "randomly initialised" in origin
    dpo = (run / "checkpoints/dpo/model/README.md").read_text()
    assert "`checkpoints/sft/model`" in section(dpo, "Trained from")  # dpo starts from the run's sft
    data = section(dpo, "Data")
    assert "`pref` set" in data and "8 rows" in data  # the tiny world's preference set and its size
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["git_commit"] in section(dpo, "Provenance")


@pytest.mark.parametrize("method", ["sft", "dpo"])
def test_hyperparameters_equal_spec_json(run, method):
    folder = run / "checkpoints" / method / "model"
    spec = json.loads((folder / "spec.json").read_text())
    expected = {k: spec[k] for k in ("loss", "beta", "alpha", "nll_weight") if k in spec} | spec["train"]
    shown = dict(table(section((folder / "README.md").read_text(), "Hyperparameters")))
    assert shown == {k: v if isinstance(v, str) else json.dumps(v) for k, v in expected.items()}
    if method == "dpo":
        assert shown["beta"] == "0.1" and shown["loss"] == "dpo"


@pytest.mark.parametrize("method", ["sft", "dpo"])
def test_eval_rows_equal_leaderboard_json(run, method):
    row = next(r for r in json.loads((run / "leaderboard.json").read_text()) if r["checkpoint"] == method)
    evals = section((run / "checkpoints" / method / "model" / "README.md").read_text(), "Evaluation")
    shown = {f"{suite}/{metric}": float(value) for suite, metric, value in table(evals)}
    expected = {k: v for k, v in row.items() if "/" in k and v is not None}
    assert shown == expected and "tiny-world/accuracy" in shown
    assert row["label"]
    [said] = [line for line in evals.splitlines() if row["label"] in line]  # the row's label, said once
    assert "not the canonical" in said
    assert row["provenance"] in evals


def test_card_config_hash_matches_the_runs_config_yaml_and_leaderboard(run):
    """A card names its run's config by the first 10 hex of sha256(config.yaml) (docs/reference.md), the same
    `config <hash>` the leaderboard's provenance shows for that run's rows."""
    import hashlib

    expected = hashlib.sha256((run / "config.yaml").read_bytes()).hexdigest()[:10]
    for row in json.loads((run / "leaderboard.json").read_text()):
        assert f"config {expected} " in row["provenance"] + " "
        card = (run / "checkpoints" / row["checkpoint"] / "model" / "README.md").read_text()
        [line] = [ln for ln in section(card, "Provenance").splitlines() if ln.startswith("- run:")]
        assert line.split("sha256 `", 1)[1].split("`", 1)[0] == expected

def test_rerun_is_byte_identical_and_leaves_cards_alone(run):
    cards = sorted(run.rglob("README.md"))
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in cards}
    assert sorted(write_model_cards(run)) == cards
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in cards} == before


def test_hub_base_model_and_dataset_chunk(run, tmp_path):
    """A run from a Hub model on a Hub dataset's chunk (spec.json as harness/run/stages.py writes them): the front
    matter names both; no tiny-world tag."""
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    shutil.rmtree(copy / "world")
    spec_file = copy / "checkpoints/dpo/model/spec.json"
    spec = json.loads(spec_file.read_text())
    base = {"path": "HuggingFaceH4/mistral-7b-sft-beta", "key": ""}
    spec.update(policy=base, reference=base, pairs={"path": "data/chunk-2.jsonl", "key": "abc"})
    spec_file.write_text(json.dumps(spec))
    (copy / "data").mkdir()
    (copy / "data/spec.json").write_text(json.dumps({"kind": "data", "source": "HuggingFaceH4/ultrafeedback_binarized",
                                                     "split": "train_prefs", "chunks": 3, "expected_rows": None}))
    write_model_cards(copy)
    text = (copy / "checkpoints/dpo/model/README.md").read_text()
    meta = front_matter(text)
    assert meta["base_model"] == "HuggingFaceH4/mistral-7b-sft-beta"
    assert meta["datasets"] == ["HuggingFaceH4/ultrafeedback_binarized"]
    assert "tiny-world" not in meta["tags"]
    data = section(text, "Data")
    assert "chunk 2 of 3" in data and "`HuggingFaceH4/ultrafeedback_binarized`" in data and "`train_prefs`" in data


def test_settings_resolved_at_training_time_come_from_train_info_json(run, tmp_path):
    """Under the hyperparameters the card shows what train_info.json says training really ran with: the
    global batch, optimiser, scheduler, mixed precision and distributed type, an enum by its name."""
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    folder = copy / "checkpoints/dpo/model"
    info = json.loads((folder / "train_info.json").read_text())
    info.update(global_batch=64, optim="adamw_torch", lr_scheduler="cosine", mixed_precision="bf16",
                distributed_type="DistributedType.MULTI_GPU")
    (folder / "train_info.json").write_text(json.dumps(info))
    write_model_cards(copy)
    hyper = section((folder / "README.md").read_text(), "Hyperparameters")
    [line] = [ln for ln in hyper.splitlines() if "`train_info.json`" in ln]
    shown = dict(item.split(" ", 1) for item in line.split("):", 1)[1].strip().rstrip(".").split(", "))
    expected = {"global_batch": "64", "optim": "adamw_torch", "lr_scheduler": "cosine", "mixed_precision": "bf16",
                "distributed_type": "MULTI_GPU"}
    assert {k: shown.get(k) for k in expected} == expected


def test_upload_set_is_a_loadable_model_and_its_card(run, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = run / "checkpoints/dpo/model"
    files = files_to_upload(folder)
    assert set(files) == LOADABLE  # no spec.json, stage.json, train_info.json, train_log.json, training_args.bin
    assert {"spec.json", "stage.json", "training_args.bin"} <= {p.name for p in folder.iterdir()}
    upload = tmp_path / "upload"
    upload.mkdir()
    for f in files:
        shutil.copy(folder / f, upload / f)
    model = AutoModelForCausalLM.from_pretrained(upload)
    tok = AutoTokenizer.from_pretrained(upload)
    assert model.config.hidden_size == 16 and tok.chat_template


class Recorder:
    calls: list = []

    def __init__(self, token=None):
        self.calls.append(("HfApi", {"token": token}))

    def create_repo(self, repo_id, **kw):
        self.calls.append(("create_repo", {"repo_id": repo_id, **kw}))

    def upload_folder(self, **kw):
        self.calls.append(("upload_folder", {**kw, "ignore_patterns": list(kw["ignore_patterns"])}))
        return type("CommitInfo", (), {"commit_url": f"https://huggingface.co/{kw['repo_id']}/commit/1"})()


@pytest.fixture
def recorder(monkeypatch):
    import huggingface_hub

    Recorder.calls = []
    monkeypatch.setattr(huggingface_hub, "HfApi", Recorder)
    return Recorder.calls


def test_push_offline_fails_with_one_clear_error_and_no_call(run, recorder, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(PushError, match="HF_HUB_OFFLINE"):
        push_to_hub(run / "checkpoints/dpo/model", "me/dpo-tiny")
    with pytest.raises(PushError, match="HF_HUB_OFFLINE") as err:
        push_run(run, "me/tiny")
    assert "me/tiny-dpo" in str(err.value) and "me/tiny-sft" in str(err.value)  # every repo it would have made
    with pytest.raises(PushError, match="HF_HUB_OFFLINE"):  # what the CLI asks before training
        check_push("me/tiny")
    assert recorder == []


def test_push_refuses_a_folder_without_card_or_weights(run, recorder, tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    bare = tmp_path / "model"
    shutil.copytree(run / "checkpoints/dpo/model", bare, ignore=shutil.ignore_patterns("README.md", "*.safetensors"))
    with pytest.raises(PushError, match=r"missing README.md, weights"):
        push_to_hub(bare, "me/dpo-tiny")
    with pytest.raises(PushError, match="Repo id must"):
        push_run(run, "me/bad name")
    with pytest.raises(PushError, match="Repo id must"):
        check_push("me/bad name")
    check_push("me/tiny")
    assert recorder == []


def test_push_creates_a_private_repo_and_uploads_exactly_the_listed_files(run, recorder, monkeypatch):
    import huggingface_hub.constants
    from huggingface_hub.utils import filter_repo_objects

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    folder = run / "checkpoints/dpo/model"
    url = push_to_hub(folder, "me/dpo-tiny", token="hf_test")
    assert url == "https://huggingface.co/me/dpo-tiny/commit/1"
    assert [name for name, _ in recorder] == ["HfApi", "create_repo", "upload_folder"]
    assert recorder[0][1] == {"token": "hf_test"}
    assert recorder[1][1] == {"repo_id": "me/dpo-tiny", "private": True, "exist_ok": True, "repo_type": "model"}
    up = recorder[2][1]
    assert up["repo_id"] == "me/dpo-tiny" and Path(up["folder_path"]) == folder and "allow_patterns" not in up
    everything = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    assert sorted(filter_repo_objects(everything, ignore_patterns=up["ignore_patterns"])) == sorted(LOADABLE)


def test_push_run_sends_each_checkpoint_to_its_own_repo(run, recorder, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    urls = push_run(run, "me/tiny", private=False)
    assert urls == {m: f"https://huggingface.co/me/tiny-{m}/commit/1" for m in ("dpo", "sft")}
    created = [kw for name, kw in recorder if name == "create_repo"]
    assert [(kw["repo_id"], kw["private"]) for kw in created] == [("me/tiny-dpo", False), ("me/tiny-sft", False)]
    uploads = [(kw["repo_id"], Path(kw["folder_path"])) for name, kw in recorder if name == "upload_folder"]
    assert uploads == [("me/tiny-dpo", run / "checkpoints/dpo/model"), ("me/tiny-sft", run / "checkpoints/sft/model")]
