"""From an eval spec to a suite's files, with the suite replaced by a stand-in: the context a suite
gets (paths resolved under the run's root), `run_suite` calling the registered suite and writing
metrics.json and items.jsonl, and task files made in a temp folder pointed at their final one."""

import json
from pathlib import Path

from support.run_files import write_json


def test_eval_context_resolves_the_spec_under_root(tmp_path):
    from selm_bench.evals.base import EvalContext
    from selm_bench.harness.core.specs import EvalSpec, Ref
    from selm_bench.harness.run.evaluate import eval_context

    (tmp_path / "ckpt" / "sft").mkdir(parents=True)
    (tmp_path / "world").mkdir()
    spec = EvalSpec(model=Ref(path="ckpt/sft"), name="sft", suite="lm-eval:openllm", options={"limit": 2},
                    data_dir="/d", world=Ref(path="world"), references={"sft": Ref(path="/abs/ref")}, backend="vllm",
                    backend_options={"dtype": "bf16"}, judge="openai:gpt-4", judge_base_url="http://judge/v1",
                    device="cuda", seed=4)
    runtime = {"concurrency": 8}
    ctx = eval_context(spec, tmp_path, tmp_path / "out", runtime=runtime, no_judge=True)
    assert ctx == EvalContext(
        model=str(tmp_path / "ckpt" / "sft"), name="sft", suite="lm-eval:openllm", out_dir=tmp_path / "out",
        options={"limit": 2}, preset="openllm", data_dir=Path("/d"), world_dir=tmp_path / "world", backend="vllm",
        backend_options={"dtype": "bf16"}, judge="openai:gpt-4",
        judge_options={"concurrency": 8, "base_url": "http://judge/v1"}, no_judge=True, device="cuda", seed=4,
        references={"sft": Path("/abs/ref")})
    assert runtime == {"concurrency": 8}  # the caller's runtime is not changed
    # a model that is no folder under root is a Hub id, kept as is
    bare = EvalSpec(model=Ref(path="hub/model"), name="m", suite="tiny-world", options={}, data_dir=None, world=None,
                    references={}, backend="hf", backend_options={}, judge=None, judge_base_url=None, device="cpu", seed=0)
    assert eval_context(bare, tmp_path, tmp_path) == EvalContext(
        model="hub/model", name="m", suite="tiny-world", out_dir=tmp_path, options={}, preset=None, data_dir=None,
        world_dir=None, backend="hf", backend_options={}, judge=None, judge_options={}, no_judge=False, device="cpu",
        seed=0, references={})


def test_run_suite_calls_the_registered_suite_and_writes_its_files(tmp_path, monkeypatch):
    from selm_bench.evals.base import EvalContext, SuiteResult
    from selm_bench.harness.run import evaluate as E

    asked = []
    result = SuiteResult(metrics={"accuracy": 1.0}, items=[{"id": "q", "score": 1.0}], info={"n": 1})
    monkeypatch.setattr(E.registry, "get", lambda kind, name: asked.append((kind, name)) or (lambda ctx: result))
    ctx = EvalContext(model="m", name="dpo", out_dir=tmp_path)
    assert E.run_suite(ctx, "tiny-world", method="dpo") is result
    assert asked == [("suite", "tiny-world")]
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert (written["suite"], written["checkpoint"], written["method"], written["metrics"]) == (
        "tiny-world", "dpo", "dpo", {"accuracy": 1.0})
    assert [json.loads(line) for line in (tmp_path / "items.jsonl").read_text().splitlines()] == [{"id": "q", "score": 1.0}]


def test_relocation_rewrites_task_yaml_files_only(tmp_path):
    """lm-eval task YAMLs anywhere below point at the final folder; no other file is touched."""
    from selm_bench.harness.run.evaluate import relocate_task_files

    tmp, final = tmp_path / "tmp", tmp_path / "final"
    src = str(tmp.resolve())
    write_json(tmp / "task.yaml", f"dataset_path: {src}/data\n")
    write_json(tmp / "sub" / "deep.yaml", f"include: {src}/task.yaml\n")
    write_json(tmp / "metrics.json", f'{{"context": "{src}/x"}}')
    write_json(tmp / "sub" / "metrics.json", f'{{"context": "{src}/x"}}')  
    write_json(tmp / "notes.txt", f"{src}\n")  # not YAML: kept
    write_json(tmp / "plain.yaml", "no path here\n")
    relocate_task_files(tmp, final)
    dst = str(final.resolve())
    assert (tmp / "task.yaml").read_text() == f"dataset_path: {dst}/data\n"
    assert (tmp / "sub" / "deep.yaml").read_text() == f"include: {dst}/task.yaml\n"
    assert (tmp / "metrics.json").read_text() == f'{{"context": "{src}/x"}}'
    assert (tmp / "sub" / "metrics.json").read_text() == f'{{"context": "{src}/x"}}'
    assert (tmp / "notes.txt").read_text() == f"{src}\n"
    assert (tmp / "plain.yaml").read_text() == "no path here\n"
    # with `src`: the folder the files were made in, not the one they are in now
    other = tmp_path / "made-in"
    write_json(tmp / "again.yaml", f"path: {other.resolve()}/a\n")
    relocate_task_files(tmp, final, src=other)
    assert (tmp / "again.yaml").read_text() == f"path: {dst}/a\n"
