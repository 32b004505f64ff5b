"""The lm-eval suite (evals/lm_eval_suite.py): plans from presets, task lists and the tiny world;
the calls into lm-eval (stand-ins for simple_evaluate, HFLM, vLLM and TaskManager, and the real
thing on the tiny model); per-sample items, metrics, the preset average and the files it saves."""

import dataclasses
import json
import os
import sys
import types
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
    for tasks in ("arc_easy", ["arc_easy"]):
        with pytest.raises(SuiteError, match="either a preset") as err:
            L.resolve_plan(_ctx(tmp_path, preset="openllm", options={"tasks": tasks}))
        assert "'openllm'" in str(err.value) and "`tasks`" in str(err.value)
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


def _missing(reason):
    """The metrics a "not computed: missing a, b" reason names, in order."""
    head, _, names = reason.partition("missing ")
    assert head.startswith("not computed")
    return names.split(", ")


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
    assert "\n" not in str(err.value) and "pip install 'selm-bench[vllm]'" in str(err.value)


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
    assert _missing(res.info["average"]) == ["gsm8k/exact_match/strict-match"]
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
    assert str(err.value).startswith("lm-eval") and str((tmp_path / "none" / "mc.jsonl").resolve()) in str(err.value)


def test_paired_metric_per_task_kind():
    items = [{"task": "gsm", "exact_match": 1.0, "score": 1.0}, {"task": "gsm", "exact_match": 0.0, "score": 0.0},
             {"task": "arc", "acc": 1.0, "acc_norm": 0.0, "score": 1.0}, {"task": "x", "score": 0.5},
             {"task": "arc", "acc": 0.0, "score": None}]
    # no preset (no item marked `headline`): no average, as the suite reports none (nothing the leaderboard shows)
    assert L.paired(items) == {"gsm/exact_match": 0.5, "arc/acc": 1.0, "x/score": 0.5}
    assert L.paired([]) == {}


def test_nothing_to_run_names_every_way_to_give_tasks(tmp_path):
    with pytest.raises(SuiteError) as err:
        L.resolve_plan(_ctx(tmp_path))
    msg = str(err.value)
    assert msg.startswith("lm-eval has nothing to run") and "\n" not in msg
    assert all(t in msg for t in ("known: openllm", "lm-eval:hellaswag,arc_easy", "`tasks`", "tiny world"))


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


def _fake_simple_evaluate(monkeypatch, reply):
    """lm_eval.simple_evaluate replaced: records its keyword arguments, answers reply(kwargs)."""
    import lm_eval

    calls = []

    def fake(**kw):
        calls.append(kw)
        return reply(kw)

    monkeypatch.setattr(lm_eval, "simple_evaluate", fake)
    return calls


