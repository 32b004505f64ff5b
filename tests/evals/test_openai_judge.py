"""The judges (evals/judges.py): the interface, the oracle, and the `openai:` client
(evals/openai_judge.py) with its retries, cache and accounting, against stand-in clients and a
loopback OpenAI-compatible server; MT-Bench judged through that server."""

import hashlib
import json
import threading
import time
import types
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import openai
import pytest

from conftest import mt_bench_mirror, send_json, write_mt_bench_fixture
from selm_bench.evals import openai_judge as OJ
from selm_bench.evals.base import EvalContext, SuiteError
from selm_bench.evals.judges import Judge, OracleJudge, make_judge
from selm_bench.evals.mt_bench import judge_saved, run
from selm_bench.evals.openai_judge import OpenAIJudge

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


# ---------------------------------------------------------------- the judge interface (evals/judges.py)
def test_the_base_judge_answers_no_chat_verifies_nothing_and_reports_no_accounting():
    """A judge implementing neither hook refuses both with NotImplementedError naming itself."""
    judge = Judge()
    assert judge.name == "judge"
    with pytest.raises(NotImplementedError) as err:
        judge.chat_many([[{"role": "user", "content": "x"}]])
    assert "'judge'" in str(err.value) and "chat" in str(err.value)
    with pytest.raises(NotImplementedError) as err:
        judge.score({"category": "add", "answer": "1"}, "1")
    assert "'judge'" in str(err.value) and "verify" in str(err.value)
    assert judge.accounting() == {}
    assert judge.check() is None


def test_the_oracle_judge_scores_with_the_verifier_and_counts_its_calls():
    judge = make_judge("oracle")
    assert type(judge) is OracleJudge and judge.name == "oracle"
    assert judge.accounting() == {"calls": 0, "cached": 0, "failures": 0, "prompt_tokens": 0, "completion_tokens": 0}
    item = {"category": "add", "answer": "42"}
    assert judge.score(item, "42") == 1.0
    assert judge.score(item, "") == 0.0
    # single token: character overlap, 0.5 * ratio; "42" vs "43": 2 * 1 match / 4 chars = 0.5 -> 0.25
    assert judge.score(item, "43") == 0.25
    with pytest.raises(NotImplementedError) as err:
        judge.chat_many([])
    assert "'oracle'" in str(err.value)
    assert judge.accounting() == {"calls": 3, "cached": 0, "failures": 0, "prompt_tokens": 0, "completion_tokens": 0}


