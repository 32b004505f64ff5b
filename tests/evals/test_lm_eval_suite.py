import json
import os
from pathlib import Path

import pytest
import yaml

from selm_bench.evals import lm_eval_suite as L
from selm_bench.evals.base import EvalContext, SuiteError
from selm_bench.harness.core import registry


def _ctx(tmp_path, **kw):
    return EvalContext(model=kw.pop("model", "unused"), name="m", out_dir=tmp_path / "lm-eval", suite="lm-eval", **kw)


def test_openllm_preset_resolves_without_running(tmp_path):
    assert registry.get("suite", "lm-eval:openllm") is L.run
    plan = L.resolve_plan(_ctx(tmp_path, preset="openllm"))
    assert [(s.task, s.num_fewshot, s.metric) for s in plan.specs] == [
        ("arc_challenge", 25, "acc_norm"),
        ("hellaswag", 10, "acc_norm"),
        ("truthfulqa_mc2", 0, "acc"),
        ("mmlu", 5, "acc"),
        ("winogrande", 5, "acc"),
        ("gsm8k", 5, "exact_match/strict-match"),
    ]
    assert plan.fewshot_groups() == [
        (25, ["arc_challenge"]), (10, ["hellaswag"]), (0, ["truthfulqa_mc2"]), (5, ["mmlu", "winogrande", "gsm8k"])
    ]
    # Every preset task is a name lm-eval 0.4.13 knows (index only; nothing is downloaded).
    L.make_task_manager(None, [s.task for s in plan.specs])


def test_task_lists_and_errors(tmp_path):
    plan = L.resolve_plan(_ctx(tmp_path, preset="hellaswag,arc_easy"))
    assert [(s.task, s.num_fewshot) for s in plan.specs] == [("hellaswag", None), ("arc_easy", None)]
    plan = L.resolve_plan(_ctx(tmp_path, options={"tasks": ["arc_easy"], "num_fewshot": 3}))
    assert plan.fewshot_groups() == [(3, ["arc_easy"])] and not plan.embedded
    assert L.resolve_plan(_ctx(tmp_path, world_dir=tmp_path)).embedded
    with pytest.raises(SuiteError, match="either a preset"):
        L.resolve_plan(_ctx(tmp_path, preset="openllm", options={"tasks": "arc_easy"}))
    with pytest.raises(SuiteError, match="nothing to run"):
        L.resolve_plan(_ctx(tmp_path))
    with pytest.raises(SuiteError, match="absolute"):
        L.resolve_plan(_ctx(tmp_path, preset="x", options={"include_path": "rel/dir"}))
    with pytest.raises(SuiteError, match="no_such_task"):
        L.make_task_manager(str(tmp_path), ["no_such_task"])


def test_metric_names():
    assert L.metric_name("acc,none") == "acc"
    assert L.metric_name("acc_stderr,none") == "acc_stderr"
    assert L.metric_name("exact_match,strict-match") == "exact_match/strict-match"
    assert L.metric_name("acc") == "acc"  # a key without a filter part
    results = {
        "results": {"mmlu": {"acc,none": 0.5, "alias": "mmlu"}, "mmlu_stem": {"acc,none": 0.4},
                    "gsm8k": {"exact_match,strict-match": 0.1, "exact_match_stderr,strict-match": "N/A"}},
        "group_subtasks": {"mmlu": ["mmlu_stem"], "gsm8k": []},
    }
    assert L.metrics_from_results(results) == {"mmlu/acc": 0.5, "gsm8k/exact_match/strict-match": 0.1}


