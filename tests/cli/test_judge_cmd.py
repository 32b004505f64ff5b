"""`selm-bench judge FOLDER`: each suite's context is rebuilt from its stage's spec.json (inputs
relative to the run folder, wherever that folder now is) and the run's recorded judge settings, as
a rerun's rejudge does; `--judge` replaces the spec's judge. In-process (typer's runner); the
suite's judge is a stand-in, so nothing is generated or sent."""

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import yaml

from selm_bench.evals.base import SuiteResult
from selm_bench.harness.core import registry
from selm_bench.harness.core.specs import EvalSpec, Ref, to_json
from support.cli import invoke

STAGE = Path("evals") / "sft" / "mt-bench"


def cli(*args) -> tuple[int, list[str]]:
    result = invoke(*args)
    return result.exit_code, [line for line in result.stderr.splitlines() if line.strip()]


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def eval_stage(folder: Path, suite: str, metrics: dict) -> None:
    """An eval stage's folder as the pipeline leaves it: spec.json (run-relative inputs) and metrics.json."""
    spec = EvalSpec(model=Ref(path="checkpoints/sft/model", key="k-sft"), name="sft", suite=suite, options={"limit": 1},
                    data_dir=None, world=Ref(path="world/data", key="k-world"),
                    references={"sft": Ref(path="checkpoints/sft/model", key="k-sft")}, backend="hf", backend_options={},
                    judge="oracle", judge_base_url=None, device="cpu", seed=3)
    folder.mkdir(parents=True)
    (folder / "spec.json").write_text(to_json(spec))
    (folder / "metrics.json").write_text(json.dumps({"suite": suite, "checkpoint": "sft", "method": "sft",
                                                     "metrics": metrics, "info": {}}))


@pytest.fixture
def seen(monkeypatch) -> list:
    """The contexts MT-Bench's judge is called with; it scores every answer 7.5."""
    calls = []

    def stand_in(ctx):
        calls.append(ctx)
        return SuiteResult(metrics={"score": 7.5}, items=[{"id": "81", "score": 7.5}])

    monkeypatch.setitem(registry._ENTRIES["suite"], "mt-bench",
                        dataclasses.replace(registry.entry("suite", "mt-bench"), judge=stand_in))
    return calls


SETTINGS = {"judge_concurrency": 3, "judge_max_retries": 1, "judge_timeout": 9.0}


@pytest.mark.parametrize("recorded", [{"name": "tiny", "eval": SETTINGS},  # train-and-eval's config.yaml
                                      {"model": "m", "suites": ["mt-bench"], "config": {"eval": SETTINGS}}],  # eval's
                         ids=["train-and-eval run", "eval run"])
def test_judge_rebuilds_each_suite_from_its_spec_in_the_moved_run(tmp_path, seen, recorded):
    made = tmp_path / "made" / "run"
    eval_stage(made / STAGE, "mt-bench", {})
    (made / "manifest.json").write_text(json.dumps({"results": [str(STAGE)], "stages": {}}))
    (made / "config.yaml").write_text(yaml.safe_dump(recorded))
    run = Path(shutil.move(str(made), str(tmp_path / "moved")))  # judged where it is now, not where it was made

    code, lines = cli("judge", run)
    assert code == 0 and lines[0].split()[:2] == ["judged", "mt-bench"], lines
    (ctx,) = seen
    assert (ctx.model, ctx.world_dir, ctx.references) == (str(run / "checkpoints/sft/model"), run / "world/data",
                                                          {"sft": run / "checkpoints/sft/model"})
    assert (ctx.out_dir, ctx.name, ctx.options, ctx.seed, ctx.judge) == (run / STAGE, "sft", {"limit": 1}, 3, "oracle")
    assert ctx.judge_options == {"concurrency": 3, "max_retries": 1, "timeout": 9.0}  # the run's, from config.yaml
    metrics = json.loads((run / STAGE / "metrics.json").read_text())
    assert (metrics["metrics"], metrics["method"]) == ({"score": 7.5}, "sft")
    assert [json.loads(line) for line in (run / STAGE / "items.jsonl").read_text().splitlines()] == [
        {"id": "81", "score": 7.5}]
    assert [(r["checkpoint"], r["mt-bench/score"]) for r in json.loads((run / "leaderboard.json").read_text())] == [
        ("sft", 7.5)]  # the run's leaderboard shows the judgment


def test_judge_uses_the_judge_settings_an_eval_run_was_made_with(tmp_path, seen, tiny_model, tiny_world):
    """`selm-bench eval --no-judge --set eval.judge_...` then `selm-bench judge`: the judge calls run with
    the eval's concurrency, retries and timeout, not the defaults (8, 5, 60)."""
    run = tmp_path / "run"
    code, lines = cli("eval", "--model", tiny_model, "--suites", "mt-bench", "--world", tiny_world, "--out", run,
                      "--no-judge", "--set", "mt-bench.limit=1", *[a for k, v in SETTINGS.items()
                                                                   for a in ("--set", f"eval.{k}={v}")])
    assert code == 0 and seen == [], lines
    code, lines = cli("judge", run)
    assert code == 0, lines
    (ctx,) = seen
    assert ctx.judge_options == {"concurrency": 3, "max_retries": 1, "timeout": 9.0}


def test_judge_option_replaces_the_specs_judge_and_a_stage_folder_judges_alone(tmp_path, seen):
    run = tmp_path / "run"
    eval_stage(run / STAGE, "mt-bench", {})
    eval_stage(run / "evals" / "dpo" / "mt-bench", "mt-bench", {})
    (run / "manifest.json").write_text(json.dumps({"results": [], "stages": {}}))  # no config.yaml: the defaults

    code, lines = cli("judge", run / STAGE, "--judge", "openai:gpt-4o")
    assert code == 0, lines
    assert [(c.judge, c.out_dir, c.model) for c in seen] == [("openai:gpt-4o", run / STAGE,
                                                              str(run / "checkpoints/sft/model"))]
    assert json.loads((run / "evals/dpo/mt-bench/metrics.json").read_text())["metrics"] == {}  # not asked for


def test_judge_folder_without_results(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty").mkdir()
    for folder in ("empty", "absent"):
        code, lines = cli("judge", folder)
        assert code == 2 and len(lines) == 1 and lines[0].startswith(f"error: {folder}: ")
    assert snapshot(tmp_path) == {}


def test_judge_folder_with_nothing_to_judge(tmp_path, seen):
    # a suite without a judge (tiny-world), and a metrics.json that is no eval stage's (no spec.json)
    eval_stage(tmp_path / "ev" / "tiny-world", "tiny-world", {"accuracy": 0.5})
    (tmp_path / "ev" / "old").mkdir()
    (tmp_path / "ev" / "old" / "metrics.json").write_text(json.dumps({"suite": "mt-bench", "metrics": {}}))
    before = snapshot(tmp_path)
    code, lines = cli("judge", tmp_path / "ev")
    assert code == 2 and len(lines) == 1 and lines[0].startswith(f"error: {tmp_path / 'ev'}: ")
    assert snapshot(tmp_path) == before and seen == []
