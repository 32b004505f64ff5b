import json

import pytest

from conftest import mt_bench_mirror
from selm_bench.evals.base import EvalContext, SuiteError
from selm_bench.evals.judges import Judge
from selm_bench.evals.mt_bench import _judge_llm, judge_saved, metrics_from_judgments, parse_rating, run


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
    assert res.info["judge"]["calls"] == 8
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