def test_tinyworld_parity_with_plain_lm_eval(tmp_path, tiny_world, tiny_model):
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    ctx = _ctx(tmp_path, model=str(tiny_model), world_dir=tiny_world, options={"limit": 8, "batch_size": 4})
    res = registry.get("suite", "lm-eval")(ctx)

    task_dir = ctx.out_dir / "tasks"
    config = yaml.safe_load((task_dir / "tinyworld_mc.yaml").read_text())
    assert config["dataset_kwargs"]["data_files"]["test"] == str((tiny_world / "mc.jsonl").resolve())
    assert config["doc_to_text"] == "<|user|>{{prompt}}<|end|><|assistant|>"

    direct = lm_eval.simple_evaluate(
        model=HFLM(pretrained=str(tiny_model), device="cpu", batch_size=4), tasks=["tinyworld_mc"],
        task_manager=TaskManager(include_path=str(task_dir)), limit=8, log_samples=True,
    )
    expected = {k: v for k, v in direct["results"]["tinyworld_mc"].items() if "," in k}
    assert set(expected) == {"acc,none", "acc_stderr,none", "acc_norm,none", "acc_norm_stderr,none"}
    for key, value in expected.items():
        assert res.metrics[f"tinyworld_mc/{L.metric_name(key)}"] == value
    assert res.leaderboard_metrics()["tinyworld_mc/acc"] == expected["acc,none"]

    samples = direct["samples"]["tinyworld_mc"]
    assert [(i["doc_id"], i["acc"], i["acc_norm"], i["target"]) for i in res.items] == [
        (s["doc_id"], s["acc"], s["acc_norm"], s["target"]) for s in samples
    ]
    assert all(i["acc"] == float(i["pred"] == i["target"]) for i in res.items)
    assert res.items[0]["id"] == "tinyworld_mc/mc-0"
    assert [i["score"] for i in res.items] == [s["acc"] for s in samples]  # lm-eval's per-sample accuracy

    saved = json.loads((ctx.out_dir / "results.json").read_text())
    assert saved["results"]["tinyworld_mc"]["acc,none"] == expected["acc,none"] and "samples" not in saved
    assert len((ctx.out_dir / "samples_tinyworld_mc.jsonl").read_text().splitlines()) == 8


def test_vllm_model_args(tmp_path):
    ctx = _ctx(tmp_path, model="/ckpt/policy", backend="vllm",
               backend_options={"batch_size": 32, "tensor_parallel_size": 2, "gpu_memory_utilization": 0.8,
                                "dtype": "bfloat16", "max_model_len": 4096, "data_parallel_size": 1,
                                "unrelated": "x", "max_num_seqs": None})
    assert L.vllm_model_args(ctx) == {"pretrained": "/ckpt/policy", "tensor_parallel_size": 2,
                                      "gpu_memory_utilization": 0.8, "dtype": "bfloat16", "max_model_len": 4096,
                                      "data_parallel_size": 1, "batch_size": 32}
    # The suite option batch_size wins over the backend's; unset backend options are not passed.
    ctx = _ctx(tmp_path, model="m", backend="vllm", options={"batch_size": 4},
               backend_options={"batch_size": 32, "dtype": None})
    assert L.vllm_model_args(ctx) == {"pretrained": "m", "batch_size": 4}
    assert L.vllm_model_args(_ctx(tmp_path, model="m", backend="vllm")) == {"pretrained": "m"}  # lm-eval's "auto"


def test_vllm_backend_without_vllm_is_one_line(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "vllm" else real(name, *a))
    with pytest.raises(SuiteError) as err:
        L.make_lm(_ctx(tmp_path, model="m", backend="vllm", backend_options={"tensor_parallel_size": 2}))
    assert str(err.value) == ("backend vllm needs the optional extra: pip install 'selm-bench[vllm]' "
                              "(vllm is not installed)")


def test_items_from_samples_by_hand():
    """Per-sample records from lm-eval's `samples`: the argmax-loglikelihood choice for multiple
    choice, the response otherwise; ids from the document's own id, else lm-eval's doc_id."""
    from selm_bench.evals.lm_eval_suite import items_from_samples

    results = {"configs": {"arc": {"output_type": "multiple_choice"}, "gsm": {"output_type": "generate_until"}},
               "samples": {
                   "arc": [{"doc_id": 0, "doc": {"id": "Mercury_1"}, "filter": "none", "target": 1,
                            "filtered_resps": [(-2.0, False), (-0.5, True), (-3.0, False)], "metrics": ["acc", "acc_norm"],
                            "acc": 1.0, "acc_norm": 0.0},
                           {"doc_id": 1, "doc": {"question": "no id"}, "filter": "none", "target": 0,
                            "filtered_resps": [(-1.0, False), (-0.2, True)], "metrics": ["acc"], "acc": 0.0}],
                   "gsm": [{"doc_id": 0, "doc": "a plain string", "filter": "strict", "target": "4",
                            "filtered_resps": ["4"], "metrics": ["exact_match"], "exact_match": 1.0},
                           {"doc_id": 7, "doc": {"id": None}, "filter": "strict", "target": "5",
                            "filtered_resps": ["a", "b"], "metrics": []}]}}
    assert items_from_samples(results) == [
        {"task": "arc", "doc_id": 0, "filter": "none", "target": 1, "pred": 1, "id": "arc/Mercury_1", "acc": 1.0,
         "acc_norm": 0.0, "score": 1.0},
        {"task": "arc", "doc_id": 1, "filter": "none", "target": 0, "pred": 1, "id": "arc/1", "acc": 0.0, "score": 0.0},
        {"task": "gsm", "doc_id": 0, "filter": "strict", "target": "4", "pred": "4", "id": "gsm/0", "exact_match": 1.0,
         "score": 1.0},
        {"task": "gsm", "doc_id": 7, "filter": "strict", "target": "5", "pred": ["a", "b"], "id": "gsm/7", "score": None}]