def test_make_judge_passes_the_spec_cache_dir_and_options_to_the_client(tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    judge = make_judge("openai:gpt-4o", cache_dir=tmp_path, concurrency=3, max_retries=1)
    assert type(judge) is OpenAIJudge
    assert (judge.model, judge.cache_dir, judge.concurrency, judge.max_retries) == ("gpt-4o", tmp_path / "openai", 3, 1)


# ---------------------------------------------------------------- the openai: client, construction
def test_openai_judge_defaults(monkeypatch):
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    judge = OpenAIJudge()
    assert judge.name == "openai"
    assert (judge.model, judge.cache_dir, judge.base_url) == ("gpt-4", None, None)
    assert (judge.concurrency, judge.max_retries, judge.timeout, judge.backoff) == (8, 5, 60.0, 1.0)
    assert judge.accounting() == {"calls": 0, "cached": 0, "failures": 0, "retries": 0, "prompt_tokens": 0,
                                  "completion_tokens": 0, "failure_reasons": {}}
    assert OpenAIJudge(spec="openai").model == "gpt-4"  # no ":": the default model


def test_judge_spec_settings_are_clamped_and_the_endpoint_comes_from_option_then_env(monkeypatch):
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    # only the first ":" separates the registry name: fine-tuned model ids keep theirs
    assert OpenAIJudge(spec="openai:ft:gpt-4o:org").model == "ft:gpt-4o:org"
    judge = OpenAIJudge(spec="openai:m", concurrency=0, max_retries=-3, timeout="2.5", backoff="0.5")
    assert (judge.concurrency, judge.max_retries, judge.timeout, judge.backoff) == (1, 0, 2.5, 0.5)
    assert OpenAIJudge(spec="openai:m", concurrency="3").concurrency == 3
    assert OpenAIJudge(spec="openai:m", base_url="").base_url is None
    monkeypatch.setenv("OPENAI_BASE_URL", "http://env.example/v1")
    assert OpenAIJudge(spec="openai:m").base_url == "http://env.example/v1"
    assert OpenAIJudge(spec="openai:m", base_url="http://arg.example/v1").base_url == "http://arg.example/v1"
    with pytest.raises(SuiteError) as err:
        OpenAIJudge(spec="openai:")
    assert "'openai:'" in str(err.value)


def test_the_client_is_built_once_with_our_retry_and_timeout_settings(monkeypatch):
    built = []

    class FakeClient:
        def __init__(self, **kw):
            built.append(kw)

    monkeypatch.setattr(openai, "OpenAI", FakeClient)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-build-0000")
    judge = OpenAIJudge(spec="openai:m", base_url="http://h.example/v1", timeout=7)
    assert judge.check() is None
    judge.check()
    assert built == [{"api_key": "sk-test-build-0000", "base_url": "http://h.example/v1", "max_retries": 0,
                      "timeout": 7.0}]
    for value in (None, ""):  # an unset or empty key: refused before any client is built
        if value is None:
            monkeypatch.delenv("OPENAI_API_KEY")
        else:
            monkeypatch.setenv("OPENAI_API_KEY", value)
        with pytest.raises(SuiteError) as err:
            OpenAIJudge(spec="openai:m").check()
        assert "OPENAI_API_KEY" in str(err.value)
    assert len(built) == 1


def test_the_cache_key_is_the_sha256_of_the_sorted_request_json():
    judge = OpenAIJudge(spec="openai:m")
    msgs = [{"role": "user", "content": "café"}]
    # json.dumps with sorted keys, default separators, non-ASCII kept as is, then sha256 of its UTF-8
    blob = '{"max_tokens": 5, "messages": [{"content": "café", "role": "user"}], "model": "m"}'
    assert judge._key(msgs, {"max_tokens": 5}) == hashlib.sha256(blob.encode("utf-8")).hexdigest()
    assert judge._key(msgs, {"max_tokens": 5, "temperature": 0}) == judge._key(msgs, {"temperature": 0, "max_tokens": 5})


# ---------------------------------------------------------------- the openai: client, requests (a stand-in client)
class _Choice:
    def __init__(self, content):
        self.message = types.SimpleNamespace(content=content)

    def model_dump(self, mode):
        assert mode == "json"
        return {"index": 0, "message": {"role": "assistant", "content": self.message.content}}


def _response(content, usage):
    return types.SimpleNamespace(choices=[_Choice(content)], usage=usage)


class _FakeClient:
    """client.chat.completions.create: records its kwargs; `script` holds what to answer next
    (an exception to raise or a response), else `answer(messages)`."""

    def __init__(self, answer=None, script=()):
        self.calls, self.script, self.answer = [], list(script), answer
        self.chat = types.SimpleNamespace(completions=types.SimpleNamespace(create=self.create))

    def create(self, **kw):
        self.calls.append(kw)
        nxt = self.script.pop(0) if self.script else self.answer(kw["messages"])
        if isinstance(nxt, BaseException):
            raise nxt
        return nxt


def _request():
    return httpx.Request("POST", "http://judge.example/v1/chat/completions")


def _status(code):
    return openai.APIStatusError("injected", response=httpx.Response(code, request=_request()), body=None)


def _user(text):
    return [{"role": "user", "content": text}]


def test_complete_many_dedupes_serves_the_cache_and_stores_whole_choices(tmp_path):
    judge = OpenAIJudge(spec="openai:judge-m", cache_dir=tmp_path, concurrency=1, max_retries=0)
    usage = {"A": types.SimpleNamespace(prompt_tokens=10, completion_tokens=2, total_tokens=12), "B": None}
    judge._client = _FakeClient(answer=lambda m: _response("reply " + m[0]["content"], usage[m[0]["content"]]))
    params = {"temperature": 0, "max_tokens": 9}
    (tmp_path / "openai").mkdir()
    (tmp_path / "openai" / f"{judge._key(_user('C'), params)}.json").write_text(json.dumps({"content": "old reply"}))

    out = judge.complete_many([_user("C"), _user("C"), _user("A"), _user("B"), _user("A")], **params)
    choice_a = {"index": 0, "message": {"role": "assistant", "content": "reply A"}, "total_tokens": 12}
    choice_b = {"index": 0, "message": {"role": "assistant", "content": "reply B"}, "total_tokens": 0}
    old_c = {"index": 0, "message": {"role": "assistant", "content": "old reply"}}  # an entry of the older format
    assert out == [old_c, old_c, choice_a, choice_b, choice_a]
    assert judge._client.calls == [{"model": "judge-m", "messages": _user("A"), "n": 1, "temperature": 0, "max_tokens": 9},
                                   {"model": "judge-m", "messages": _user("B"), "n": 1, "temperature": 0, "max_tokens": 9}]
    assert judge.accounting() == {"calls": 2, "cached": 1, "failures": 0, "retries": 0, "prompt_tokens": 10,
                                  "completion_tokens": 2, "failure_reasons": {}}
    saved = json.loads((tmp_path / "openai" / f"{judge._key(_user('A'), params)}.json").read_text())
    assert saved == {"model": "judge-m", "content": "reply A", "choice": choice_a}
    assert judge.failure_reason(_user("A"), **params) is None

    again = judge.complete_many([_user("A")], **params)  # the whole choice comes back from the cache
    assert again == [choice_a] and len(judge._client.calls) == 2 and judge.accounting()["cached"] == 2


def test_chat_many_defaults_to_greedy_2048_tokens_and_passes_failures_as_none(monkeypatch):
    judge = OpenAIJudge(spec="openai:m")
    seen = []

    def complete_many(requests, **params):
        seen.append(params)
        return [{"message": {"content": "yes"}}, None]

    monkeypatch.setattr(judge, "complete_many", complete_many)
    assert judge.chat_many([_user("a"), _user("b")]) == ["yes", None]
    assert judge.chat_many([_user("a"), _user("b")], temperature=0.7, max_tokens=3, top_p=0.5) == ["yes", None]
    assert seen == [{"temperature": 0.0, "max_tokens": 2048}, {"temperature": 0.7, "max_tokens": 3}]


def test_retriable_faults_back_off_exponentially_then_succeed(monkeypatch):
    sleeps = []
    monkeypatch.setattr(OJ.time, "sleep", sleeps.append)
    judge = OpenAIJudge(spec="openai:m", max_retries=4, backoff=1.0, concurrency=1)
    usage = types.SimpleNamespace(prompt_tokens=3, completion_tokens=1, total_tokens=4)
    judge._client = _FakeClient(script=[
        _status(503), openai.APITimeoutError(request=_request()), ValueError("not json"),
        types.SimpleNamespace(choices=[], usage=usage), _response("ok", usage)])
    assert judge.complete_many([_user("q")]) == [{"index": 0, "message": {"role": "assistant", "content": "ok"},
                                                 "total_tokens": 4}]
    assert sleeps == [1.0, 2.0, 4.0, 8.0]  # backoff * 2**attempt
    assert judge.accounting() == {"calls": 5, "cached": 0, "failures": 0, "retries": 4, "prompt_tokens": 3,
                                  "completion_tokens": 1,
                                  "failure_reasons": {"HTTP 503": 1, "APITimeoutError": 1,
                                                      "malformed response (ValueError)": 1,
                                                      "response without a message": 1}}


def test_giving_up_records_the_reason_caps_the_sleep_and_clears_on_success(monkeypatch):
    sleeps, warnings_ = [], []
    monkeypatch.setattr(OJ.time, "sleep", sleeps.append)
    monkeypatch.setattr(OJ, "log", types.SimpleNamespace(warning=lambda *a: warnings_.append(a)))
    judge = OpenAIJudge(spec="openai:m", max_retries=2, backoff=50.0, concurrency=1)
    judge._client = _FakeClient(script=[_status(500), _status(500), _status(500)])
    assert judge.complete_many([_user("q")], temperature=0) == [None]
    assert sleeps == [50.0, 60.0]  # 50 * 2 = 100, capped at 60 s
    assert len(warnings_) == 1 and warnings_[0][1:] == ("HTTP 500", 3)  # one warning: the reason, the attempts
    assert judge.failure_reason(_user("q"), temperature=0) == "HTTP 500 after 3 attempt(s)"
    assert judge.failure_reason(_user("q")) is None  # other params: another request
    acct = judge.accounting()
    assert (acct["calls"], acct["retries"], acct["failures"], acct["failure_reasons"]) == (3, 2, 1, {"HTTP 500": 3})

    judge._client.answer = lambda m: _response("fine", None)
    assert judge.complete_many([_user("q")], temperature=0) == [{"index": 0, "message": {"role": "assistant",
                                                                                         "content": "fine"},
                                                                  "total_tokens": 0}]
    assert judge.failure_reason(_user("q"), temperature=0) is None


def test_client_errors_are_not_retried_and_a_rejected_key_stops_the_run(monkeypatch):
    sleeps = []
    monkeypatch.setattr(OJ.time, "sleep", sleeps.append)
    judge = OpenAIJudge(spec="openai:m", max_retries=3, concurrency=1)
    judge._client = _FakeClient(script=[_status(404), openai.APIConnectionError(request=_request()),
                                        _status(400)])
    assert judge.complete_many([_user("a")]) == [None]
    assert judge.failure_reason(_user("a")) == "HTTP 404 after 1 attempt(s)" and sleeps == []
    judge.max_retries = 1
    assert judge.complete_many([_user("b")]) == [None]  # connection error retried once, then 400 ends it
    assert judge.failure_reason(_user("b")) == "HTTP 400 after 2 attempt(s)" and sleeps == [1.0]
    assert judge.accounting()["failure_reasons"] == {"HTTP 404": 1, "APIConnectionError": 1, "HTTP 400": 1}
    for code in (401, 403):
        judge._client = _FakeClient(script=[_status(code)])
        with pytest.raises(SuiteError) as err:
            judge.complete_many([_user(f"k{code}")])
        assert f"(HTTP {code})" in str(err.value) and "API key" in str(err.value)
        assert len(judge._client.calls) == 1  # not retried
