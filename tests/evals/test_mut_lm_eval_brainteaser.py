"""lm-eval and BrainTeaser suites, whole outputs by hand: plans, option bounds, task files, the
lm-eval calls (stand-ins for simple_evaluate, HFLM and TaskManager), the generate and loglikelihood
paths of BrainTeaser (a fake generator, a fake run_local_task) and their exact records, metrics and
submission files. Every expected value is worked out from the inputs and the modules' docstrings."""

import dataclasses
import json
import sys
import types
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from selm_bench.evals import brainteaser as B
from selm_bench.evals import lm_eval_suite as L
from selm_bench.evals.base import EvalContext, SuiteError
from selm_bench.harness.core import registry
from selm_bench.harness.world import write_jsonl

BT_SOURCE = "github.com/1171-jpg/BrainTeaser, data/BTDATA.zip (the zip password is in that repo's README)"
LETTER_LINE = "Answer with the letter of the correct option."


def _ctx(tmp_path, **kw):
    return EvalContext(model=kw.pop("model", "unused"), name="m", out_dir=tmp_path / "lm-eval", suite="lm-eval", **kw)


def _fake_simple_evaluate(monkeypatch, reply):
    """lm_eval.simple_evaluate replaced: records its keyword arguments, answers reply(kwargs)."""
    import lm_eval

    calls = []

    def fake(**kw):
        calls.append(kw)
        return reply(kw)

    monkeypatch.setattr(lm_eval, "simple_evaluate", fake)
    return calls