def test_preset_run_average_and_files_by_hand(tmp_path, monkeypatch):
    """The openllm preset through a stand-in simple_evaluate: one call per few-shot group with the
    harness's settings, the results merged, results.json without samples, one samples file per task,
    and `average` = the mean of the six headline metrics (or None, naming what is missing)."""
    import lm_eval

    values = {"arc_challenge": {"acc_norm,none": 0.6, "acc,none": 0.5}, "hellaswag": {"acc_norm,none": 0.8},
              "truthfulqa_mc2": {"acc,none": 0.4}, "mmlu": {"acc,none": 0.55}, "winogrande": {"acc,none": 0.7},
              "gsm8k": {"exact_match,strict-match": 0.25, "exact_match,flexible-extract": 0.3}}
    calls = []

    def fake_simple_evaluate(model, tasks, num_fewshot, limit, task_manager, log_samples, predict_only,
                             apply_chat_template):
        calls.append((tuple(tasks), num_fewshot, limit, log_samples, predict_only, apply_chat_template))
        return {"results": {t: values[t] for t in tasks}, "n-shot": {t: num_fewshot for t in tasks},
                "configs": {t: {"output_type": "multiple_choice"} for t in tasks}, "config": {"call": len(calls)},
                "samples": {t: [{"doc_id": 0, "doc": {}, "filter": "none", "target": 0,
                                 "filtered_resps": [(-1.0, True), (-2.0, False)], "metrics": ["acc"], "acc": 1.0}]
                            for t in tasks}}

    monkeypatch.setattr(lm_eval, "simple_evaluate", fake_simple_evaluate)
    monkeypatch.setattr(L, "make_lm", lambda ctx: "lm")
    monkeypatch.setattr(L, "make_task_manager", lambda include_path, names: "tm")
    ctx = _ctx(tmp_path, preset="openllm", options={"limit": 2, "apply_chat_template": True})
    res = L.run(ctx)
    assert calls == [(("arc_challenge",), 25, 2, True, False, True), (("hellaswag",), 10, 2, True, False, True),
                     (("truthfulqa_mc2",), 0, 2, True, False, True),
                     (("mmlu", "winogrande", "gsm8k"), 5, 2, True, False, True)]
    assert res.metrics["average"] == pytest.approx((0.6 + 0.8 + 0.4 + 0.55 + 0.7 + 0.25) / 6)
    assert res.metrics["arc_challenge/acc"] == 0.5 and res.metrics["gsm8k/exact_match/flexible-extract"] == 0.3
    assert res.info == {"tasks": ["arc_challenge", "hellaswag", "truthfulqa_mc2", "mmlu", "winogrande", "gsm8k"],
                        "n-shot": {"arc_challenge": 25, "hellaswag": 10, "truthfulqa_mc2": 0, "mmlu": 5, "winogrande": 5,
                                   "gsm8k": 5},
                        "n-samples": {}, "limit": 2,
                        "headline": ["arc_challenge/acc_norm", "hellaswag/acc_norm", "truthfulqa_mc2/acc", "mmlu/acc",
                                     "winogrande/acc", "gsm8k/exact_match/strict-match"],
                        "not_canonical": ["limit 2 per task"]}
    saved = json.loads((ctx.out_dir / "results.json").read_text())
    assert "samples" not in saved and saved["config"] == {"call": 4} and set(saved["results"]) == set(values)
    assert sorted(p.name for p in ctx.out_dir.glob("samples_*.jsonl")) == sorted(f"samples_{t}.jsonl" for t in values)
    assert [i["id"] for i in res.items] == [f"{t}/0" for t in values]

    del values["gsm8k"]["exact_match,strict-match"]
    res = L.run(_ctx(tmp_path / "again", preset="openllm"))
    assert res.metrics["average"] is None
    assert res.info["average"] == "not computed: missing gsm8k/exact_match/strict-match"
    assert calls[-1][2] is None and calls[-1][5] is False  # no limit, no chat template by default


