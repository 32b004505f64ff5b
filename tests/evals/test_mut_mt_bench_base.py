"""The suite interface (evals/base.py), mt-bench's plumbing and the tiny-world options, pinned in
full: context defaults, error lines word for word, option boundaries, the tiny-mode and ragged
real-mode generation plan, and the answer / judgment rows as FastChat lays them out. Every
expected value is worked out by hand from the inputs and the documented behaviour."""

import json
import math

import pytest
from pydantic import ValidationError

from selm_bench.evals.base import (EvalContext, SuiteError, SuiteResult, mean_and_stderr, validated_options,
                                   validation_message)

RATE = "Rate the reply from 1 to 10 and end with the rating in double brackets, e.g. [[6]]."  # conftest's fixture
PENDING = "pending: answers saved; run `selm-bench judge` on this eval folder"


def _jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def _write_jsonl(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


class _Recording:
    """A stand-in generation backend: replies from a table keyed by the last user message
    (else `<message>`), and records every call in full."""

    def __init__(self, table=None):
        self.table, self.calls = table or {}, []

    def chat(self, convs, sampling, desc=""):
        self.calls.append((convs, (sampling.n, sampling.temperature, sampling.max_new_tokens, sampling.seed), desc))
        return [[self.table.get(c[-1]["content"], f"<{c[-1]['content']}>")] for c in convs]


# ---------------------------------------------------------------- evals/base.py
def test_eval_context_defaults_are_the_documented_ones(tmp_path):
    ctx = EvalContext(model="m", name="n", out_dir=tmp_path)
    assert (ctx.options, ctx.preset, ctx.data_dir, ctx.world_dir, ctx.backend, ctx.backend_options, ctx.judge,
            ctx.judge_options, ctx.no_judge, ctx.device, ctx.seed, ctx.references, ctx.suite, ctx._generator) == (
        {}, None, None, None, "hf", {}, None, {}, False, "cpu", 0, {}, None, None)


def test_generator_is_built_once_from_the_registered_backend(tmp_path, monkeypatch):
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
        assert str(err.value) == "this suite needs a judge: pass --judge NAME or set `judge` in the config"
    made = []
    monkeypatch.setattr(judges, "make_judge", lambda spec, cache_dir=None, **kw: made.append((spec, cache_dir, kw)) or "J")
    ctx = EvalContext(model="m", name="n", out_dir=tmp_path / "evals" / "mt-bench", judge="openai:gpt-4",
                      judge_options={"concurrency": 2})
    assert ctx.make_judge() == "J"
    assert made == [("openai:gpt-4", tmp_path / "evals" / "judge-cache", {"concurrency": 2})]


def test_option_error_lines_in_full(tmp_path):
    with pytest.raises(SuiteError) as err:
        EvalContext(model="m", name="n", out_dir=tmp_path).option("limit")
    assert str(err.value) == "option 'limit' read from a context that names no suite (EvalContext.suite)"
    with pytest.raises(SuiteError) as err:
        EvalContext(model="m", name="n", out_dir=tmp_path, suite="tiny-world", options={"limit": 0}).option("split")
    assert str(err.value) == "bad option: tiny-world.limit: Input should be greater than or equal to 1"
    # a preset suite ("lm-eval:openllm") is named by its base suite in the message
    with pytest.raises(SuiteError) as err:
        EvalContext(model="m", name="n", out_dir=tmp_path, suite="lm-eval:openllm", options={"nope": 1}).option("limit")
    assert str(err.value) == "bad option: lm-eval.nope: Extra inputs are not permitted"
    with pytest.raises(KeyError) as err:
        EvalContext(model="m", name="n", out_dir=tmp_path, suite="tiny-world").option("no_such_option")
    assert err.value.args == ("suite 'tiny-world' declares no option 'no_such_option'",)
    with pytest.raises(SuiteError) as err:
        validated_options("no-such-suite", {})
    assert str(err.value) == "unknown suite 'no-such-suite': it has no options model"


def test_validation_message_joins_locations_and_errors():
    class Err:
        def errors(self):
            return [{"loc": ("puzzles", 0), "msg": "bad item"}, {"loc": (), "msg": "whole model"},
                    {"loc": ("x",)}, {}]

    assert validation_message("s", Err()) == "s.puzzles.0: bad item; s: whole model; s.x: invalid; s: invalid"
    from selm_bench.evals.tiny_world import TinyWorldOptions

    with pytest.raises(ValidationError) as err:
        TinyWorldOptions.model_validate({"limit": 0, "max_new_tokens": 0})
    assert validation_message("tiny-world", err.value) == (
        "tiny-world.limit: Input should be greater than or equal to 1; "
        "tiny-world.max_new_tokens: Input should be greater than 0")


def test_leaderboard_metrics_skips_none_and_bools_but_keeps_later_numbers():
    r = SuiteResult(metrics={"a": None, "b": True, "c": 2, "d": False, "e": 0.25, "f": "x", "g": 3})
    assert r.leaderboard_metrics() == {"c": 2.0, "e": 0.25, "g": 3.0}
    assert SuiteResult(metrics={}).items == [] and SuiteResult(metrics={}).info == {}


def test_mean_and_stderr_of_two_and_four_values():
    # (1, 3): mean 2, sample variance (1 + 1) / 1 = 2, stderr sqrt(2 / 2) = 1
    assert mean_and_stderr([1.0, 3.0]) == (2.0, 1.0)
    # (4, 0, 2, 2): mean 2, sample variance (4 + 4 + 0 + 0) / 3 = 8/3, stderr sqrt(8/3 / 4) = sqrt(2/3)
    mean, se = mean_and_stderr([4.0, 0.0, 2.0, 2.0])
    assert mean == 2.0 and math.isclose(se, math.sqrt(2 / 3))


# ---------------------------------------------------------------- options models
def test_option_lower_bounds_accept_one():
    assert validated_options("tiny-world", {"limit": 1, "max_new_tokens": 1}) == {
        "split": "eval", "limit": 1, "max_new_tokens": 1}
    assert validated_options("tiny-world", {"split": "dev_2-b"})["split"] == "dev_2-b"
    assert validated_options("mt-bench", {"question_limit": 1, "limit": 1, "max_new_tokens": 1}) == {
        "source": None, "question_limit": 1, "limit": 1, "max_new_tokens": 1}


@pytest.mark.parametrize("raw", [{"limit": True}, {"question_limit": "2"}, {"max_new_tokens": 8.0}, {"source": "Tiny"}])
def test_mt_bench_options_are_strict(raw):
    with pytest.raises(ValidationError):
        validated_options("mt-bench", raw)


def test_options_models_are_frozen():
    from selm_bench.evals.mt_bench import MtBenchOptions
    from selm_bench.evals.tiny_world import TinyWorldOptions

    for model, key, value in ((MtBenchOptions, "limit", 3), (TinyWorldOptions, "split", "dev")):
        opts = model()
        with pytest.raises(ValidationError):
            setattr(opts, key, value)


# ---------------------------------------------------------------- mt-bench, tiny mode
TWO_TURN = [{"id": "mt-0", "category": "add", "turns": ["What is 5 + 7 ?", "Add 3 to that ."], "answers": ["12", "15"]},
            {"id": "mt-1", "category": "sort", "turns": ["Sort 3 1 2 ."], "answers": ["1 2 3"]}]


def test_tiny_mode_answers_then_oracle_judging_by_hand(tmp_path):
    """Tiny mode: greedy (temperature 0), 24 tokens, all questions of a turn in one call; a
    one-turn question is left out of turn 2. Judged by the oracle (the default judge there):
    exact answers rate 1 + 9 x 1 = 10, an empty one 1 + 9 x 0 = 1."""
    from selm_bench.evals.mt_bench import judge_saved, run

    world = tmp_path / "world"
    _write_jsonl(world / "two_turn.jsonl", TWO_TURN)
    out = tmp_path / "mt-bench"
    ctx = EvalContext(model="m", name="org/tiny", out_dir=out, world_dir=world, no_judge=True, seed=3)
    ctx._generator = gen = _Recording({"What is 5 + 7 ?": "12", "Add 3 to that .": "", "Sort 3 1 2 .": "1 2 3"})
    res = run(ctx)
    assert gen.calls == [
        ([[{"role": "user", "content": "What is 5 + 7 ?"}], [{"role": "user", "content": "Sort 3 1 2 ."}]],
         (1, 0.0, 24, 3), "mt-bench turn 1 org/tiny"),
        ([[{"role": "user", "content": "What is 5 + 7 ?"}, {"role": "assistant", "content": "12"},
           {"role": "user", "content": "Add 3 to that ."}]], (1, 0.0, 24, 3), "mt-bench turn 2 org/tiny")]
    answers = _jsonl(out / "model_answer" / "org-tiny.jsonl")
    assert [sorted(a) for a in answers] == [["answer_id", "choices", "model_id", "question_id", "tstamp"]] * 2
    assert [(a["question_id"], a["model_id"], a["choices"]) for a in answers] == [
        ("mt-0", "org/tiny", [{"index": 0, "turns": ["12", ""]}]), ("mt-1", "org/tiny", [{"index": 0, "turns": ["1 2 3"]}])]
    assert all(isinstance(a["answer_id"], str) and len(a["answer_id"]) == 22 for a in answers)  # shortuuid's length
    assert answers[0]["answer_id"] != answers[1]["answer_id"] and all(isinstance(a["tstamp"], float) for a in answers)
    assert res.metrics == {}
    assert res.items == [
        {"id": "mt-0/turn-1", "question_id": "mt-0", "turn": 1, "category": "add", "question": "What is 5 + 7 ?",
         "answer": "12", "score": None},
        {"id": "mt-0/turn-2", "question_id": "mt-0", "turn": 2, "category": "add", "question": "Add 3 to that .",
         "answer": "", "score": None},
        {"id": "mt-1/turn-1", "question_id": "mt-1", "turn": 1, "category": "sort", "question": "Sort 3 1 2 .",
         "answer": "1 2 3", "score": None}]
    assert res.info == {"mode": "tiny", "n_questions": 2, "answers": "model_answer/org-tiny.jsonl", "judging": PENDING}

    judged = judge_saved(ctx)
    # ratings 10 (mt-0 turn 1), 1 (mt-0 turn 2), 10 (mt-1 turn 1): score 21/3, turn-1 10, turn-2 1,
    # add (10 + 1) / 2 = 5.5, sort 10
    assert judged.metrics == {"score": 7.0, "turn-1": 10.0, "turn-2": 1.0, "category/add": 5.5, "category/sort": 10.0,
                              "errors": 0}
    ok = "verifier score 1.0000 against the gold answer; Rating: [[10.0000]]"
    empty = "verifier score 0.0000 against the gold answer; Rating: [[1.0000]]"
    assert judged.items == [
        {"id": "mt-0/turn-1", "question_id": "mt-0", "turn": 1, "category": "add", "question": "What is 5 + 7 ?",
         "answer": "12", "score": 10.0, "judgment": ok},
        {"id": "mt-0/turn-2", "question_id": "mt-0", "turn": 2, "category": "add", "question": "Add 3 to that .",
         "answer": "", "score": 1.0, "judgment": empty},
        {"id": "mt-1/turn-1", "question_id": "mt-1", "turn": 1, "category": "sort", "question": "Sort 3 1 2 .",
         "answer": "1 2 3", "score": 10.0, "judgment": ok}]
    assert judged.info == {
        "mode": "tiny", "n_questions": 2,
        "judge": {"spec": "oracle", "model": "oracle", "calls": 3, "cached": 0, "failures": 0, "prompt_tokens": 0,
                  "completion_tokens": 0},
        "answers": "model_answer/org-tiny.jsonl", "judgments": "model_judgment/oracle_single.jsonl"}
    rows = _jsonl(out / "model_judgment" / "oracle_single.jsonl")
    assert all(isinstance(r.pop("tstamp"), float) for r in rows)
    assert rows == [
        {"question_id": "mt-0", "model": "org/tiny", "judge": ["oracle", "oracle-verify"],
         "user_prompt": "What is 5 + 7 ?", "judgment": ok, "score": 10.0, "turn": 1},
        {"question_id": "mt-0", "model": "org/tiny", "judge": ["oracle", "oracle-verify"],
         "user_prompt": "Add 3 to that .", "judgment": empty, "score": 1.0, "turn": 2},
        {"question_id": "mt-1", "model": "org/tiny", "judge": ["oracle", "oracle-verify"],
         "user_prompt": "Sort 3 1 2 .", "judgment": ok, "score": 10.0, "turn": 1}]


# ---------------------------------------------------------------- mt-bench, real mode
def test_real_mode_groups_by_fastchat_temperature_and_skips_missing_turns(tmp_path):
    """FastChat's temperature_config: math 0.0, stem 0.1, writing 0.7; a category it lacks gets
    gen_model_answer's default 0.7 (so it shares writing's call). Temperatures are visited in
    ascending order each turn; at turn 2 the one-turn math question has no turn, and the other
    temperatures still run."""
    from selm_bench.evals.mt_bench import run

    questions = [{"question_id": 1, "category": "math", "turns": ["m1"]},
                 {"question_id": 2, "category": "writing", "turns": ["w1", "w2"]},
                 {"question_id": 3, "category": "chit-chat", "turns": ["c1", "c2"]},
                 {"question_id": 4, "category": "stem", "turns": ["s1", "s2"]}]
    data = tmp_path / "data"
    _write_jsonl(data / "mt_bench" / "question.jsonl", questions)
    ctx = EvalContext(model="m", name="m", out_dir=tmp_path / "mt-bench", data_dir=data, no_judge=True)
    ctx._generator = gen = _Recording()

    def user(text):
        return {"role": "user", "content": text}

    def then(first, second):
        return [user(first), {"role": "assistant", "content": f"<{first}>"}, user(second)]

    res = run(ctx)
    assert gen.calls == [
        ([[user("m1")]], (1, 0.0, 1024, 0), "mt-bench turn 1 m"),
        ([[user("s1")]], (1, 0.1, 1024, 0), "mt-bench turn 1 m"),
        ([[user("w1")], [user("c1")]], (1, 0.7, 1024, 0), "mt-bench turn 1 m"),
        ([then("s1", "s2")], (1, 0.1, 1024, 0), "mt-bench turn 2 m"),
        ([then("w1", "w2"), then("c1", "c2")], (1, 0.7, 1024, 0), "mt-bench turn 2 m")]
    assert [(i["id"], i["answer"]) for i in res.items] == [
        ("1/turn-1", "<m1>"), ("2/turn-1", "<w1>"), ("2/turn-2", "<w2>"), ("3/turn-1", "<c1>"), ("3/turn-2", "<c2>"),
        ("4/turn-1", "<s1>"), ("4/turn-2", "<s2>")]
    assert res.info == {"mode": "fastchat", "n_questions": 4, "answers": "model_answer/m.jsonl", "judging": PENDING}


class _Scripted:
    name = "scripted"
    model = "gpt-4"

    def __init__(self, replies):
        self.replies, self.requests = replies, []

    def chat_many(self, requests, **sampling):
        self.requests += requests
        return self.replies[:len(requests)]


def test_llm_judgment_rows_in_full(tmp_path):
    """Each row as FastChat's single-mode judgment file holds it, with the user prompt filled from
    conftest's fixture templates (math against gpt-4's reference answers 42 / 84)."""
    from conftest import write_mt_bench_fixture

    from selm_bench.evals.mt_bench import _judge_llm, load_mt_questions

    data = write_mt_bench_fixture(tmp_path / "mirror")
    ctx = EvalContext(model="u", name="org/m", out_dir=tmp_path / "a", data_dir=data, options={"question_limit": 2})
    saved = {81: {"choices": [{"index": 0, "turns": ["x1", "x2"]}]}, 111: {"choices": [{"index": 0, "turns": ["y1", "y2"]}]}}
    judge = _Scripted(["[[7]]", None, "Rating: [2]", "none"])
    rows = _judge_llm(ctx, judge, "gpt-4", load_mt_questions(ctx), saved)
    assert all(isinstance(r.pop("tstamp"), float) for r in rows)
    poem, rhyme = "Write a two-line poem about rain.", "Now make it rhyme."
    assert rows == [
        {"question_id": 81, "model": "org/m", "judge": ["gpt-4", "single-v1"],
         "user_prompt": f"Question:\n{poem}\n\nReply:\nx1", "judgment": "[[7]]", "score": 7, "turn": 1},
        {"question_id": 81, "model": "org/m", "judge": ["gpt-4", "single-v1-multi-turn"],
         "user_prompt": f"Q1: {poem}\nA1: x1\nQ2: {rhyme}\nA2: x2", "judgment": "$ERROR$", "score": -1, "turn": 2},
        {"question_id": 111, "model": "org/m", "judge": ["gpt-4", "single-math-v1"],
         "user_prompt": "Question:\nWhat is 12 + 30?\n\nReference:\n42\n\nReply:\ny1", "judgment": "Rating: [2]",
         "score": 2, "turn": 1},
        {"question_id": 111, "model": "org/m", "judge": ["gpt-4", "single-math-v1-multi-turn"],
         "user_prompt": "Q1: What is 12 + 30?\nRef1: 42\nA1: y1\nQ2: And doubled?\nRef2: 84\nA2: y2", "judgment": "none",
         "score": -1, "turn": 2}]
    assert judge.requests[0] == [{"role": "system", "content": "You grade one assistant reply. " + RATE},
                                 {"role": "user", "content": f"Question:\n{poem}\n\nReply:\nx1"}]


def test_reference_answers_only_when_a_question_needs_one(tmp_path):
    import shutil

    from conftest import write_mt_bench_fixture

    from selm_bench.evals.mt_bench import _judge_llm

    data = write_mt_bench_fixture(tmp_path / "mirror")
    ctx = EvalContext(model="u", name="m", out_dir=tmp_path / "a", data_dir=data)
    math_q = {"question_id": 7, "category": "math", "turns": ["a", "b"]}
    saved = {7: {"choices": [{"index": 0, "turns": ["x", "y"]}]}, 81: {"choices": [{"index": 0, "turns": ["x", "y"]}]}}
    with pytest.raises(SuiteError) as err:
        _judge_llm(ctx, _Scripted(["[[1]]"] * 2), "gpt-4", [math_q], saved)
    assert str(err.value) == "mt-bench: no gpt-4 reference answer for question 7"
    shutil.rmtree(data / "mt_bench" / "reference_answer")  # a writing question never reads the references
    writing = {"question_id": 81, "category": "writing", "turns": ["a", "b"]}
    rows = _judge_llm(ctx, _Scripted(["[[4]]", "[[5]]"]), "gpt-4", [writing], saved)
    assert [(r["judge"][1], r["score"]) for r in rows] == [("single-v1", 4), ("single-v1-multi-turn", 5)]


def test_judge_prompt_with_another_output_format_is_refused():
    from selm_bench.evals.mt_bench import _judge_messages

    template = {"name": "pair-v2", "output_format": "[[A]]", "system_prompt": "s", "prompt_template": "{question}"}
    with pytest.raises(SuiteError) as err:
        _judge_messages(template, {"turns": ["q"]}, {"choices": [{"turns": ["a"]}]}, None, multi_turn=False)
    assert str(err.value) == "mt-bench: judge prompt 'pair-v2' has unsupported output format"


def test_judgment_file_name_flattens_slashes_and_nan_means_none(tmp_path):
    from selm_bench.evals.mt_bench import _judgment_file, _num, metrics_from_judgments

    ctx = EvalContext(model="u", name="m", out_dir=tmp_path)
    assert _judgment_file(ctx, "org/judge-1") == tmp_path / "model_judgment" / "org_judge-1_single.jsonl"
    assert _num(float("nan")) is None and _num(None) is None and _num(3) == 3.0
    assert metrics_from_judgments([]) == {}
