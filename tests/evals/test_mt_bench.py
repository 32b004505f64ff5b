"""MT-Bench (evals/mt_bench.py): FastChat's rating parser and aggregation, the tiny mode with
the oracle judge, the real mode's generation plan, judge requests and judgment files as FastChat
lays them out, and its errors. Stand-in generators and judges; expected values worked out by hand."""

import json

import pytest

from conftest import mt_bench_mirror, write_mt_bench_fixture
from selm_bench.evals.base import EvalContext, SuiteError
from selm_bench.evals.judges import Judge
from selm_bench.evals.mt_bench import _judge_llm, judge_saved, load_mt_questions, metrics_from_judgments, parse_rating, run


def _jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def _write_jsonl(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _turns(data):
    """{question_id: turns} of a data dir's question.jsonl (the fixture's own question texts)."""
    return {q["question_id"]: q["turns"] for q in _jsonl(data / "mt_bench" / "question.jsonl")}


def _pending(info):
    """The answers-only marker: judging is pending and the line says how to judge."""
    return info["judging"].startswith("pending") and "selm-bench judge" in info["judging"]


@pytest.mark.parametrize(
    "text, rating",
    [("Rating: [[8.5]]", 8.5), ("Rating: [7]", 7), ("[[3]] though [9] elsewhere", 3), ("[[10]]", 10),
     ("no rating here", -1), ("Rating: [[seven]]", -1), (None, -1)],
)
def test_parse_rating_uses_fastchat_patterns(text, rating):
    assert parse_rating(text) == rating


def _row(model, qid, turn, score):
    return {"question_id": qid, "model": model, "judge": ["gpt-4", "single-v1"], "user_prompt": "",
            "judgment": f"[[{score}]]", "score": score, "turn": turn, "tstamp": 0.0}


QUESTIONS = [{"question_id": 1, "category": "writing", "turns": ["a", "b"]},
             {"question_id": 2, "category": "math", "turns": ["c", "d"]}]


def test_aggregation_drops_failed_rows_like_show_result():
    rows = [_row("m", 1, 1, 8), _row("m", 1, 2, -1), _row("m", 2, 1, 4), _row("m", 2, 2, 6)]
    m = metrics_from_judgments(rows, QUESTIONS)["m"]
    assert m["errors"] == 1
    assert m["turn-1"] == pytest.approx(6.0)  # (8 + 4) / 2
    assert m["turn-2"] == pytest.approx(6.0)  # only the 6 survives
    assert m["score"] == pytest.approx(18 / 3)  # over remaining (question, turn) rows, not per-turn means
    assert m["category/writing"] == pytest.approx(8.0) and m["category/math"] == pytest.approx(5.0)


def test_aggregation_all_failed_gives_none():
    m = metrics_from_judgments([_row("m", 1, 1, -1), _row("m", 1, 2, -1)])["m"]
    assert m == {"score": None, "turn-1": None, "turn-2": None, "errors": 2}


def test_metrics_from_multi_model_judgment_file(tmp_path):
    path = tmp_path / "gpt-4_single.jsonl"
    rows = [_row("a", 1, 1, 9), _row("a", 1, 2, 7), _row("a", 2, 1, 5), _row("a", 2, 2, 3),
            _row("b", 1, 1, 2), _row("b", 1, 2, -1), _row("b", 2, 1, 4.5), _row("b", 2, 2, 1)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    qfile = tmp_path / "question.jsonl"
    qfile.write_text("".join(json.dumps(q) + "\n" for q in QUESTIONS))
    out = metrics_from_judgments(path, qfile)
    assert set(out) == {"a", "b"}
    assert out["a"] == {"score": 6.0, "turn-1": 7.0, "turn-2": 5.0, "category/math": 4.0,
                        "category/writing": 8.0, "errors": 0}
    assert out["b"]["score"] == pytest.approx(7.5 / 3) and out["b"]["errors"] == 1
    assert out["b"]["turn-2"] == 1.0 and out["b"]["category/writing"] == 2.0
    assert "category/math" not in metrics_from_judgments(path)["a"]  # no categories without questions


def test_tiny_mode_with_oracle(tiny_world, tiny_model, tmp_path):
    ctx = EvalContext(model=str(tiny_model), name="tiny", out_dir=tmp_path / "mt-bench", world_dir=tiny_world,
                      judge="oracle", options={"limit": 4, "max_new_tokens": 4})
    res = run(ctx)
    assert len(res.items) == 8 and {i["turn"] for i in res.items} == {1, 2}
    assert all({"id", "turn", "category", "answer", "score"} <= set(i) for i in res.items)
    assert all(1.0 <= i["score"] <= 10.0 for i in res.items)
    assert 1.0 <= res.metrics["score"] <= 10.0 and res.metrics["errors"] == 0
    assert {"turn-1", "turn-2"} <= set(res.metrics)
    assert any(k.startswith("category/") for k in res.metrics)
    assert res.info["judge"]["calls"] == 8 and res.info["mode"] == "tiny" and res.info["n_questions"] == 4
    answers = [json.loads(x) for x in (ctx.out_dir / "model_answer" / "tiny.jsonl").read_text().splitlines()]
    assert len(answers) == 4 and len(answers[0]["choices"][0]["turns"]) == 2
    judged = ctx.out_dir / "model_judgment" / "oracle_single.jsonl"
    assert metrics_from_judgments(judged)["tiny"]["score"] == pytest.approx(res.metrics["score"])

    # answers only, then judge the saved answers: same numbers (greedy answers are deterministic)
    ctx2 = EvalContext(model=str(tiny_model), name="tiny", out_dir=tmp_path / "mt-bench-2", world_dir=tiny_world,
                       judge="oracle", no_judge=True, options={"limit": 4, "max_new_tokens": 4})
    pending = run(ctx2)
    assert pending.metrics == {} and "pending" in pending.info["judging"]
    assert judge_saved(ctx2).metrics == res.metrics


def test_real_mode_missing_data_is_one_clear_error(tmp_path):
    ctx = EvalContext(model="unused", name="x", out_dir=tmp_path / "out", data_dir=tmp_path / "nodata")
    with pytest.raises(SuiteError, match=r"question\.jsonl.*FastChat's fastchat/llm_judge/data/"):
        run(ctx)


class _Recorder(Judge):
    name = "recorder"
    model = "gpt-4"

    def __init__(self):
        self.requests = []

    def chat_many(self, requests, **sampling):
        self.requests += requests
        self.sampling = sampling
        return ["Rating: [[5]]"] * len(requests)


def test_judge_messages_match_fastchat_run_judge_single(tmp_path, monkeypatch):
    """Our judge requests equal what fastchat's run_judge_single would send to the API."""
    import fastchat.llm_judge.common as fc

    data = mt_bench_mirror(tmp_path)
    questions = [q for q in fc.load_questions(str(data / "mt_bench" / "question.jsonl"), None, None)
                 if q["question_id"] in (81, 111)]
    saved = {q["question_id"]: {"question_id": q["question_id"], "model_id": "m",
                                "choices": [{"index": 0, "turns": ["first {x}", "second"]}]} for q in questions}
    ctx = EvalContext(model="unused", name="m", out_dir=tmp_path, data_dir=data)
    judge = _Recorder()
    rows = _judge_llm(ctx, judge, "gpt-4", questions, saved)
    assert judge.sampling == {"temperature": 0, "max_tokens": 2048}

    sent = []
    monkeypatch.setattr(fc, "chat_completion_openai",
                        lambda model, conv, **kw: sent.append(conv.to_openai_api_messages()) or "[[5]]")
    prompts = fc.load_judge_prompts(str(data / "mt_bench" / "judge_prompts.jsonl"))
    refs = fc.load_model_answers(str(data / "mt_bench" / "reference_answer"))["gpt-4"]
    for q in questions:
        ref = refs.get(q["question_id"]) if q["category"] in fc.NEED_REF_CATS else None
        for multi in (False, True):
            name = ("single-math-v1" if ref else "single-v1") + ("-multi-turn" if multi else "")
            fc.run_judge_single(q, saved[q["question_id"]], fc.Judge("gpt-4", prompts[name]), ref, multi_turn=multi)
    assert judge.requests == sent
    assert [r["judge"][1] for r in rows] == ["single-v1", "single-v1-multi-turn",
                                             "single-math-v1", "single-math-v1-multi-turn"]


def test_paired_metrics_per_turn_by_hand():
    """compare's per-item hook: the mean over judged turns and per turn (failed judgments left out)."""
    from selm_bench.evals.mt_bench import paired

    items = [{"id": "81/turn-1", "turn": 1, "score": 8.0}, {"id": "81/turn-2", "turn": 2, "score": 4.0},
             {"id": "82/turn-1", "turn": 1, "score": 6.0}, {"id": "82/turn-2", "turn": 2, "score": None},
             {"id": "83/turn-2", "turn": 2, "score": 3.0}]
    assert paired(items) == {"score": 21.0 / 4, "turn-1": 7.0, "turn-2": 3.5}
    assert paired([{"id": "81/turn-1", "turn": 1, "score": None}]) == {"score": None, "turn-1": None, "turn-2": None}


class _Generator:
    """A stand-in backend: replies `<turn>:<last user message>` and records what it was asked."""

    def __init__(self):
        self.calls = []

    def chat(self, convs, sampling, desc=""):
        self.calls.append(([len(c) for c in convs], sampling.temperature, sampling.max_new_tokens, sampling.seed, desc))
        return [[f"a{(len(c) + 1) // 2}:{c[-1]['content']}"] for c in convs]


class _Scripted(Judge):
    name = "scripted"
    model = "gpt-4"

    def __init__(self, replies):
        self.replies, self.requests = replies, []

    def chat_many(self, requests, **sampling):
        self.requests += requests
        return self.replies[:len(requests)]

    def accounting(self):
        return {"calls": len(self.requests)}


def test_real_mode_end_to_end_by_hand(tmp_path):
    """Two fixture questions (81 writing at FastChat's temperature 0.7, 111 math at 0.0, with its
    reference), a scripted judge rating [[8]], [[6]], failing, and giving no rating: ratings
    8 and 6 kept, two errors, every file and item as FastChat lays them out."""
    from fastchat.llm_judge.common import API_ERROR_OUTPUT

    data = write_mt_bench_fixture(tmp_path / "mirror")
    out = tmp_path / "mt-bench"
    ctx = EvalContext(model="unused", name="org/m", out_dir=out, data_dir=data, judge="openai:gpt-4", seed=5,
                      options={"question_limit": 2})
    ctx._generator = gen = _Generator()
    judge = _Scripted(["Rating: [[8]]", "[[6]]", None, "no rating"])
    ctx.make_judge = lambda: judge
    (out / "model_judgment").mkdir(parents=True)
    other = {"question_id": 81, "model": "other", "judge": ["gpt-4", "single-v1"], "score": 2, "turn": 1}
    (out / "model_judgment" / "gpt-4_single.jsonl").write_text(json.dumps(other) + "\n")
    res = run(ctx)
    # turn 1: the math question (temperature 0) first, then writing (0.7); turn 2 carries turn 1's answer
    assert gen.calls == [([1], 0.0, 1024, 5, "mt-bench turn 1 org/m"), ([1], 0.7, 1024, 5, "mt-bench turn 1 org/m"),
                         ([3], 0.0, 1024, 5, "mt-bench turn 2 org/m"), ([3], 0.7, 1024, 5, "mt-bench turn 2 org/m")]
    q = _turns(data)
    answers = [json.loads(line) for line in (out / "model_answer" / "org-m.jsonl").read_text().splitlines()]
    assert [(a["question_id"], a["model_id"], a["choices"][0]["turns"]) for a in answers] == [
        (81, "org/m", [f"a1:{q[81][0]}", f"a2:{q[81][1]}"]), (111, "org/m", [f"a1:{q[111][0]}", f"a2:{q[111][1]}"])]
    assert res.metrics == {"score": 7.0, "turn-1": 8.0, "turn-2": 6.0, "category/writing": 7.0, "errors": 2}
    assert [(i["id"], i["question_id"], i["turn"], i["category"], i["question"], i["answer"], i["score"], i["judgment"])
            for i in res.items] == [
        ("81/turn-1", 81, 1, "writing", q[81][0], f"a1:{q[81][0]}", 8, "Rating: [[8]]"),
        ("81/turn-2", 81, 2, "writing", q[81][1], f"a2:{q[81][1]}", 6, "[[6]]"),
        ("111/turn-1", 111, 1, "math", q[111][0], f"a1:{q[111][0]}", None, API_ERROR_OUTPUT),
        ("111/turn-2", 111, 2, "math", q[111][1], f"a2:{q[111][1]}", None, "no rating")]
    assert res.info == {"mode": "fastchat", "n_questions": 2, "judge": {"spec": "openai:gpt-4", "model": "gpt-4", "calls": 4},
                        "answers": "model_answer/org-m.jsonl", "judgments": "model_judgment/gpt-4_single.jsonl",
                        "not_canonical": ["2/80 questions"]}
    rows = [json.loads(line) for line in (out / "model_judgment" / "gpt-4_single.jsonl").read_text().splitlines()]
    assert rows[0] == other  # another model's judgments stay
    assert [(r["model"], r["question_id"], r["turn"], r["judge"], r["score"]) for r in rows[1:]] == [
        ("org/m", 81, 1, ["gpt-4", "single-v1"], 8), ("org/m", 81, 2, ["gpt-4", "single-v1-multi-turn"], 6),
        ("org/m", 111, 1, ["gpt-4", "single-math-v1"], -1), ("org/m", 111, 2, ["gpt-4", "single-math-v1-multi-turn"], -1)]
    assert "Reference:\n42" in judge.requests[2][-1]["content"]  # the math question is graded against gpt-4's answer

    judge2 = _Scripted([None] * 4)  # judge again: this model's rows are replaced, every judgment failed
    ctx.make_judge = lambda: judge2
    again = judge_saved(ctx)
    assert again.metrics == {"score": None, "turn-1": None, "turn-2": None, "errors": 4}
    assert "score -1" in again.info["reason"]
    rows = [json.loads(line) for line in (out / "model_judgment" / "gpt-4_single.jsonl").read_text().splitlines()]
    assert len(rows) == 5 and rows[0] == other and {r["score"] for r in rows[1:]} == {-1}


def test_answers_only_then_the_judge_errors(tmp_path, tiny_world):
    """--no-judge saves the answers and reports nothing; judging then refuses, naming what is wrong:
    the oracle on FastChat's questions, an LLM judge on the tiny world, a model without saved answers,
    no data dir, saved answers that match none of the questions."""
    data = write_mt_bench_fixture(tmp_path / "mirror")
    ctx = EvalContext(model="unused", name="m", out_dir=tmp_path / "a", data_dir=data, no_judge=True,
                      options={"limit": 1, "max_new_tokens": 7})
    ctx._generator = gen = _Generator()
    res = run(ctx)
    assert [c[2] for c in gen.calls] == [7, 7]
    assert res.metrics == {} and _pending(res.info)
    assert {k: v for k, v in res.info.items() if k != "judging"} == {
        "mode": "fastchat", "n_questions": 1, "answers": "model_answer/m.jsonl"}
    q = _turns(data)[81]
    assert [(i["id"], i["turn"], i["category"], i["question"], i["answer"], i["score"]) for i in res.items] == [
        ("81/turn-1", 1, "writing", q[0], f"a1:{q[0]}", None), ("81/turn-2", 2, "writing", q[1], f"a2:{q[1]}", None)]
    missing = tmp_path / "a" / "model_answer" / "other.jsonl"
    for c, tokens in [
        (EvalContext(model="u", name="m", out_dir=tmp_path / "a", data_dir=data, judge="oracle"),
         ("'oracle'", "--judge openai:gpt-4")),
        (EvalContext(model="u", name="m", out_dir=tmp_path / "a", world_dir=tiny_world, judge="openai:gpt-4"),
         ("'openai:gpt-4'", "--judge oracle")),
        (EvalContext(model="u", name="other", out_dir=tmp_path / "a", data_dir=data, judge="openai:gpt-4"),
         (str(missing), "--no-judge")),
        (EvalContext(model="u", name="m", out_dir=tmp_path / "a", judge="openai:gpt-4"), ("data dir", "mt_bench/")),
    ]:
        with pytest.raises(SuiteError) as err:
            (judge_saved if c.judge == "openai:gpt-4" and c.world_dir is None else run)(c)  # run: the judge checked first
        assert str(err.value).startswith("mt-bench") and "\n" not in str(err.value)
        assert all(t in str(err.value) for t in tokens), (tokens, str(err.value))
    (data / "mt_bench" / "question.jsonl").write_text(json.dumps(
        {"question_id": 5, "category": "writing", "turns": ["a", "b"]}) + "\n")
    with pytest.raises(SuiteError) as err:
        judge_saved(EvalContext(model="u", name="m", out_dir=tmp_path / "a", data_dir=data, judge="openai:gpt-4"))
    assert str(tmp_path / "a" / "model_answer" / "m.jsonl") in str(err.value) and "none" in str(err.value)


def test_a_broken_reference_answer_line_names_its_file(tmp_path):
    """The data files are read line by line before FastChat's loaders (which would not name the
    file), including every file of the reference_answer folder."""
    from selm_bench.harness.world import DataFileError

    data = write_mt_bench_fixture(tmp_path / "mirror")
    ref = data / "mt_bench" / "reference_answer" / "other-model.jsonl"  # FastChat's loader reads every file there
    ref.write_text('{"question_id": 111, "model_id": "o", "choices": [{"index": 0, "turns": ["1", "2"]}]}\n'
                   '{"question_id": 1, "choices": [\n')
    n = 2
    ctx = EvalContext(model="u", name="m", out_dir=tmp_path / "a", data_dir=data, options={"question_limit": 2})
    questions = [q for q in load_mt_questions(ctx) if q["question_id"] == 111]
    saved = {111: {"question_id": 111, "choices": [{"index": 0, "turns": ["a", "b"]}]}}
    with pytest.raises(DataFileError) as err:
        _judge_llm(ctx, _Recorder(), "gpt-4", questions, saved)
    assert str(err.value).startswith(f"{ref}: line {n} is not valid JSON")


def test_a_missing_judge_prompt_is_named(tmp_path):
    data = write_mt_bench_fixture(tmp_path / "mirror")
    prompts = data / "mt_bench" / "judge_prompts.jsonl"
    prompts.write_text("".join(line + "\n" for line in prompts.read_text().splitlines()
                               if '"single-v1-multi-turn"' not in line))
    ctx = EvalContext(model="u", name="m", out_dir=tmp_path / "a", data_dir=data, options={"question_limit": 1})
    saved = {81: {"question_id": 81, "choices": [{"index": 0, "turns": ["a", "b"]}]}}
    with pytest.raises(SuiteError) as err:
        _judge_llm(ctx, _Recorder(), "gpt-4", load_mt_questions(ctx), saved)
    assert "'single-v1-multi-turn'" in str(err.value) and "judge_prompts.jsonl" in str(err.value)


def test_fastchat_template_for_a_tokenizer_without_one():
    """A tokenizer without a chat template gets FastChat's conversation template (vicuna by default:
    its system prompt, then USER: / ASSISTANT: turns)."""
    import types

    from selm_bench.trainers.generation import render_prompt

    system = ("A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, "
              "detailed, and polite answers to the user's questions.")
    tok = types.SimpleNamespace(chat_template=None)
    assert render_prompt(tok, [{"role": "user", "content": "hi"}]) == f"{system} USER: hi ASSISTANT:"
    assert render_prompt(tok, [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"},
                               {"role": "user", "content": "more"}]) == f"{system} USER: hi ASSISTANT: yo</s>USER: more ASSISTANT:"
    assert render_prompt(tok, [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]) == (
        "Be brief. USER: hi ASSISTANT:")


def test_oracle_ratings_by_hand(tmp_path):
    """Tiny mode: each turn is rated 1 + 9 x the verifier's score: 10 for an exact answer, 1 for none;
    the judgment text carries the rating in FastChat's [[...]] form."""
    from selm_bench.evals.judges import make_judge
    from selm_bench.evals.mt_bench import _judge_oracle

    questions = [{"question_id": "mt-0", "category": "add", "turns": ["q1", "q2"], "answers": ["12", "15"]}]
    saved = {"mt-0": {"choices": [{"turns": ["12", ""]}]}}
    ctx = EvalContext(model="u", name="m", out_dir=tmp_path)
    rows = _judge_oracle(ctx, make_judge("oracle"), "oracle", questions, saved)
    assert [(r["turn"], r["score"], r["judge"], r["user_prompt"], r["model"]) for r in rows] == [
        (1, 10.0, ["oracle", "oracle-verify"], "q1", "m"), (2, 1.0, ["oracle", "oracle-verify"], "q2", "m")]
    assert [parse_rating(r["judgment"]) for r in rows] == [10.0, 1.0]
    assert rows[0]["judgment"].startswith("verifier score 1.0000") and "0.0000" in rows[1]["judgment"]


class _Recording:
    """A stand-in generation backend: replies from a table keyed by the last user message
    (else `<message>`), and records every call in full."""

    def __init__(self, table=None):
        self.table, self.calls = table or {}, []

    def chat(self, convs, sampling, desc=""):
        self.calls.append((convs, (sampling.n, sampling.temperature, sampling.max_new_tokens, sampling.seed), desc))
        return [[self.table.get(c[-1]["content"], f"<{c[-1]['content']}>")] for c in convs]


# ---------------------------------------------------------------- tiny mode, scripted answers
TWO_TURN = [{"id": "mt-0", "category": "add", "turns": ["What is 5 + 7 ?", "Add 3 to that ."], "answers": ["12", "15"]},
            {"id": "mt-1", "category": "sort", "turns": ["Sort 3 1 2 ."], "answers": ["1 2 3"]}]


def test_tiny_mode_answers_then_oracle_judging_by_hand(tmp_path):
    """Tiny mode: greedy (temperature 0), 24 tokens, all questions of a turn in one call; a
    one-turn question is left out of turn 2. Judged by the oracle (the default judge there):
    exact answers rate 1 + 9 x 1 = 10, an empty one 1 + 9 x 0 = 1."""
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
    pending_items = [
        {"id": "mt-0/turn-1", "question_id": "mt-0", "turn": 1, "category": "add", "question": "What is 5 + 7 ?",
         "answer": "12"},
        {"id": "mt-0/turn-2", "question_id": "mt-0", "turn": 2, "category": "add", "question": "Add 3 to that .",
         "answer": ""},
        {"id": "mt-1/turn-1", "question_id": "mt-1", "turn": 1, "category": "sort", "question": "Sort 3 1 2 .",
         "answer": "1 2 3"}]
    assert res.items == [{**i, "score": None} for i in pending_items]
    assert _pending(res.info)
    assert {k: v for k, v in res.info.items() if k != "judging"} == {
        "mode": "tiny", "n_questions": 2, "answers": "model_answer/org-tiny.jsonl"}

    judged = judge_saved(ctx)
    # ratings 10 (mt-0 turn 1), 1 (mt-0 turn 2), 10 (mt-1 turn 1): score 21/3, turn-1 10, turn-2 1,
    # add (10 + 1) / 2 = 5.5, sort 10
    assert judged.metrics == {"score": 7.0, "turn-1": 10.0, "turn-2": 1.0, "category/add": 5.5, "category/sort": 10.0,
                              "errors": 0}
    judgments = [i.pop("judgment") for i in judged.items]
    assert judged.items == [{**i, "score": s} for i, s in zip(pending_items, (10.0, 1.0, 10.0))]
    assert [parse_rating(j) for j in judgments] == [10.0, 1.0, 10.0]  # FastChat's parser reads the oracle's rating
    assert judged.info == {
        "mode": "tiny", "n_questions": 2,
        "judge": {"spec": "oracle", "model": "oracle", "calls": 3, "cached": 0, "failures": 0, "prompt_tokens": 0,
                  "completion_tokens": 0},
        "answers": "model_answer/org-tiny.jsonl", "judgments": "model_judgment/oracle_single.jsonl"}
    rows = _jsonl(out / "model_judgment" / "oracle_single.jsonl")
    assert all(isinstance(r.pop("tstamp"), float) for r in rows)
    assert rows == [
        {"question_id": "mt-0", "model": "org/tiny", "judge": ["oracle", "oracle-verify"],
         "user_prompt": "What is 5 + 7 ?", "judgment": judgments[0], "score": 10.0, "turn": 1},
        {"question_id": "mt-0", "model": "org/tiny", "judge": ["oracle", "oracle-verify"],
         "user_prompt": "Add 3 to that .", "judgment": judgments[1], "score": 1.0, "turn": 2},
        {"question_id": "mt-1", "model": "org/tiny", "judge": ["oracle", "oracle-verify"],
         "user_prompt": "Sort 3 1 2 .", "judgment": judgments[2], "score": 10.0, "turn": 1}]


# ---------------------------------------------------------------- real mode: the generation plan, judge requests
def test_real_mode_groups_by_fastchat_temperature_and_skips_missing_turns(tmp_path):
    """FastChat's temperature_config: math 0.0, stem 0.1, writing 0.7; a category it lacks gets
    gen_model_answer's default 0.7 (so it shares writing's call). Temperatures are visited in
    ascending order each turn; at turn 2 the one-turn math question has no turn, and the other
    temperatures still run."""
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
    assert _pending(res.info)
    assert {k: v for k, v in res.info.items() if k != "judging"} == {
        "mode": "fastchat", "n_questions": 4, "answers": "model_answer/m.jsonl"}


def test_llm_judgment_rows_as_fastchat_writes_them(tmp_path):
    """Each row as FastChat's single-mode judgment file holds it, the user prompt filled from the
    fixture's templates (math against gpt-4's reference answers 42 / 84); the judge's prompt text
    is the contract with FastChat, so it is compared whole."""
    data = write_mt_bench_fixture(tmp_path / "mirror")
    ctx = EvalContext(model="u", name="org/m", out_dir=tmp_path / "a", data_dir=data, options={"question_limit": 2})
    saved = {81: {"choices": [{"index": 0, "turns": ["x1", "x2"]}]}, 111: {"choices": [{"index": 0, "turns": ["y1", "y2"]}]}}
    judge = _Scripted(["[[7]]", None, "Rating: [2]", "none"])
    rows = _judge_llm(ctx, judge, "gpt-4", load_mt_questions(ctx), saved)
    assert all(isinstance(r.pop("tstamp"), float) for r in rows)
    poem, rhyme = _turns(data)[81]
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
    system = {p["name"]: p["system_prompt"] for p in _jsonl(data / "mt_bench" / "judge_prompts.jsonl")}["single-v1"]
    assert judge.requests[0] == [{"role": "system", "content": system},
                                 {"role": "user", "content": f"Question:\n{poem}\n\nReply:\nx1"}]


def test_reference_answers_are_read_only_when_a_question_needs_one(tmp_path):
    import shutil

    data = write_mt_bench_fixture(tmp_path / "mirror")
    ctx = EvalContext(model="u", name="m", out_dir=tmp_path / "a", data_dir=data)
    math_q = {"question_id": 7, "category": "math", "turns": ["a", "b"]}
    saved = {7: {"choices": [{"index": 0, "turns": ["x", "y"]}]}, 81: {"choices": [{"index": 0, "turns": ["x", "y"]}]}}
    with pytest.raises(SuiteError) as err:
        _judge_llm(ctx, _Scripted(["[[1]]"] * 2), "gpt-4", [math_q], saved)
    assert "gpt-4" in str(err.value) and str(err.value).endswith("question 7")
    shutil.rmtree(data / "mt_bench" / "reference_answer")  # a writing question never reads the references
    writing = {"question_id": 81, "category": "writing", "turns": ["a", "b"]}
    rows = _judge_llm(ctx, _Scripted(["[[4]]", "[[5]]"]), "gpt-4", [writing], saved)
    assert [(r["judge"][1], r["score"]) for r in rows] == [("single-v1", 4), ("single-v1-multi-turn", 5)]


def test_a_judge_prompt_with_another_output_format_is_refused():
    from selm_bench.evals.mt_bench import _judge_messages

    template = {"name": "pair-v2", "output_format": "[[A]]", "system_prompt": "s", "prompt_template": "{question}"}
    with pytest.raises(SuiteError) as err:
        _judge_messages(template, {"turns": ["q"]}, {"choices": [{"turns": ["a"]}]}, None, multi_turn=False)
    assert "'pair-v2'" in str(err.value) and "output format" in str(err.value)


def test_judgment_file_name_flattens_slashes_and_nan_means_none(tmp_path):
    from selm_bench.evals.mt_bench import _judgment_file, _num

    ctx = EvalContext(model="u", name="m", out_dir=tmp_path)
    assert _judgment_file(ctx, "org/judge-1") == tmp_path / "model_judgment" / "org_judge-1_single.jsonl"
    assert _num(float("nan")) is None and _num(None) is None and _num(3) == 3.0
    assert metrics_from_judgments([]) == {}