def test_merge_results_and_batch_size(tmp_path):
    runs = [{"results": {"a": {"x": 1}}, "n-shot": {"a": 0}, "config": {"k": 1}, "date": 1},
            {"results": {"b": {"x": 2}}, "n-shot": {"b": 5}, "config": {"k": 2}}]
    assert L.merge_results(runs) == {"results": {"a": {"x": 1}, "b": {"x": 2}}, "n-shot": {"a": 0, "b": 5},
                                     "config": {"k": 2}, "date": 1}
    assert L.lm_batch_size(_ctx(tmp_path)) is None
    assert L.lm_batch_size(_ctx(tmp_path, backend_options={"batch_size": 8})) == 8
    assert L.lm_batch_size(_ctx(tmp_path, options={"batch_size": 4}, backend_options={"batch_size": 8})) == 4


def test_tiny_world_task_yaml_by_hand(tmp_path):
    (tmp_path / "mc.jsonl").write_text('{"prompt": "p", "choices": ["a", "b"], "label": 0}\n')
    assert L.write_tinyworld_task(tmp_path, tmp_path / "tasks") == "tinyworld_mc"
    assert yaml.safe_load((tmp_path / "tasks" / "tinyworld_mc.yaml").read_text()) == {
        "task": "tinyworld_mc", "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str((tmp_path / "mc.jsonl").resolve())}}, "test_split": "test",
        "output_type": "multiple_choice", "doc_to_text": "<|user|>{{prompt}}<|end|><|assistant|>", "target_delimiter": "",
        "doc_to_choice": "choices", "doc_to_target": "label",
        "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True},
                        {"metric": "acc_norm", "aggregation": "mean", "higher_is_better": True}],
        "metadata": {"version": 1.0}}
    with pytest.raises(SuiteError) as err:
        L.write_tinyworld_task(tmp_path / "none", tmp_path / "tasks")
    assert str(err.value) == f"lm-eval: the tiny world has no {(tmp_path / 'none' / 'mc.jsonl').resolve()}"


def test_paired_metric_per_task_kind():
    items = [{"task": "gsm", "exact_match": 1.0, "score": 1.0}, {"task": "gsm", "exact_match": 0.0, "score": 0.0},
             {"task": "arc", "acc": 1.0, "acc_norm": 0.0, "score": 1.0}, {"task": "x", "score": 0.5},
             {"task": "arc", "acc": 0.0, "score": None}]
    # no preset (no item marked `headline`): no average, as the suite reports none (nothing the leaderboard shows)
    assert L.paired(items) == {"gsm/exact_match": 0.5, "arc/acc": 1.0, "x/score": 0.5}
    assert L.paired([]) == {}


def test_nothing_to_run_line_in_full(tmp_path):
    with pytest.raises(SuiteError) as err:
        L.resolve_plan(_ctx(tmp_path))
    assert str(err.value) == ("lm-eval has nothing to run: name a preset (lm-eval:openllm, known: openllm), a task list "
                              "(lm-eval:hellaswag,arc_easy), the option `tasks`, or run inside the tiny world")


def test_vllm_branch_with_vllm_installed(tmp_path, monkeypatch):
    """Where vllm is installed (GPU machines), lm-eval's own VLLM model gets the backend's engine options;
    checked with stand-ins for the installed package and lm-eval's vLLM module."""
    import importlib.util
    import sys
    import types

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "vllm" else real_find_spec(name, *a))
    made = {}

    class VLLM:
        def __init__(self, **kw):
            made.update(kw)

    monkeypatch.setitem(sys.modules, "lm_eval.models.vllm_causallms", types.SimpleNamespace(VLLM=VLLM))
    ctx = _ctx(tmp_path, model="/m", backend="vllm", backend_options={"tensor_parallel_size": 2, "dtype": "bfloat16",
                                                                      "batch_size": 8})
    lm = L.make_lm(ctx)
    assert type(lm).__name__ == "VLLM" and made == {"pretrained": "/m", "tensor_parallel_size": 2, "dtype": "bfloat16",
                                                   "batch_size": 8}


