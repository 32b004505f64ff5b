import json

import pytest
import yaml

from selm_bench.evals import lm_eval_suite as L
from selm_bench.evals.base import EvalContext, SuiteError
from selm_bench.harness import registry


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
                                     "winogrande/acc", "gsm8k/exact_match/strict-match"]}
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
    assert L.paired(items) == {"gsm/exact_match": 0.5, "arc/acc": 1.0, "x/score": 0.5, "average": (0.5 + 1.0 + 0.5) / 3}
    assert L.paired([]) == {"average": None}


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