# ---------------------------------------------------------------- plans
def test_taskspec_and_plan_defaults_and_a_frozen_spec():
    spec = L.TaskSpec("hellaswag")
    assert (spec.task, spec.num_fewshot, spec.metric) == ("hellaswag", None, None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.num_fewshot = 3
    plan = L.Plan([spec])
    assert (plan.include_path, plan.embedded, plan.preset) == (None, False, None)


def test_resolve_plan_for_the_tiny_world_a_task_string_and_a_preset(tmp_path):
    # the tiny world's embedded task: acc headline, the option's few-shot count, no include_path
    assert L.resolve_plan(_ctx(tmp_path, world_dir=tmp_path, options={"num_fewshot": 2})) == L.Plan(
        [L.TaskSpec("tinyworld_mc", 2, "acc")], None, True, None)
    # a comma string of tasks (blanks and empty parts dropped), with include_path carried into the plan
    assert L.resolve_plan(_ctx(tmp_path, options={"tasks": " a , b,", "include_path": "/abs/tasks"})) == L.Plan(
        [L.TaskSpec("a", None, None), L.TaskSpec("b", None, None)], "/abs/tasks", False, None)
    plan = L.resolve_plan(_ctx(tmp_path, preset="openllm", options={"include_path": "/abs/x"}))
    assert (plan.include_path, plan.embedded, plan.preset, len(plan.specs)) == ("/abs/x", False, "openllm", 6)


# ---------------------------------------------------------------- files
def test_write_task_yaml_keeps_key_order_and_unicode(tmp_path):
    path = L.write_task_yaml(tmp_path, {"task": "t1", "zeta": 1, "alpha": "café"})
    assert path == tmp_path / "t1.yaml"
    assert path.read_text() == "task: t1\nzeta: 1\nalpha: café\n"  # insertion order, é kept as is


def test_save_outputs_writes_results_without_samples_and_one_jsonl_per_task(tmp_path):
    samples = {"t": [{"doc_id": 0, "x": "é"}, {"doc_id": 1}], "u": []}
    L.save_outputs(tmp_path, {"results": {"t": {"acc,none": 0.5}}, "note": "café", "samples": samples})
    # results.json: indented by 2, non-ASCII kept, a final newline; samples_<task>.jsonl: one record a line
    expected = {"results": {"t": {"acc,none": 0.5}}, "note": "café"}
    assert (tmp_path / "results.json").read_text() == json.dumps(expected, indent=2, ensure_ascii=False) + "\n"
    assert (tmp_path / "samples_t.jsonl").read_text() == "".join(
        json.dumps(r, ensure_ascii=False) + "\n" for r in samples["t"])
    assert (tmp_path / "samples_u.jsonl").read_text() == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json", "samples_t.jsonl", "samples_u.jsonl"]


def test_merge_results_merges_every_per_task_table():
    per_task = ("results", "groups", "group_subtasks", "configs", "versions", "n-shot", "higher_is_better",
                "n-samples", "samples")
    first = {**{k: {"a": 1} for k in per_task}, "date": 1, "config": {"call": 1}}
    second = {**{k: {"b": 2} for k in per_task}, "date": 2}
    assert L.merge_results([first, second]) == {**{k: {"a": 1, "b": 2} for k in per_task}, "date": 2,
                                                 "config": {"call": 1}}


# ---------------------------------------------------------------- models, task managers, calls
def test_vllm_model_args_pass_trust_remote_code_only_when_set(tmp_path):
    on = _ctx(tmp_path, model="/ckpt", backend="vllm", backend_options={"trust_remote_code": True})
    assert L.vllm_model_args(on) == {"pretrained": "/ckpt", "trust_remote_code": True}
    off = _ctx(tmp_path, model="/ckpt", backend="vllm", backend_options={"trust_remote_code": False})
    assert L.vllm_model_args(off) == {"pretrained": "/ckpt"}


def test_without_bars_forces_quiet_request_loops():
    class Base:
        def __init__(self):
            self.seen = []

        def loglikelihood(self, requests, disable_tqdm=False):
            self.seen.append(("ll", requests, disable_tqdm))
            return "ll-out"

        def loglikelihood_rolling(self, requests, disable_tqdm=False):
            self.seen.append(("rolling", requests, disable_tqdm))
            return "rolling-out"

        def generate_until(self, requests, disable_tqdm=False):
            self.seen.append(("gen", requests, disable_tqdm))
            return "gen-out"

    Quiet = L.without_bars(Base)
    assert issubclass(Quiet, Base) and (Quiet.__name__, Quiet.__qualname__) == ("Base", "Base")
    lm = Quiet()
    assert (lm.loglikelihood(["r1"]), lm.loglikelihood_rolling(["r2"], disable_tqdm=False),
            lm.generate_until(["r3"])) == ("ll-out", "rolling-out", "gen-out")
    assert lm.seen == [("ll", ["r1"], True), ("rolling", ["r2"], True), ("gen", ["r3"], True)]


def test_make_lm_hf_settings_and_batch_size(tmp_path, monkeypatch):
    made = []

    class HFLM:
        def __init__(self, **kw):
            made.append(kw)

    monkeypatch.setitem(sys.modules, "lm_eval.models.huggingface", types.SimpleNamespace(HFLM=HFLM))
    lm = L.make_lm(_ctx(tmp_path, model="/ckpt"))
    assert type(lm).__name__ == "HFLM" and isinstance(lm, HFLM)
    L.make_lm(_ctx(tmp_path, model="/ckpt", device="cuda:1", backend_options={"batch_size": 8, "trust_remote_code": True}))
    L.make_lm(_ctx(tmp_path, model="/ckpt", options={"batch_size": 4}, backend_options={"batch_size": 8}))
    assert made == [
        {"pretrained": "/ckpt", "device": "cpu", "trust_remote_code": False, "batch_size": 16},  # HF_BATCH_SIZE
        {"pretrained": "/ckpt", "device": "cuda:1", "trust_remote_code": True, "batch_size": 8},
        {"pretrained": "/ckpt", "device": "cpu", "trust_remote_code": False, "batch_size": 4},
    ]


class _FakeTaskManager:
    """Local index: the two local tasks; built-ins (include_defaults) add hellaswag and arc_easy."""
    made = []

    def __init__(self, include_path=None, include_defaults=True):
        self.args = (include_path, include_defaults)
        _FakeTaskManager.made.append(self.args)
        self.all_tasks = (["local_a", "local_b"] if include_path else []) + (
            ["hellaswag", "arc_easy"] if include_defaults else [])


def test_make_task_manager_prefers_the_local_index_and_names_unknown_tasks(monkeypatch):
    monkeypatch.setitem(sys.modules, "lm_eval.tasks", types.SimpleNamespace(TaskManager=_FakeTaskManager))
    monkeypatch.setattr(_FakeTaskManager, "made", [])
    tm = L.make_task_manager("/t", ["local_a", "local_b"])  # all local: the local-only index, nothing else
    assert tm.args == ("/t", False) and _FakeTaskManager.made == [("/t", False)]

    _FakeTaskManager.made.clear()
    tm = L.make_task_manager(Path("/t"), ["local_a", "hellaswag"])  # a built-in too: the full index
    assert tm.args == ("/t", True) and _FakeTaskManager.made == [("/t", False), ("/t", True)]

    _FakeTaskManager.made.clear()
    tm = L.make_task_manager(None, ["hellaswag"])
    assert tm.args == (None, True) and _FakeTaskManager.made == [(None, True)]

    with pytest.raises(SuiteError) as err:
        L.make_task_manager(None, ["nope", "hellaswag", "gone"])
    msg = str(err.value)
    assert "nope, gone" in msg and "hellaswag" not in msg  # the unknown ones, in the order given
    assert "lm-eval ls tasks" in msg and "include_path" in msg  # where to look


def test_evaluate_calls_simple_evaluate_with_the_harness_settings(tmp_path, monkeypatch):
    calls = _fake_simple_evaluate(monkeypatch, lambda kw: {"results": {}})
    assert L.evaluate(_ctx(tmp_path), "LM", "TM", ["t"], None) == {"results": {}}
    assert calls == [{"model": "LM", "tasks": ["t"], "num_fewshot": None, "limit": None, "task_manager": "TM",
                      "log_samples": True, "predict_only": False, "apply_chat_template": False}]
    _fake_simple_evaluate(monkeypatch, lambda kw: None)  # what lm-eval returns off rank 0
    with pytest.raises(SuiteError) as err:
        L.evaluate(_ctx(tmp_path), "LM", "TM", ["t"], 0)
    assert "no results" in str(err.value) and "rank 0" in str(err.value)


def test_run_local_task_uses_the_given_lm_and_saves(tmp_path, monkeypatch):
    managers, made = [], []
    monkeypatch.setattr(L, "make_task_manager", lambda path, names: managers.append((path, names)) or "TM")
    monkeypatch.setattr(L, "make_lm", lambda ctx: made.append(ctx) or "MADE")
    calls = _fake_simple_evaluate(monkeypatch, lambda kw: {"results": {"x": {"acc,none": 1.0}}})
    ctx = _ctx(tmp_path)
    out = L.run_local_task(ctx, tmp_path / "tasks", ["x"], 3, lm="GIVEN")
    assert out == {"results": {"x": {"acc,none": 1.0}}}
    assert managers == [((tmp_path / "tasks").resolve(), ["x"])] and made == []
    assert calls == [{"model": "GIVEN", "tasks": ["x"], "num_fewshot": 3, "limit": None, "task_manager": "TM",
                      "log_samples": True, "predict_only": False, "apply_chat_template": False}]
    assert json.loads((ctx.out_dir / "results.json").read_text()) == {"results": {"x": {"acc,none": 1.0}}}
    L.run_local_task(ctx, tmp_path / "tasks", ["x"], limit=2, predict_only=True)  # no lm given: one is made
    assert made == [ctx] and calls[-1]["model"] == "MADE"
    assert (calls[-1]["num_fewshot"], calls[-1]["limit"], calls[-1]["predict_only"]) == (None, 2, True)


# ---------------------------------------------------------------- results -> items, metrics
def test_prediction_is_the_loglikelihood_argmax_not_the_greedy_flag():
    results = {"configs": {"mc": {"output_type": "multiple_choice"}, "plain": {}},
               "samples": {
                   # no choice is greedy; the highest log-likelihood (-1.0) is choice 1
                   "mc": [{"doc_id": 3, "doc": {}, "filter": "none", "target": 1,
                           "filtered_resps": [(-3.0, False), (-1.0, False), (-2.0, False)], "metrics": ["acc"],
                           "acc": 1.0}],
                   # a config without output_type: the filtered response itself
                   "plain": [{"doc_id": 0, "doc": {"id": "p-9"}, "filter": "none", "target": "x",
                              "filtered_resps": ["x"], "metrics": ["exact_match"], "exact_match": 1.0}]}}
    assert L.items_from_samples(results) == [
        {"task": "mc", "doc_id": 3, "filter": "none", "target": 1, "pred": 1, "id": "mc/3", "acc": 1.0, "score": 1.0},
        {"task": "plain", "doc_id": 0, "filter": "none", "target": "x", "pred": "x", "id": "plain/p-9",
         "exact_match": 1.0, "score": 1.0}]


def test_paired_names_an_acc_norm_only_task():
    items = [{"task": "hs", "acc_norm": 1.0, "score": 1.0}, {"task": "hs", "acc_norm": 0.0, "score": 0.0}]
    assert L.paired(items) == {"hs/acc_norm": 0.5}  # no preset: no average


def test_run_in_the_tiny_world_writes_its_task_and_reports_counts(tmp_path, monkeypatch):
    (tmp_path / "world").mkdir()
    (tmp_path / "world" / "mc.jsonl").write_text('{"prompt": "p", "choices": ["a", "b"], "label": 0}\n')
    managers = []
    monkeypatch.setattr(L, "make_task_manager", lambda path, names: managers.append((path, names)) or "TM")
    monkeypatch.setattr(L, "make_lm", lambda ctx: "LM")
    calls = _fake_simple_evaluate(monkeypatch, lambda kw: {
        "results": {"tinyworld_mc": {"acc,none": 0.75, "alias": "tinyworld_mc"}}, "n-shot": {"tinyworld_mc": 0},
        "n-samples": {"tinyworld_mc": {"original": 4, "effective": 4}}, "configs": {}, "samples": {}})
    ctx = _ctx(tmp_path, world_dir=tmp_path / "world")
    res = L.run(ctx)
    tasks = (ctx.out_dir / "tasks").resolve()
    assert managers == [(str(tasks), ["tinyworld_mc"])] and (tasks / "tinyworld_mc.yaml").is_file()
    assert [(c["tasks"], c["num_fewshot"], c["limit"]) for c in calls] == [(["tinyworld_mc"], None, None)]
    assert res.metrics == {"tinyworld_mc/acc": 0.75} and res.items == []
    assert res.info == {"tasks": ["tinyworld_mc"], "n-shot": {"tinyworld_mc": 0},
                        "n-samples": {"tinyworld_mc": {"original": 4, "effective": 4}}, "limit": None,
                        "not_canonical": []}


def test_run_with_a_task_list_passes_include_path_and_marks_the_run_not_canonical(tmp_path, monkeypatch):
    managers = []
    monkeypatch.setattr(L, "make_task_manager", lambda path, names: managers.append((path, names)) or "TM")
    monkeypatch.setattr(L, "make_lm", lambda ctx: "LM")
    _fake_simple_evaluate(monkeypatch, lambda kw: {"results": {t: {"acc,none": 0.5} for t in kw["tasks"]}})
    res = L.run(_ctx(tmp_path, options={"tasks": "a,b", "include_path": "/abs/tasks", "limit": 3}))
    assert managers == [("/abs/tasks", ["a", "b"])]
    assert res.metrics == {"a/acc": 0.5, "b/acc": 0.5}  # no preset: no average
    assert res.info == {"tasks": ["a", "b"], "n-shot": {}, "n-samples": {}, "limit": 3,
                        "not_canonical": ["local tasks", "limit 3 per task"]}


def test_run_preset_average_names_every_missing_metric(tmp_path, monkeypatch):
    monkeypatch.setattr(L, "make_task_manager", lambda path, names: "TM")
    monkeypatch.setattr(L, "make_lm", lambda ctx: "LM")
    _fake_simple_evaluate(monkeypatch, lambda kw: {"results": {t: {} for t in kw["tasks"]}})
    res = L.run(_ctx(tmp_path, preset="openllm"))
    assert res.metrics == {"average": None}
    assert _missing(res.info["average"]) == ["arc_challenge/acc_norm", "hellaswag/acc_norm", "truthfulqa_mc2/acc",
                                             "mmlu/acc", "winogrande/acc", "gsm8k/exact_match/strict-match"]