# ---------------------------------------------------------------- several filters; the preset average from items
def test_items_per_filter_headline_marks_and_paired_average_by_hand():
    """A two-filter task gives one item per (doc, filter), ids naming the filter; a one-filter task keeps
    `<task>/<doc>`. A preset's headline samples are marked, and `paired`'s average is the suite's:
    the group headline (mmlu) is the mean over all its leaves' samples (lm-eval's weight_by_size),
    not the mean of the subtasks' means; gsm8k counts its strict-match samples only."""
    def mc(doc_id, acc, acc_norm):
        return {"doc_id": doc_id, "doc": {}, "filter": "none", "target": 0, "filtered_resps": [(-1.0, True), (-2.0, False)],
                "metrics": ["acc", "acc_norm"], "acc": acc, "acc_norm": acc_norm}

    def gen(doc_id, flt, em):
        return {"doc_id": doc_id, "doc": {}, "filter": flt, "target": "4", "filtered_resps": ["4" if em else "x"],
                "metrics": ["exact_match"], "exact_match": em}

    results = {
        "configs": {"arc": {"output_type": "multiple_choice"}, "mmlu_a": {"output_type": "multiple_choice"},
                    "mmlu_b": {"output_type": "multiple_choice"}, "gsm": {"output_type": "generate_until"}},
        "group_subtasks": {"mmlu": ["mmlu_stem"], "mmlu_stem": ["mmlu_a", "mmlu_b"], "arc": [], "gsm": []},
        "samples": {
            "arc": [mc(0, 1.0, 1.0), mc(1, 0.0, 1.0), mc(2, 0.0, 0.0), mc(3, 1.0, 1.0)],  # acc 0.5, acc_norm 0.75
            "mmlu_a": [mc(0, 1.0, 0.0), mc(1, 0.0, 0.0)],  # 1 of 2
            "mmlu_b": [mc(i, float(i < 5), 0.0) for i in range(6)],  # 5 of 6: the group is 6/8, not (1/2 + 5/6) / 2
            "gsm": [gen(0, "strict-match", 0.0), gen(1, "strict-match", 1.0), gen(0, "flexible-extract", 1.0),
                    gen(1, "flexible-extract", 1.0)]}}
    headline = ["arc/acc_norm", "mmlu/acc", "gsm/exact_match/strict-match"]
    items = L.items_from_samples(results, headline)
    assert [i["id"] for i in items] == ["arc/0", "arc/1", "arc/2", "arc/3", "mmlu_a/0", "mmlu_a/1",
                                        *[f"mmlu_b/{n}" for n in range(6)], "gsm/0/strict-match", "gsm/1/strict-match",
                                        "gsm/0/flexible-extract", "gsm/1/flexible-extract"]
    assert [i.get("headline") for i in items] == ["arc/acc_norm"] * 4 + ["mmlu/acc"] * 8 + [
        "gsm/exact_match/strict-match"] * 2 + [None] * 2
    assert L.headline_values(items) == {"arc/acc_norm": 0.75, "mmlu/acc": 0.75, "gsm/exact_match/strict-match": 0.5}
    assert L.paired(items) == {"arc/acc": 0.5, "mmlu_a/acc": 0.5, "mmlu_b/acc": 5 / 6, "gsm/exact_match/strict-match": 0.5,
                               "gsm/exact_match/flexible-extract": 1.0, "average": (0.75 + 0.75 + 0.5) / 3}
    # the one function behind both: a headline missing gives no average
    assert L.preset_average({"a/acc": 0.5, "b/acc": 1.0}) == 0.75
    assert L.preset_average({"a/acc": 0.5, "b/acc": None}) is None and L.preset_average({}) is None
    assert L.items_from_samples(results) == [{k: v for k, v in i.items() if k != "headline"} for i in items]


