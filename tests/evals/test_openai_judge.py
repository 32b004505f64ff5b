import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import mt_bench_mirror, send_json, write_mt_bench_fixture
from selm_bench.evals.base import EvalContext, SuiteError
from selm_bench.evals.judges import make_judge
from selm_bench.evals.mt_bench import judge_saved, run

KEY = "sk-test-SECRET123"


class FakeOpenAI:
    """An OpenAI-compatible /v1/chat/completions on 127.0.0.1; `fail` holds statuses to return first."""

    def __init__(self):
        self.requests, self.auth, self.fail = [], [], []
        self.content = lambda body: "Rating: [[7]]"  # the judge's reply to a request body
        self.usage = {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14}
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with fake.lock:
                    fake.auth.append(self.headers.get("Authorization"))
                    status = fake.fail.pop(0) if fake.fail else 200
                    if status == 200:
                        fake.requests.append(body)
                if self.path != "/v1/chat/completions":
                    status = 404
                payload = {"error": {"message": "injected", "type": "test"}} if status != 200 else {
                    "id": "chatcmpl-1", "object": "chat.completion", "created": int(time.time()),
                    "model": body["model"],
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": fake.content(body)}}],
                    "usage": fake.usage,
                }
                send_json(self, status, payload)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)


@pytest.fixture
def fake_openai(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    fake = FakeOpenAI()
    fake.thread.start()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()


def _msgs(text):
    return [{"role": "system", "content": "judge"}, {"role": "user", "content": text}]


def test_missing_key_is_a_clear_error_at_first_use(monkeypatch, tmp_path):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    judge = make_judge("openai:gpt-4", cache_dir=tmp_path)  # constructing needs no key
    with pytest.raises(SuiteError, match="OPENAI_API_KEY is not set"):
        judge.chat_many([_msgs("x")])


def test_retries_429_and_500_then_succeeds(fake_openai, tmp_path):
    fake_openai.fail = [429, 500]
    judge = make_judge("openai:gpt-4o-mini", cache_dir=tmp_path, base_url=fake_openai.url, concurrency=1, backoff=0.01)
    out = judge.chat_many([_msgs("a"), _msgs("b")], temperature=0, max_tokens=16)
    assert out == ["Rating: [[7]]", "Rating: [[7]]"]
    assert judge.accounting() == {"calls": 4, "cached": 0, "failures": 0, "retries": 2,
                                  "prompt_tokens": 22, "completion_tokens": 6,
                                  "failure_reasons": {"HTTP 429": 1, "HTTP 500": 1}}
    assert fake_openai.requests[0]["model"] == "gpt-4o-mini" and fake_openai.requests[0]["max_tokens"] == 16
    assert set(fake_openai.auth) == {f"Bearer {KEY}"}


def test_gives_up_after_max_retries_and_on_client_errors(fake_openai, tmp_path):
    fake_openai.fail = [503, 503, 503, 400]
    judge = make_judge("openai:gpt-4", cache_dir=tmp_path, base_url=fake_openai.url, concurrency=1,
                       max_retries=2, backoff=0.01)
    assert judge.chat_many([_msgs("a")]) == [None]  # 3 attempts, all 503
    assert judge.chat_many([_msgs("b")]) == [None]  # 400 is not retried
    acct = judge.accounting()
    assert (acct["calls"], acct["failures"], acct["retries"]) == (4, 2, 2)
    assert not list(tmp_path.rglob("*.json"))  # failures are never cached
    assert judge.chat_many([_msgs("a")]) == ["Rating: [[7]]"]  # and so are retried on the next run


def _data_subset(tmp_path, ids=(81, 111)):
    """A data dir with a few MT-Bench questions (one writing, one math) linked from the mirror."""
    src = mt_bench_mirror(tmp_path) / "mt_bench"
    dst = tmp_path / "data" / "mt_bench"
    dst.mkdir(parents=True)
    rows = [line for line in (src / "question.jsonl").read_text().splitlines() if json.loads(line)["question_id"] in ids]
    (dst / "question.jsonl").write_text("\n".join(rows) + "\n")
    (dst / "judge_prompts.jsonl").symlink_to(src / "judge_prompts.jsonl")
    (dst / "reference_answer").symlink_to(src / "reference_answer")
    return dst.parent


def test_mt_bench_real_mode_through_fake_openai(fake_openai, tiny_model, tmp_path):
    data = _data_subset(tmp_path)
    eval_dir = tmp_path / "eval"

    def ctx(**kw):
        return EvalContext(model=str(tiny_model), name="tiny", out_dir=eval_dir / "mt-bench", data_dir=data,
                           judge="openai:gpt-4", judge_options={"base_url": fake_openai.url, "backoff": 0.01},
                           options={"max_new_tokens": 4}, **kw)

    fake_openai.fail = [429, 500]
    res = run(ctx())
    assert res.metrics == {"score": 7.0, "turn-1": 7.0, "turn-2": 7.0, "category/math": 7.0,
                           "category/writing": 7.0, "errors": 0}
    acct = res.info["judge"]
    assert (acct["calls"], acct["retries"], acct["cached"], acct["failures"]) == (6, 2, 0, 0)
    assert acct["prompt_tokens"] == 44 and len(res.items) == 4
    assert {(r["temperature"], r["max_tokens"], r["model"]) for r in fake_openai.requests} == {(0, 2048, "gpt-4")}
    judged = [json.loads(x) for x in (eval_dir / "mt-bench" / "model_judgment" / "gpt-4_single.jsonl").open()]
    assert sorted((r["question_id"], r["turn"], r["judge"][1]) for r in judged) == [
        (81, 1, "single-v1"), (81, 2, "single-v1-multi-turn"),
        (111, 1, "single-math-v1"), (111, 2, "single-math-v1-multi-turn")]
    answers = [json.loads(x) for x in (eval_dir / "mt-bench" / "model_answer" / "tiny.jsonl").open()]
    assert [a["question_id"] for a in answers] == [81, 111] and all(a["model_id"] == "tiny" for a in answers)

    # re-judging unchanged answers is served from the cache: zero new calls
    n_before = len(fake_openai.requests)
    again = judge_saved(ctx())
    assert again.info["judge"]["calls"] == 0 and again.info["judge"]["cached"] == 4
    assert again.metrics == res.metrics and len(fake_openai.requests) == n_before

    # the key reaches the server and nothing else
    assert set(fake_openai.auth) == {f"Bearer {KEY}"}
    written = [p for p in eval_dir.rglob("*") if p.is_file()]
    assert any("judge-cache" in str(p) for p in written)
    assert not [p for p in written if "SECRET123" in p.read_text(errors="replace")]
    assert "SECRET123" not in json.dumps([res.info, res.items, again.info], default=str)


def test_rejected_key_stops_the_run_without_echoing_it(fake_openai, tmp_path):
    fake_openai.fail = [401]
    judge = make_judge("openai:gpt-4", cache_dir=tmp_path, base_url=fake_openai.url, backoff=0.01)
    with pytest.raises(SuiteError, match="rejected the OpenAI API key") as err:
        judge.chat_many([_msgs("a")])
    assert "SECRET123" not in str(err.value)


def test_mt_bench_checks_the_judge_before_generating(tiny_model, tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    data = _data_subset(tmp_path)
    for judge, msg in (("openai:gpt-4", "OPENAI_API_KEY is not set"), ("oracle", "needs an LLM judge")):
        out = tmp_path / judge.replace(":", "-")
        ctx = EvalContext(model=str(tiny_model), name="tiny", out_dir=out, data_dir=data, judge=judge,
                          options={"max_new_tokens": 4})
        with pytest.raises(SuiteError, match=msg):
            run(ctx)
        assert not (out / "model_answer").exists()  # nothing generated, nothing written


# Ratings by (question, turn), all different (the fixture mirror's questions: 81 writing, 111 math,
# 121 reasoning). The fake judge returns them only when a question is judged with the right template
# (turn 2 with the multi-turn one, math and reasoning against the reference), else 1.
RATINGS = {(81, 1): 9, (81, 2): 7, (111, 1): 3, (111, 2): 5, (121, 1): 6, (121, 2): 2}
TURN1 = {81: "Write a two-line poem about rain.", 111: "What is 12 + 30?", 121: "Is every square a rectangle?"}


def _rate(body: dict) -> str:
    text = body["messages"][-1]["content"]
    (qid,) = [q for q, t in TURN1.items() if t in text]
    turn = 2 if "Q2:" in text else 1
    right_template = ("Ref" in text) == (qid in (111, 121))
    return f"Rating: [[{RATINGS[(qid, turn)] if right_template else 1}]]"


def test_mt_bench_varied_ratings_land_on_their_turn_and_category(fake_openai, tiny_model, tmp_path):
    """A judge that rates every (question, turn) differently: a turn or category mix-up, or the
    wrong judge prompt for a category, changes these hand-computed numbers."""
    fake_openai.content = _rate
    data = write_mt_bench_fixture(tmp_path / "mirror")
    ctx = EvalContext(model=str(tiny_model), name="tiny", out_dir=tmp_path / "eval" / "mt-bench", data_dir=data,
                      judge="openai:gpt-4", judge_options={"base_url": fake_openai.url, "backoff": 0.01},
                      options={"max_new_tokens": 4})
    res = run(ctx)
    assert {i["id"]: i["score"] for i in res.items} == {f"{q}/turn-{t}": r for (q, t), r in RATINGS.items()}
    assert {(i["id"], i["category"], i["turn"]) for i in res.items} == {
        (f"{q}/turn-{t}", c, t) for q, c in ((81, "writing"), (111, "math"), (121, "reasoning")) for t in (1, 2)}
    assert res.metrics == pytest.approx({"score": 32 / 6, "turn-1": 18 / 3, "turn-2": 14 / 3, "category/writing": 8.0,
                                         "category/math": 4.0, "category/reasoning": 4.0, "errors": 0})


def test_token_counts_when_the_endpoint_reports_none(fake_openai, tmp_path):
    fake_openai.usage = {"completion_tokens": 2}  # some OpenAI-compatible servers leave fields out
    judge = make_judge("openai:gpt-4", cache_dir=tmp_path, base_url=fake_openai.url, concurrency=1)
    assert judge.chat_many([_msgs("a")]) == ["Rating: [[7]]"]
    acct = judge.accounting()
    assert (acct["prompt_tokens"], acct["completion_tokens"]) == (0, 2)


def test_which_statuses_are_retried(fake_openai, tmp_path):
    """408, 409, 429 and every 5xx are retried (the openai client's own set); another 4xx is not."""
    judge = make_judge("openai:gpt-4", cache_dir=tmp_path, base_url=fake_openai.url, concurrency=1, backoff=0.01)
    fake_openai.fail = [408, 409, 429, 502, 599]
    assert judge.chat_many([_msgs("a")]) == ["Rating: [[7]]"]
    assert judge.accounting()["retries"] == 5
    for status in (404, 422):
        fake_openai.fail = [status]
        assert judge.chat_many([_msgs(f"s{status}")]) == [None]
    assert judge.accounting()["retries"] == 5 and judge.accounting()["failure_reasons"]["HTTP 422"] == 1


def test_a_cache_entry_of_the_older_format_is_read(tmp_path, monkeypatch):
    """Cache files written before whole choices were kept hold only the text: still a hit, no call."""
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    judge = make_judge("openai:gpt-4", cache_dir=tmp_path, base_url="http://127.0.0.1:9/v1", max_retries=0)
    key = judge._key(_msgs("old"), {"temperature": 0.0, "max_tokens": 64})
    (tmp_path / "openai").mkdir()
    (tmp_path / "openai" / f"{key}.json").write_text(json.dumps({"content": "Rating: [[3]]"}))
    assert judge.chat_many([_msgs("old")], temperature=0.0, max_tokens=64) == ["Rating: [[3]]"]
    assert judge.accounting()["calls"] == 0 and judge.accounting()["cached"] == 1
