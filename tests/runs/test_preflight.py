"""Fail fast: what a run will need is checked before its first stage. A recipe whose ranker, backend,
data, judge key or cached hub artefact is missing stops at once with one line and exit 2, and writes
nothing: not after the DPO stage and hours of generation, as it used to."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from selm_bench.harness.cli import app

ROOT = Path(__file__).resolve().parents[2]


def prompts_file(folder: Path, n: int) -> Path:
    """n rows in UltraFeedback-binarized's schema."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "prompts.jsonl"
    rows = [{"prompt": f"Say {i}.", "chosen": [{"role": "user", "content": f"Say {i}."}, {"role": "assistant", "content": str(i)}],
             "rejected": [{"role": "user", "content": f"Say {i}."}, {"role": "assistant", "content": "no"}]}
            for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def recipe(tmp_path, tiny_model, monkeypatch):
    """`train-and-eval` on configs/zephyr-7b.yaml with a local model and 16 local prompts, sizes for this
    CPU and hf backends: everything it needs is there, so each test takes one thing away."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-PREFLIGHT")
    data = prompts_file(tmp_path / "data", 16)
    base = ["train-and-eval", "--config", str(ROOT / "configs/zephyr-7b.yaml"), "--out", str(tmp_path / "run")]
    sets = {"model.pretrained": str(tiny_model), "data.prompts": str(data), "data.expected_rows": "16",
            "online.backend": "hf", "eval.backend": "hf", "launch.launcher": "inprocess", "launch.num_processes": "1",
            "dpo.batch_size": "4", "online.batch_size": "4", "dpo.gradient_accumulation_steps": "1",
            "online.gradient_accumulation_steps": "1", "precision": "fp32", "device": "cpu",
            "online.ranker": "judge:gpt-4"}  # an API ranker: its key is all it needs

    def run(suites: str = "tiny-world", **changes: str):
        merged = {**sets, **changes}
        argv = base + ["--suites", suites] + [a for k, v in merged.items() for a in ("--set", f"{k}={v}")]
        return CliRunner().invoke(app, argv)

    run.out = tmp_path / "run"
    return run


def assert_stopped_before_any_stage(res, out: Path, *fragments: str) -> None:
    assert res.exit_code == 2, res.output
    errors = [ln for ln in res.output.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, res.output
    for f in fragments:
        assert f in errors[0], (f, errors[0])
    assert not out.exists()  # nothing written: no run folder, no manifest, no data chunks


def test_missing_pairrm_folder_stops_before_dpo(recipe, tmp_path):
    res = recipe(**{"online.ranker": f"pairrm:{tmp_path / 'no-pairrm'}"})
    assert_stopped_before_any_stage(res, recipe.out, str(tmp_path / "no-pairrm"))


def test_default_pairrm_not_cached_offline_stops_at_once(recipe):
    res = recipe(**{"online.ranker": "pairrm"})  # llm-blender/PairRM-hf, from the hub
    assert_stopped_before_any_stage(res, recipe.out, "llm-blender/PairRM-hf", "HF_HUB_OFFLINE")


def test_hub_model_not_cached_offline_stops_at_once(recipe):
    res = recipe(**{"model.pretrained": "someorg/not-cached-7b"})
    assert_stopped_before_any_stage(res, recipe.out, "someorg/not-cached-7b")


def test_vllm_interpreter_without_vllm_stops_at_once(recipe, tmp_path):
    fake = tmp_path / "bin" / "python"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\nexit 3\n")  # runs, but cannot import vllm
    fake.chmod(0o755)
    res = recipe(**{"online.backend": "vllm", "vllm.python": str(fake), "vllm.data_parallel_size": "1"})
    assert_stopped_before_any_stage(res, recipe.out, "vllm", str(fake))


def test_wrong_row_count_of_a_local_file_stops_at_once(recipe):
    res = recipe(**{"data.expected_rows": "61135"})
    assert_stopped_before_any_stage(res, recipe.out, "16 rows", "61135")


def test_an_unreadable_deepspeed_config_file_stops_at_once(recipe, tmp_path):
    """An accelerate config that points at a DeepSpeed JSON that is missing or not JSON: one line that starts
    with the field and names the JSON file, exit 2, nothing written."""
    broken = tmp_path / "ds-broken.json"
    broken.write_text("{stage: 3")
    for ds in (tmp_path / "ds-missing.json", broken):
        acc = tmp_path / "acc.yaml"
        acc.write_text(f"distributed_type: DEEPSPEED\nnum_machines: 1\ndeepspeed_config:\n  deepspeed_config_file: {ds}\n")
        res = recipe(**{"launch.launcher": "accelerate", "launch.accelerate_config": str(acc)})
        assert_stopped_before_any_stage(res, recipe.out, "error: launch.accelerate_config: ", str(ds))


def test_missing_judge_key_stops_before_training(recipe, tmp_path, monkeypatch):
    """MT-Bench's GPT-4 judge used to fail on a missing key only when the first checkpoint was evaluated."""
    from conftest import write_mt_bench_fixture

    mirror = write_mt_bench_fixture(tmp_path / "mirror")
    monkeypatch.delenv("OPENAI_API_KEY")
    res = recipe(suites="mt-bench", **{"eval.data_dir": str(mirror), "eval.judge": "openai:gpt-4"})
    assert_stopped_before_any_stage(res, recipe.out, "OPENAI_API_KEY")


def test_judge_ranker_without_a_key_stops_before_dpo(recipe, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY")
    res = recipe(**{"online.ranker": "judge:gpt-4"})
    assert_stopped_before_any_stage(res, recipe.out, "OPENAI_API_KEY")


def test_missing_mt_bench_files_stop_before_training(recipe, tmp_path):
    res = recipe(suites="mt-bench", **{"eval.data_dir": str(tmp_path / "empty-mirror")})
    assert_stopped_before_any_stage(res, recipe.out, "question.jsonl")


def test_lm_eval_task_on_an_uncached_hub_dataset_stops_offline(recipe, tmp_path):
    """A local task YAML whose data is a hub dataset: offline and not cached, it stops before training."""
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "hubtask.yaml").write_text(
        "task: hubtask\ndataset_path: someorg/not-cached-data\noutput_type: multiple_choice\ntest_split: test\n"
        "doc_to_text: '{{q}}'\ndoc_to_target: 0\ndoc_to_choice: ['a', 'b']\n")
    res = recipe(suites="lm-eval:hubtask", **{"lm-eval.include_path": str(tasks)})
    assert_stopped_before_any_stage(res, recipe.out, "someorg/not-cached-data")