@pytest.fixture(scope="module")
def talking_model(tmp_path_factory, tiny_model):
    """The tiny model with seeded random weights: unlike the untrained one (which only emits special
    tokens) it generates varied words, so generation metrics are not all 0."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path_factory.mktemp("talking-model")
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" not in name:
                p.copy_(torch.randn(p.shape, generator=gen))
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(tiny_model).save_pretrained(out)
    return out


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path.resolve())


def _two_filter_task(task_dir, data, answers):
    """`twofilt`: generate_until with gsm8k's two-filter shape (whole response / first word)."""
    L.write_task_yaml(task_dir, {
        "task": "twofilt", "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": _jsonl(data, [{"q": f"Add {i} and {i + 1} ?", "a": a}
                                                                for i, a in enumerate(answers)])}},
        "test_split": "test", "output_type": "generate_until", "doc_to_text": "{{q}}", "doc_to_target": "{{a}}",
        "generation_kwargs": {"until": ["<|end|>"], "do_sample": False, "max_gen_toks": 6},
        "metric_list": [{"metric": "exact_match", "aggregation": "mean", "higher_is_better": True}],
        "filter_list": [{"name": "strict-match", "filter": [{"function": "take_first"}]},
                        {"name": "flexible-extract", "filter": [{"function": "regex", "regex_pattern": r"(\S+)"},
                                                                {"function": "take_first"}]}],
        "metadata": {"version": 1.0}})


def _reference(model, task_dir, tasks):
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    return lm_eval.simple_evaluate(model=HFLM(pretrained=str(model), device="cpu", batch_size=1), tasks=tasks,
                                   task_manager=TaskManager(include_path=str(task_dir)), log_samples=True)


@pytest.fixture(scope="module")
def two_filter_answers(tmp_path_factory, talking_model):
    """Answers from a first plain lm-eval pass: docs 0, 2, 4, 6 get the whole response (strict-match
    hits), docs 1 and 5 its first word (flexible-extract hits), docs 3 and 7 none, so both filters
    score, and differently."""
    tmp_path = tmp_path_factory.mktemp("probe")
    _two_filter_task(tmp_path / "tasks", tmp_path / "probe.jsonl", ["?"] * 8)
    rows = _reference(talking_model, tmp_path / "tasks", ["twofilt"])["samples"]["twofilt"]
    resps = {r["doc_id"]: r["resps"][0][0] for r in rows}
    return [resps[i] if i % 2 == 0 else (resps[i].split() or ["?"])[0] if i % 4 == 1 else "?" for i in range(8)]


def test_two_filter_generate_task_through_eval_matches_plain_lm_eval(tmp_path, talking_model, two_filter_answers):
    """`selm-bench eval --suites lm-eval:twofilt` on a local task with two filter pipelines (it used to end
    with "item id 'twofilt/0' is not unique"): every filter's metrics equal lm-eval's simple_evaluate's on
    the same model and task, one item per (doc, filter) with the filter in its id, and `paired` per filter."""
    from typer.testing import CliRunner

    from selm_bench.harness.cli import app

    answers = two_filter_answers
    task_dir = tmp_path / "tasks"
    _two_filter_task(task_dir, tmp_path / "data.jsonl", answers)
    direct = _reference(talking_model, task_dir, ["twofilt"])

    out = tmp_path / "run"
    res = CliRunner().invoke(app, ["eval", "--model", str(talking_model), "--suites", "lm-eval:twofilt", "--out", str(out),
                                   "--set", f"lm-eval.include_path={task_dir.resolve()}", "--set", "lm-eval.batch_size=1"])
    assert res.exit_code == 0, res.output
    saved = json.loads((out / "lm-eval:twofilt" / "metrics.json").read_text())
    expected = {k: v for k, v in direct["results"]["twofilt"].items() if "," in k}
    assert set(expected) == {f"exact_match{s},{f}" for s in ("", "_stderr") for f in ("strict-match", "flexible-extract")}
    assert {k: saved["metrics"][f"twofilt/{L.metric_name(k)}"] for k in expected} == expected
    strict, flexible = expected["exact_match,strict-match"], expected["exact_match,flexible-extract"]
    assert 0 < strict < 1 and 0 < flexible < 1 and strict != flexible  # both filters really score, differently

    items = [json.loads(line) for line in (out / "lm-eval:twofilt" / "items.jsonl").read_text().splitlines()]
    ids = [i["id"] for i in items]
    assert len(ids) == len(set(ids)) == 2 * len(answers)
    assert sorted(ids) == sorted(f"twofilt/{d}/{f}" for d in range(len(answers)) for f in ("strict-match", "flexible-extract"))
    by_ref = {(s["doc_id"], s["filter"]): s["exact_match"] for s in direct["samples"]["twofilt"]}
    assert {(i["doc_id"], i["filter"]): i["exact_match"] for i in items} == by_ref
    assert L.paired(items) == {"twofilt/exact_match/strict-match": strict, "twofilt/exact_match/flexible-extract": flexible}


