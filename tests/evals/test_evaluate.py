"""What a suite leaves behind: metrics.json and items.jsonl read back as written (no
absolute path of the machine that ran it), and the item contract compare relies on."""

import json
import math
from pathlib import Path

import pytest

from selm_bench.evals.base import EvalContext, SuiteError, SuiteResult, check_items, mean_and_stderr
from selm_bench.harness.run.evaluate import write_suite_result


def _ctx(tmp_path: Path) -> EvalContext:
    return EvalContext(model="/m/sft", name="sft", out_dir=tmp_path, options={"limit": 3}, preset="openllm",
                       data_dir=Path("/data"), world_dir=None, backend="vllm", backend_options={"dtype": "bfloat16"},
                       judge="openai:gpt-4", judge_options={"concurrency": 4}, device="cuda", seed=7,
                       references={"sft": Path("/m/ref")})


def test_suite_result_files_read_back(tmp_path):
    items = [{"id": "q1", "score": 1.0, "where": Path("/x/y")}, {"id": "q2", "score": None, "text": "a\nb"}]
    result = SuiteResult(metrics={"accuracy": 0.5}, items=items, info={"n": 2})
    write_suite_result(tmp_path, "tiny-world", _ctx(tmp_path), result, method="sft")
    assert json.loads((tmp_path / "metrics.json").read_text()) == {
        "suite": "tiny-world", "checkpoint": "sft", "method": "sft", "metrics": {"accuracy": 0.5}, "info": {"n": 2}}
    lines = (tmp_path / "items.jsonl").read_text().split("\n")
    assert lines[2] == "" and len(lines) == 3  # one record a line, each ending in a newline
    assert [json.loads(line) for line in lines[:2]] == [{"id": "q1", "score": 1.0, "where": "/x/y"},
                                                        {"id": "q2", "score": None, "text": "a\nb"}]
    write_suite_result(tmp_path, "tiny-world", _ctx(tmp_path), SuiteResult(metrics={}))
    assert "method" not in json.loads((tmp_path / "metrics.json").read_text())
    assert (tmp_path / "items.jsonl").read_text() == ""


def test_item_contract_errors():
    check_items("s", [{"id": 1, "score": 1}, {"id": "2", "score": None}, {"id": 3, "score": 0.5}])
    # each refusal names the suite, the item (by position, else id) and what is wrong with it
    for items, tokens in [([{"score": 1}], ("item 0", "id")), ([{"id": 1, "score": 1}, {"id": 2}], ("item 1", "score")),
                          ([{"id": 1, "score": 1}, {"id": "1", "score": 0}], ("'1'", "not unique")),
                          ([{"id": "a", "score": True}], ("'a'", "non-numeric", "True")),
                          ([{"id": "a", "score": "1"}], ("'a'", "non-numeric", "'1'"))]:
        with pytest.raises(SuiteError) as err:
            check_items("s", items)
        assert str(err.value).startswith("s: ") and all(t in str(err.value) for t in tokens), str(err.value)


def test_mean_stderr_and_leaderboard_metrics():
    """mean_and_stderr: the mean and the sample standard deviation over sqrt(n); the leaderboard takes
    a result's numbers only (None, bools and text skipped, the numbers after them kept)."""
    mean, se = mean_and_stderr([1.0, 2.0, 4.0])  # mean 7/3; sample variance (16/9 + 1/9 + 25/9) / 2 = 7/3
    assert math.isclose(mean, 7 / 3) and math.isclose(se, math.sqrt(7 / 3 / 3))
    # (1, 3): mean 2, sample variance (1 + 1) / 1 = 2, stderr sqrt(2 / 2) = 1
    assert mean_and_stderr([1.0, 3.0]) == (2.0, 1.0)
    # (4, 0, 2, 2): mean 2, sample variance (4 + 4 + 0 + 0) / 3 = 8/3, stderr sqrt(8/3 / 4) = sqrt(2/3)
    mean, se = mean_and_stderr([4.0, 0.0, 2.0, 2.0])
    assert mean == 2.0 and math.isclose(se, math.sqrt(2 / 3))
    assert mean_and_stderr([5.0]) == (5.0, 0.0)
    assert all(math.isnan(x) for x in mean_and_stderr([]))
    r = SuiteResult(metrics={"a": 1, "b": 0.5, "c": None, "d": True, "e": "text"})
    assert r.leaderboard_metrics() == {"a": 1.0, "b": 0.5}
    r = SuiteResult(metrics={"a": None, "b": True, "c": 2, "d": False, "e": 0.25, "f": "x", "g": 3})
    assert r.leaderboard_metrics() == {"c": 2.0, "e": 0.25, "g": 3.0}
    assert SuiteResult(metrics={}).items == [] and SuiteResult(metrics={}).info == {}


# ---------------------------------------------------------------- the context a suite runs with (evals/base.py)
def test_eval_context_defaults_are_the_documented_ones(tmp_path):
    ctx = EvalContext(model="m", name="n", out_dir=tmp_path)
    assert (ctx.options, ctx.preset, ctx.data_dir, ctx.world_dir, ctx.backend, ctx.backend_options, ctx.judge,
            ctx.judge_options, ctx.no_judge, ctx.device, ctx.seed, ctx.references, ctx.suite, ctx._generator) == (
        {}, None, None, None, "hf", {}, None, {}, False, "cpu", 0, {}, None, None)


def test_the_generator_is_built_once_from_the_registered_backend(tmp_path, monkeypatch):
    from selm_bench.harness.core import registry

    built, looked_up = [], []

    class Backend:
        def __init__(self, model, **kwargs):
            built.append((model, kwargs))

    monkeypatch.setattr(registry, "get", lambda kind, name: looked_up.append((kind, name)) or Backend)
    ctx = EvalContext(model="/ckpt", name="n", out_dir=tmp_path, backend="fake", device="cuda:1",
                      backend_options={"dtype": "bfloat16"})
    first = ctx.generator()
    assert ctx.generator() is first and isinstance(first, Backend)
    assert looked_up == [("backend", "fake")]
    assert built == [("/ckpt", {"device": "cuda:1", "dtype": "bfloat16"})]


def test_make_judge_needs_a_name_and_caches_next_to_the_suite_folder(tmp_path, monkeypatch):
    import selm_bench.evals.judges as judges

    for judge in (None, ""):
        with pytest.raises(SuiteError) as err:
            EvalContext(model="m", name="n", out_dir=tmp_path / "mt-bench", judge=judge).make_judge()
        assert "--judge" in str(err.value)  # says how to name one
    made = []
    monkeypatch.setattr(judges, "make_judge", lambda spec, cache_dir=None, **kw: made.append((spec, cache_dir, kw)) or "J")
    ctx = EvalContext(model="m", name="n", out_dir=tmp_path / "evals" / "mt-bench", judge="openai:gpt-4",
                      judge_options={"concurrency": 2})
    assert ctx.make_judge() == "J"
    assert made == [("openai:gpt-4", tmp_path / "evals" / "judge-cache", {"concurrency": 2})]