# ================================================================ lm-eval: plans and options
def test_taskspec_and_plan_defaults_and_frozen_spec():
    spec = L.TaskSpec("hellaswag")
    assert (spec.task, spec.num_fewshot, spec.metric) == ("hellaswag", None, None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.num_fewshot = 3
    plan = L.Plan([spec])
    assert (plan.include_path, plan.embedded, plan.preset) == (None, False, None)


def test_resolve_plan_whole_plans(tmp_path):
    # the tiny world's embedded task: acc headline, the option's few-shot count, no include_path
    assert L.resolve_plan(_ctx(tmp_path, world_dir=tmp_path, options={"num_fewshot": 2})) == L.Plan(
        [L.TaskSpec("tinyworld_mc", 2, "acc")], None, True, None)
    # a comma string of tasks, with include_path carried into the plan
    assert L.resolve_plan(_ctx(tmp_path, options={"tasks": " a , b,", "include_path": "/abs/tasks"})) == L.Plan(
        [L.TaskSpec("a", None, None), L.TaskSpec("b", None, None)], "/abs/tasks", False, None)
    plan = L.resolve_plan(_ctx(tmp_path, preset="openllm", options={"include_path": "/abs/x"}))
    assert (plan.include_path, plan.embedded, plan.preset, len(plan.specs)) == ("/abs/x", False, "openllm", 6)


def test_preset_and_tasks_together_line_in_full(tmp_path):
    with pytest.raises(SuiteError) as err:
        L.resolve_plan(_ctx(tmp_path, preset="openllm", options={"tasks": ["arc_easy"]}))
    assert str(err.value) == "lm-eval: give either a preset ('openllm') or the option `tasks`, not both"


def test_lm_eval_options_bounds_strict_and_frozen():
    opts = L.LmEvalOptions.model_validate({"num_fewshot": 0, "batch_size": 1, "limit": 0.5, "include_path": None})
    assert (opts.num_fewshot, opts.batch_size, opts.limit, opts.include_path) == (0, 1, 0.5, None)
    with pytest.raises(ValidationError):
        opts.limit = 3  # frozen
    with pytest.raises(ValidationError):
        L.LmEvalOptions.model_validate({"num_fewshot": "3"})  # strict: no str -> int coercion
    assert L.LmEvalOptions.model_validate({"include_path": "/abs/dir"}).include_path == "/abs/dir"
    with pytest.raises(ValidationError) as err:
        L.LmEvalOptions.model_validate({"include_path": "rel/dir"})
    # pydantic prefixes a validator's ValueError with "Value error, "
    assert err.value.errors()[0]["msg"] == "Value error, must be an absolute directory, got 'rel/dir'"


def test_suites_register_their_headline_and_paired_metrics():
    assert (registry.entry("suite", "lm-eval").headline, registry.entry("suite", "lm-eval").paired) == ("average",
                                                                                                        L.paired)
    assert (registry.entry("suite", "brainteaser").headline,
            registry.entry("suite", "brainteaser").paired) == ("overall", B.paired)


# ================================================================ lm-eval: files
def test_write_task_yaml_keeps_key_order_and_unicode(tmp_path):
    path = L.write_task_yaml(tmp_path, {"task": "t1", "zeta": 1, "alpha": "café"})
    assert path == tmp_path / "t1.yaml"
    assert path.read_text() == "task: t1\nzeta: 1\nalpha: café\n"  # insertion order, é kept as is


def test_save_outputs_exact_file_text(tmp_path):
    results = {"results": {"t": {"acc,none": 0.5}}, "note": "café",
               "samples": {"t": [{"doc_id": 0, "x": "é"}, {"doc_id": 1}], "u": []}}
    L.save_outputs(tmp_path, results)
    # json.dumps(indent=2, ensure_ascii=False) of the dict without "samples", plus a newline
    assert (tmp_path / "results.json").read_text() == (
        '{\n  "results": {\n    "t": {\n      "acc,none": 0.5\n    }\n  },\n  "note": "café"\n}\n')
    assert (tmp_path / "samples_t.jsonl").read_text() == '{"doc_id": 0, "x": "é"}\n{"doc_id": 1}\n'
    assert (tmp_path / "samples_u.jsonl").read_text() == ""


def test_merge_results_merges_every_per_task_table():
    per_task = ("results", "groups", "group_subtasks", "configs", "versions", "n-shot", "higher_is_better",
                "n-samples", "samples")
    first = {**{k: {"a": 1} for k in per_task}, "date": 1, "config": {"call": 1}}
    second = {**{k: {"b": 2} for k in per_task}, "date": 2}
    assert L.merge_results([first, second]) == {**{k: {"a": 1, "b": 2} for k in per_task}, "date": 2,
                                                 "config": {"call": 1}}


# ================================================================ lm-eval: models, task managers, calls
def test_vllm_model_args_trust_remote_code(tmp_path):
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


def test_make_task_manager_prefers_the_local_index(monkeypatch):
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
    assert str(err.value) == "lm-eval: unknown task(s) nope, gone (see `lm-eval ls tasks`, or option include_path)"


def test_evaluate_defaults_and_no_results_line(tmp_path, monkeypatch):
    calls = _fake_simple_evaluate(monkeypatch, lambda kw: {"results": {}})
    assert L.evaluate(_ctx(tmp_path), "LM", "TM", ["t"], None) == {"results": {}}
    assert calls == [{"model": "LM", "tasks": ["t"], "num_fewshot": None, "limit": None, "task_manager": "TM",
                      "log_samples": True, "predict_only": False, "apply_chat_template": False}]
    _fake_simple_evaluate(monkeypatch, lambda kw: None)
    with pytest.raises(SuiteError) as err:
        L.evaluate(_ctx(tmp_path), "LM", "TM", ["t"], 0)
    assert str(err.value) == "lm-eval returned no results (not rank 0?)"


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


# ================================================================ lm-eval: results -> items, metrics
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


def test_run_embedded_tiny_world_writes_its_task_and_reports_counts(tmp_path, monkeypatch):
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


def test_run_task_list_passes_include_path(tmp_path, monkeypatch):
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
    assert res.info["average"] == ("not computed: missing arc_challenge/acc_norm, hellaswag/acc_norm, "
                                   "truthfulqa_mc2/acc, mmlu/acc, winogrande/acc, gsm8k/exact_match/strict-match")


# ================================================================ brainteaser: data
def test_load_rows_missing_line_in_full(tmp_path):
    with pytest.raises(SuiteError) as err:
        B.load_rows(tmp_path, "WP", "dev")
    assert str(err.value) == (f"brainteaser: missing {tmp_path}/brainteaser/WP_dev.jsonl; get it from {BT_SOURCE} "
                              "and convert the .npy arrays to JSONL")
    with pytest.raises(SuiteError) as err:
        B.load_rows(None, "SP", "train")
    assert str(err.value) == ("brainteaser: missing <data_dir unset>/brainteaser/SP_train.jsonl; get it from "
                              f"{BT_SOURCE} and convert the .npy arrays to JSONL")
    write_jsonl(tmp_path / "brainteaser" / "WP_dev.jsonl", [{"id": "WP-0"}])
    assert B.load_rows(tmp_path, "WP", "dev") == [{"id": "WP-0"}]


def _demos(root, n):
    write_jsonl(root / "brainteaser" / "demonstration.jsonl",
                [{"Question": f"Demo {i}?", "Answer": f"RIGHT{i}", "Choice1": "x", "label": 1,
                  "choice_list": [f"WRONG{i}", f"RIGHT{i}"]} for i in range(n)])


def test_load_demos_schema_counts_and_lines(tmp_path):
    assert B.load_demos(None, 0) == []  # zero-shot needs no file
    _demos(tmp_path, 2)
    both = [{"id": "demo-0", "question": "Demo 0?", "choice_list": ["WRONG0", "RIGHT0"], "label": 1},
            {"id": "demo-1", "question": "Demo 1?", "choice_list": ["WRONG1", "RIGHT1"], "label": 1}]
    assert B.load_demos(tmp_path, 1) == both  # the whole pool (lm-eval's sampler draws from it)
    assert B.load_demos(tmp_path, 2) == both  # exactly as many as there are is fine
    with pytest.raises(SuiteError) as err:
        B.load_demos(tmp_path, 3)
    assert str(err.value) == (f"brainteaser: num_fewshot=3 but {tmp_path}/brainteaser/demonstration.jsonl "
                              "has 2 demonstrations")
    with pytest.raises(SuiteError) as err:
        B.load_demos(tmp_path / "empty", 1)
    assert str(err.value) == (f"brainteaser: few-shot needs {tmp_path}/empty/brainteaser/demonstration.jsonl; "
                              "it is Prompting/demonstration.npy of github.com/1171-jpg/BrainTeaser")
    with pytest.raises(SuiteError) as err:
        B.load_demos(None, 1)
    assert str(err.value) == ("brainteaser: few-shot needs <data_dir unset>/brainteaser/demonstration.jsonl; "
                              "it is Prompting/demonstration.npy of github.com/1171-jpg/BrainTeaser")


# ================================================================ brainteaser: metrics, prompts, parsing
def test_group_metrics_group_without_semantic_member():
    records = [{"id": "SP-0", "correct": True}, {"id": "SP-0_CR", "correct": True},
               {"id": "SP-1", "correct": True}, {"id": "SP-1_SR", "correct": False}]
    # ori_sem only over SP-1 (True and False); no group is complete; overall 3 of 4
    assert B.group_metrics(records) == {"original": 1.0, "semantic": 0.0, "context": 1.0, "ori_sem": 0.0,
                                        "ori_sem_con": None, "overall": 0.75}


def test_paired_instance_accuracies_by_kind():
    items = [{"id": "SP-0", "score": 1.0}, {"id": "SP-0_SR", "score": 0.0}, {"id": "SP-0_CR", "score": None},
             {"id": "SP-1", "score": 0.0}, {"id": "SP-1_CR", "score": 1.0}]
    # scored: 1, 0, 0, 1 -> overall 0.5; original (1, 0), semantic (0), context (1; the None one left out)
    assert B.paired(items) == {"overall": 0.5, "original": 0.5, "semantic": 0.0, "context": 1.0}
    assert B.paired([]) == {"overall": None, "original": None, "semantic": None, "context": None}


def test_render_question_exact():
    row = {"question": "What has keys?", "choice_list": ["A piano.", "A door."]}
    assert B.render_question(row) == f"What has keys?\n(A) A piano.\n(B) A door.\n{LETTER_LINE}"


def test_norm_and_the_most_specific_option_wins():
    assert B._norm("  The  Sun!\n") == "the sun"  # lower, one space per run, no punctuation, stripped
    # both options are mentioned; the longer (more specific) one is chosen
    assert B.parse_choice("the sun rises", ["sun", "The sun rises."]) == 1


def test_brainteaser_options_bounds_strict_and_frozen():
    opts = B.BrainteaserOptions.model_validate({"split": "dev_2", "limit": 1, "max_new_tokens": 1, "batch_size": 1,
                                                "num_fewshot": 0, "puzzles": "SP, ,wp"})
    assert (opts.split, opts.limit, opts.max_new_tokens, opts.batch_size, opts.num_fewshot, opts.puzzles) == (
        "dev_2", 1, 1, 1, 0, ["SP", "WP"])
    with pytest.raises(ValidationError):
        opts.limit = 2  # frozen
    with pytest.raises(ValidationError):
        B.BrainteaserOptions.model_validate({"num_fewshot": "2"})  # strict
    with pytest.raises(ValidationError):
        B.BrainteaserOptions.model_validate({"split": "../x"})


# ================================================================ brainteaser: generate mode
class _Generator:
    def __init__(self, replies):
        self.replies, self.seen = replies, []

    def chat(self, conversations, sampling, desc=""):
        self.seen += conversations
        self.sampling, self.desc = sampling, desc
        return [[self.replies[c[-1]["content"].split("\n")[0]]] for c in conversations]


def _bt_rows(puzzle, labels, groups=2):
    """`groups` puzzle groups; question "<puzzle> q<g><suffix>", choices c0-c2 + None of above, extra keys."""
    return [{"id": f"{puzzle}-{g}{sfx}", "question": f"{puzzle} q{g}{sfx}", "answer": "ignored",
             "choice_list": ["c0", "c1", "c2", "None of above."], "label": label}
            for g in range(groups) for sfx, label in zip(("", "_SR", "_CR"), labels)]


def test_generate_mode_whole_result_with_one_shot(tmp_path):
    from selm_bench.trainers.generation import Sampling

    write_jsonl(tmp_path / "brainteaser" / "SP_train.jsonl", _bt_rows("SP", (0, 1, 2)))
    write_jsonl(tmp_path / "brainteaser" / "WP_train.jsonl", _bt_rows("WP", (0, 2, 1)))
    _demos(tmp_path, 2)
    replies = {"SP q0": "(A)", "SP q0_SR": "B.", "SP q0_CR": "no idea",
               "WP q0": "(D)", "WP q0_SR": "The answer is C", "WP q0_CR": "(B)"}
    ctx = EvalContext(model="unused", name="m", out_dir=tmp_path / "bt", data_dir=tmp_path, seed=5,
                      options={"mode": "generate", "num_fewshot": 1, "limit": 1, "max_new_tokens": 7})
    ctx._generator = gen = _Generator(replies)
    res = B.run(ctx)

    # SP: (A)=0 right, B.=1 right, unparsed wrong; WP: (D)=3 wrong, C=2 right, (B)=1 right
    assert res.items == [
        {"id": "SP-0", "puzzle": "SP", "pred": 0, "label": 0, "response": "(A)", "correct": True, "score": 1.0,
         "kind": "original"},
        {"id": "SP-0_SR", "puzzle": "SP", "pred": 1, "label": 1, "response": "B.", "correct": True, "score": 1.0,
         "kind": "semantic"},
        {"id": "SP-0_CR", "puzzle": "SP", "pred": None, "label": 2, "response": "no idea", "correct": False,
         "score": 0.0, "kind": "context"},
        {"id": "WP-0", "puzzle": "WP", "pred": 3, "label": 0, "response": "(D)", "correct": False, "score": 0.0,
         "kind": "original"},
        {"id": "WP-0_SR", "puzzle": "WP", "pred": 2, "label": 2, "response": "The answer is C", "correct": True,
         "score": 1.0, "kind": "semantic"},
        {"id": "WP-0_CR", "puzzle": "WP", "pred": 1, "label": 1, "response": "(B)", "correct": True, "score": 1.0,
         "kind": "context"}]
    assert res.metrics == {
        "original": 0.5, "semantic": 1.0, "context": 0.5, "ori_sem": 0.5, "ori_sem_con": 0.0, "overall": 4 / 6,
        "sp/original": 1.0, "sp/semantic": 1.0, "sp/context": 0.0, "sp/ori_sem": 1.0, "sp/ori_sem_con": 0.0,
        "sp/overall": 2 / 3,
        "wp/original": 0.0, "wp/semantic": 1.0, "wp/context": 1.0, "wp/ori_sem": 0.0, "wp/ori_sem_con": 0.0,
        "wp/overall": 2 / 3}
    assert res.info == {"split": "train", "puzzles": ["SP", "WP"], "mode": "generate", "num_fewshot": 1,
                        "n": {"SP": 3, "WP": 3}, "unparsed": 1}
    # one demonstration (the first) as an earlier turn, answered with its labelled choice
    assert len(gen.seen) == 6 and gen.seen[0] == [
        {"role": "user", "content": f"Demo 0?\n(A) WRONG0\n(B) RIGHT0\n{LETTER_LINE}"},
        {"role": "assistant", "content": "(B) RIGHT0"},
        {"role": "user", "content": f"SP q0\n(A) c0\n(B) c1\n(C) c2\n(D) None of above.\n{LETTER_LINE}"}]
    assert gen.sampling == Sampling(max_new_tokens=7, seed=5) and gen.desc == "brainteaser"


def test_generate_mode_test_split_writes_submission_files_only(tmp_path):
    for p in ("SP", "WP"):
        write_jsonl(tmp_path / "brainteaser" / f"{p}_test.jsonl",
                    [{"question": f"{p} t{i}", "choice_list": ["c0", "c1", "c2", "c3"]} for i in range(2)])
    ctx = EvalContext(model="unused", name="m", out_dir=tmp_path / "bt", data_dir=tmp_path,
                      options={"mode": "generate", "split": "test"})
    ctx._generator = _Generator({"SP t0": "(C)", "SP t1": "hmm", "WP t0": "hmm", "WP t1": "A."})
    res = B.run(ctx)
    assert res.metrics == {}
    assert (ctx.out_dir / "answer_sen.txt").read_text() == "2\n-1\n"  # unparsed -> -1
    assert (ctx.out_dir / "answer_word.txt").read_text() == "-1\n0\n"
    assert res.items == [
        {"id": "SP-test-0", "puzzle": "SP", "pred": 2, "label": None, "response": "(C)", "score": None},
        {"id": "SP-test-1", "puzzle": "SP", "pred": None, "label": None, "response": "hmm", "score": None},
        {"id": "WP-test-0", "puzzle": "WP", "pred": None, "label": None, "response": "hmm", "score": None},
        {"id": "WP-test-1", "puzzle": "WP", "pred": 0, "label": None, "response": "A.", "score": None}]
    assert res.info == {
        "split": "test", "puzzles": ["SP", "WP"], "mode": "generate", "num_fewshot": 0, "n": {"SP": 2, "WP": 2},
        "unparsed": 2, "no_accuracy": "the 'test' split has no labels: predictions written to answer_sen.txt, "
                                      "answer_word.txt (SemEval-2024 Task 9 submission format)"}


def test_rows_with_ids_but_no_labels_are_not_scored(tmp_path):
    write_jsonl(tmp_path / "brainteaser" / "SP_test.jsonl",
                [{"id": "SP-7", "question": "SP t0", "choice_list": ["c0", "c1", "c2", "c3"]}])
    ctx = EvalContext(model="unused", name="m", out_dir=tmp_path / "bt", data_dir=tmp_path,
                      options={"mode": "generate", "split": "test", "puzzles": ["SP"]})
    ctx._generator = _Generator({"SP t0": "(B)"})
    res = B.run(ctx)
    assert res.metrics == {} and (ctx.out_dir / "answer_sen.txt").read_text() == "1\n"
    assert [i["score"] for i in res.items] == [None]


# ================================================================ brainteaser: loglikelihood mode
def _fake_run_local_task(monkeypatch, resps):
    """B.run_local_task replaced: lm-eval-shaped samples (in reverse doc order) for the rows that
    write_task put in the task folder, with the given filtered_resps and acc/acc_norm per row id."""
    calls = []

    def fake(ctx, task_dir, names, num_fewshot, predict_only=False):
        calls.append((task_dir, names, num_fewshot, predict_only))
        samples = {}
        for name in names:
            rows = [json.loads(line) for line in (task_dir / f"{name}.jsonl").read_text().splitlines()]
            samples[name] = [{"doc_id": i, "doc": r, **resps[r["id"]]} for i, r in enumerate(rows)][::-1]
        return {"samples": samples}

    monkeypatch.setattr(B, "run_local_task", fake)
    return calls


def test_loglikelihood_mode_acc_norm_records_and_metrics(tmp_path, monkeypatch):
    rows = [{"id": f"SP-0{s}", "question": f"q{s}", "choice_list": ["ab", "abcd"], "label": label}
            for s, label in (("", 1), ("_SR", 0), ("_CR", 1))]
    write_jsonl(tmp_path / "brainteaser" / "SP_train.jsonl", rows)
    # acc_norm = log-likelihood per character: SP-0 -4/2=-2 vs -6/4=-1.5 -> 1; SP-0_SR the same -> 1;
    # SP-0_CR -2/2=-1 vs -1.5 -> 0. The greedy flags point elsewhere on purpose.
    calls = _fake_run_local_task(monkeypatch, {
        "SP-0": {"filtered_resps": [(-4.0, True), (-6.0, False)], "acc": 0.0, "acc_norm": 1.0},
        "SP-0_SR": {"filtered_resps": [(-4.0, True), (-6.0, False)], "acc": 1.0, "acc_norm": 0.0},
        "SP-0_CR": {"filtered_resps": [(-2.0, False), (-6.0, True)], "acc": 0.0, "acc_norm": 0.0}})
    ctx = EvalContext(model="unused", name="m", out_dir=tmp_path / "bt", data_dir=tmp_path,
                      options={"puzzles": "SP", "score": "acc_norm"})
    res = B.run(ctx)
    assert calls == [(ctx.out_dir / "tasks", ["brainteaser_sp"], 0, False)]
    assert res.items == [
        {"id": "SP-0", "puzzle": "SP", "pred": 1, "label": 1, "correct": True, "score": 1.0, "kind": "original"},
        {"id": "SP-0_SR", "puzzle": "SP", "pred": 1, "label": 0, "correct": False, "score": 0.0, "kind": "semantic"},
        {"id": "SP-0_CR", "puzzle": "SP", "pred": 0, "label": 1, "correct": False, "score": 0.0, "kind": "context"}]
    one = {"original": 1.0, "semantic": 0.0, "context": 0.0, "ori_sem": 0.0, "ori_sem_con": 0.0, "overall": 1 / 3}
    assert res.metrics == {**one, **{f"sp/{k}": v for k, v in one.items()}}
    assert res.info == {"split": "train", "puzzles": ["SP"], "mode": "loglikelihood", "num_fewshot": 0,
                        "n": {"SP": 3}, "unparsed": 0, "score": "acc_norm"}


def test_loglikelihood_mode_test_split_is_predict_only(tmp_path, monkeypatch):
    write_jsonl(tmp_path / "brainteaser" / "WP_test.jsonl", [{"question": "q", "choice_list": ["ab", "abcd"]}])
    _demos(tmp_path, 2)
    calls = _fake_run_local_task(monkeypatch, {"WP-test-0": {"filtered_resps": [(-5.0, True), (-3.0, False)]}})
    ctx = EvalContext(model="unused", name="m", out_dir=tmp_path / "bt", data_dir=tmp_path,
                      options={"puzzles": ["WP"], "split": "test", "num_fewshot": 1})
    res = B.run(ctx)
    assert calls == [(ctx.out_dir / "tasks", ["brainteaser_wp"], 1, True)]
    assert res.items == [{"id": "WP-test-0", "puzzle": "WP", "pred": 1, "label": None, "score": None}]  # acc: -3 > -5
    assert (ctx.out_dir / "answer_word.txt").read_text() == "1\n" and res.metrics == {}
    config = yaml.safe_load((ctx.out_dir / "tasks" / "brainteaser_wp.yaml").read_text())
    assert config["fewshot_config"]["samples"] == [
        {"id": "demo-0", "question": "Demo 0?", "choice_list": ["WRONG0", "RIGHT0"], "label": 1},
        {"id": "demo-1", "question": "Demo 1?", "choice_list": ["WRONG1", "RIGHT1"], "label": 1}]
    assert res.info["score"] == "acc" and res.info["no_accuracy"] == (
        "the 'test' split has no labels: predictions written to answer_word.txt "
        "(SemEval-2024 Task 9 submission format)")