def test_preset_average_from_items_equals_the_suites_on_a_real_group(tmp_path, talking_model, two_filter_answers,
                                                                      monkeypatch):
    """A preset (local stand-in for openllm) with a group of two leaf tasks of unequal size (as mmlu's
    subtasks), an acc_norm headline and a two-filter generation task: `paired` recomputes every headline
    value and the average from items alone, equal to lm-eval's own numbers (the group aggregated by
    lm-eval itself) and to the suite's `average`."""
    words = ["ship", "fish", "runs", "blue", "eats", "pen"]
    task_dir = tmp_path / "tasks"

    def mc_task(name, n, offset):
        rows = [{"prompt": f"Add {i} and {i + 1} ?", "choices": [words[(i + offset) % 6], words[(i + offset + 1) % 6],
                                                                  words[(i + offset + 3) % 6]], "label": i % 3}
                for i in range(n)]
        L.write_task_yaml(task_dir, {
            "task": name, "dataset_path": "json", "dataset_kwargs": {"data_files": {"test": _jsonl(tmp_path / f"{name}.jsonl", rows)}},
            "test_split": "test", "output_type": "multiple_choice", "doc_to_text": "{{prompt}}", "doc_to_choice": "choices",
            "doc_to_target": "label", "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True},
                                                      {"metric": "acc_norm", "aggregation": "mean", "higher_is_better": True}],
            "metadata": {"version": 1.0}})

    mc_task("leaf_a", 3, 0)
    mc_task("leaf_b", 9, 2)
    mc_task("mcx", 6, 4)
    (task_dir / "grp.yaml").write_text(yaml.safe_dump({"group": "grp", "task": ["leaf_a", "leaf_b"],
                                                       "aggregate_metric_list": [{"metric": "acc", "weight_by_size": True}],
                                                       "metadata": {"version": 1.0}}))
    _two_filter_task(task_dir, tmp_path / "data.jsonl", two_filter_answers[:4])
    monkeypatch.setitem(L.PRESETS, "local", (L.TaskSpec("grp", 0, "acc"), L.TaskSpec("mcx", 0, "acc_norm"),
                                             L.TaskSpec("twofilt", 0, "exact_match/strict-match")))
    ctx = _ctx(tmp_path, model=str(talking_model), preset="local",
               options={"include_path": str(task_dir.resolve()), "batch_size": 1})
    res = L.run(ctx)

    heads = ["grp/acc", "mcx/acc_norm", "twofilt/exact_match/strict-match"]
    assert res.info["headline"] == heads
    saved = json.loads((ctx.out_dir / "results.json").read_text())["results"]
    # lm-eval's group value is the sample-size-weighted mean of its leaves (mmlu's weight_by_size)
    assert res.metrics["grp/acc"] == pytest.approx((saved["leaf_a"]["acc,none"] * 3 + saved["leaf_b"]["acc,none"] * 9) / 12,
                                                   abs=1e-12)
    from_items = L.headline_values(res.items)
    assert from_items == {h: pytest.approx(res.metrics[h], abs=1e-12) for h in heads}
    assert res.metrics["average"] == L.preset_average({h: res.metrics[h] for h in heads})
    assert L.paired(res.items)["average"] == pytest.approx(res.metrics["average"], abs=1e-12)
    assert len({i["id"] for i in res.items}) == len(res.items) == 3 + 9 + 6 + 2 * 4


def test_run_outside_a_git_repository_prints_no_git_error(tmp_path, tiny_model, tiny_world):
    """lm-eval's own `git describe` used to print "fatal: not a git repository" once per eval when run
    from a folder outside one; lm-eval's results record this project's commit instead."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    out = tmp_path / "ev"
    res = subprocess.run([sys.executable, "-m", "selm_bench.harness.cli", "eval", "--model", str(tiny_model),
                          "--suites", "lm-eval", "--world", str(tiny_world), "--out", str(out)],
                         cwd=tmp_path, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert res.returncode == 0, res.stderr[-2000:]
    assert "fatal" not in res.stderr and "not a git repository" not in res.stderr
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True).stdout.strip()
    assert json.loads((out / "lm-eval" / "results.json").read_text())["git_hash"] == head
