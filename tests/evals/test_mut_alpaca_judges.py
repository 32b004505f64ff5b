"""Whole-output checks of AlpacaEval's plumbing (evals/alpaca_eval.py), the `openai:` judge client
(evals/openai_judge.py) and the judge interface (evals/judges.py), with stand-ins for models,
endpoints and alpaca_eval's annotator: every expected value is written out by hand."""

import hashlib
import json
import logging
import math
import statistics
import types

import httpx
import openai
import pytest
from pydantic import ValidationError

from selm_bench.evals import alpaca_eval as A
from selm_bench.evals import openai_judge as OJ
from selm_bench.evals.base import EvalContext, SuiteError, validated_options
from selm_bench.evals.judges import Judge, OracleJudge, make_judge
from selm_bench.evals.openai_judge import OpenAIJudge
from selm_bench.trainers.generation import Sampling

ALL_NONE = {"win_rate": None, "standard_error": None, "n_wins": None, "n_wins_base": None, "n_draws": None,
            "n_total": None, "discrete_win_rate": None, "avg_length": None, "length_controlled_winrate": None,
            "lc_standard_error": None}
SOURCE = ("the alpaca_eval GitHub repo (tatsu-lab/alpaca_eval) results/gpt4_1106_preview/model_outputs.json, "
          "or the HF dataset tatsu-lab/alpaca_eval")


def _chatml(text):
    return f"<|im_start|>user\n{text}\n<|im_end|>"


# ---------------------------------------------------------------- judges.py
def test_base_judge_refuses_chat_and_score_and_reports_nothing():
    judge = Judge()
    assert judge.name == "judge"
    with pytest.raises(NotImplementedError) as err:
        judge.chat_many([[{"role": "user", "content": "x"}]])
    assert str(err.value) == "judge 'judge' does not answer chat requests"
    with pytest.raises(NotImplementedError) as err:
        judge.score({"category": "add", "answer": "1"}, "1")
    assert str(err.value) == "judge 'judge' cannot verify answers"
    assert judge.accounting() == {}
    assert judge.check() is None


def test_oracle_judge_scores_with_the_verifier_and_counts_calls():
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
    assert str(err.value) == "judge 'oracle' does not answer chat requests"
    assert judge.accounting() == {"calls": 3, "cached": 0, "failures": 0, "prompt_tokens": 0, "completion_tokens": 0}


def test_make_judge_passes_spec_cache_dir_and_options(tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    judge = make_judge("openai:gpt-4o", cache_dir=tmp_path, concurrency=3, max_retries=1)
    assert type(judge) is OpenAIJudge
    assert (judge.model, judge.cache_dir, judge.concurrency, judge.max_retries) == ("gpt-4o", tmp_path / "openai", 3, 1)


# ---------------------------------------------------------------- openai_judge.py: construction
def test_openai_judge_defaults(monkeypatch):
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    judge = OpenAIJudge()
    assert judge.name == "openai"
    assert (judge.model, judge.cache_dir, judge.base_url) == ("gpt-4", None, None)
    assert (judge.concurrency, judge.max_retries, judge.timeout, judge.backoff) == (8, 5, 60.0, 1.0)
    assert judge.accounting() == {"calls": 0, "cached": 0, "failures": 0, "retries": 0, "prompt_tokens": 0,
                                  "completion_tokens": 0, "failure_reasons": {}}
    assert OpenAIJudge(spec="openai").model == "gpt-4"  # no ":": the default model


def test_openai_judge_spec_clamps_and_base_url(monkeypatch):
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
    assert str(err.value) == "judge spec 'openai:' names no model; use e.g. openai:gpt-4"


def test_client_is_built_once_with_our_retry_and_timeout_settings(monkeypatch):
    built = []

    class FakeOpenAI:
        def __init__(self, **kw):
            built.append(kw)

    monkeypatch.setattr(openai, "OpenAI", FakeOpenAI)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-build-0000")
    judge = OpenAIJudge(spec="openai:m", base_url="http://h.example/v1", timeout=7)
    assert judge.check() is None
    judge.check()
    assert built == [{"api_key": "sk-test-build-0000", "base_url": "http://h.example/v1", "max_retries": 0,
                      "timeout": 7.0}]
    for value in (None, ""):
        if value is None:
            monkeypatch.delenv("OPENAI_API_KEY")
        else:
            monkeypatch.setenv("OPENAI_API_KEY", value)
        with pytest.raises(SuiteError) as err:
            OpenAIJudge(spec="openai:m").check()
        assert str(err.value) == "OPENAI_API_KEY is not set (the openai judge reads its key from the environment only)"


def test_request_key_is_sha256_of_sorted_unescaped_json():
    judge = OpenAIJudge(spec="openai:m")
    msgs = [{"role": "user", "content": "café"}]
    # json.dumps with sorted keys, default separators, non-ASCII kept as is, then sha256 of its UTF-8
    blob = '{"max_tokens": 5, "messages": [{"content": "café", "role": "user"}], "model": "m"}'
    assert judge._key(msgs, {"max_tokens": 5}) == hashlib.sha256(blob.encode("utf-8")).hexdigest()
    assert judge._key(msgs, {"max_tokens": 5, "temperature": 0}) == judge._key(msgs, {"temperature": 0, "max_tokens": 5})


# ---------------------------------------------------------------- openai_judge.py: requests
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


def _status(code):
    request = httpx.Request("POST", "http://judge.example/v1/chat/completions")
    return openai.APIStatusError("injected", response=httpx.Response(code, request=request), body=None)


def _request():
    return httpx.Request("POST", "http://judge.example/v1/chat/completions")


def _msgs(text):
    return [{"role": "user", "content": text}]


def test_complete_many_dedupes_serves_cache_and_writes_whole_choices(tmp_path):
    judge = OpenAIJudge(spec="openai:judge-m", cache_dir=tmp_path, concurrency=1, max_retries=0)
    usage = {"A": types.SimpleNamespace(prompt_tokens=10, completion_tokens=2, total_tokens=12), "B": None}
    judge._client = _FakeClient(answer=lambda m: _response("reply " + m[0]["content"], usage[m[0]["content"]]))
    params = {"temperature": 0, "max_tokens": 9}
    (tmp_path / "openai").mkdir()
    (tmp_path / "openai" / f"{judge._key(_msgs('C'), params)}.json").write_text(json.dumps({"content": "old reply"}))

    out = judge.complete_many([_msgs("C"), _msgs("C"), _msgs("A"), _msgs("B"), _msgs("A")], **params)
    choice_a = {"index": 0, "message": {"role": "assistant", "content": "reply A"}, "total_tokens": 12}
    choice_b = {"index": 0, "message": {"role": "assistant", "content": "reply B"}, "total_tokens": 0}
    old_c = {"index": 0, "message": {"role": "assistant", "content": "old reply"}}  # an entry of the older format
    assert out == [old_c, old_c, choice_a, choice_b, choice_a]
    assert judge._client.calls == [{"model": "judge-m", "messages": _msgs("A"), "n": 1, "temperature": 0, "max_tokens": 9},
                                   {"model": "judge-m", "messages": _msgs("B"), "n": 1, "temperature": 0, "max_tokens": 9}]
    assert judge.accounting() == {"calls": 2, "cached": 1, "failures": 0, "retries": 0, "prompt_tokens": 10,
                                  "completion_tokens": 2, "failure_reasons": {}}
    saved = json.loads((tmp_path / "openai" / f"{judge._key(_msgs('A'), params)}.json").read_text())
    assert saved == {"model": "judge-m", "content": "reply A", "choice": choice_a}
    assert judge.failure_reason(_msgs("A"), **params) is None

    again = judge.complete_many([_msgs("A")], **params)  # the whole choice comes back from the cache
    assert again == [choice_a] and len(judge._client.calls) == 2 and judge.accounting()["cached"] == 2


def test_chat_many_defaults_and_failed_requests(monkeypatch):
    judge = OpenAIJudge(spec="openai:m")
    seen = []

    def complete_many(requests, **params):
        seen.append(params)
        return [{"message": {"content": "yes"}}, None]

    monkeypatch.setattr(judge, "complete_many", complete_many)
    assert judge.chat_many([_msgs("a"), _msgs("b")]) == ["yes", None]
    assert judge.chat_many([_msgs("a"), _msgs("b")], temperature=0.7, max_tokens=3, top_p=0.5) == ["yes", None]
    assert seen == [{"temperature": 0.0, "max_tokens": 2048}, {"temperature": 0.7, "max_tokens": 3}]


def test_retriable_faults_back_off_exponentially_then_succeed(monkeypatch):
    sleeps = []
    monkeypatch.setattr(OJ.time, "sleep", sleeps.append)
    judge = OpenAIJudge(spec="openai:m", max_retries=4, backoff=1.0, concurrency=1)
    usage = types.SimpleNamespace(prompt_tokens=3, completion_tokens=1, total_tokens=4)
    judge._client = _FakeClient(script=[
        _status(503), openai.APITimeoutError(request=_request()), ValueError("not json"),
        types.SimpleNamespace(choices=[], usage=usage), _response("ok", usage)])
    assert judge.complete_many([_msgs("q")]) == [{"index": 0, "message": {"role": "assistant", "content": "ok"},
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
    assert judge.complete_many([_msgs("q")], temperature=0) == [None]
    assert sleeps == [50.0, 60.0]  # 50 * 2 = 100, capped at 60 s
    assert warnings_ == [("openai judge: request failed (%s) after %d attempt(s)", "HTTP 500", 3)]
    assert judge.failure_reason(_msgs("q"), temperature=0) == "HTTP 500 after 3 attempt(s)"
    assert judge.failure_reason(_msgs("q")) is None  # other params: another request
    acct = judge.accounting()
    assert (acct["calls"], acct["retries"], acct["failures"], acct["failure_reasons"]) == (3, 2, 1, {"HTTP 500": 3})

    judge._client.answer = lambda m: _response("fine", None)
    assert judge.complete_many([_msgs("q")], temperature=0) == [{"index": 0, "message": {"role": "assistant",
                                                                                         "content": "fine"},
                                                                  "total_tokens": 0}]
    assert judge.failure_reason(_msgs("q"), temperature=0) is None


def test_client_errors_are_not_retried_and_rejected_keys_stop(monkeypatch):
    sleeps = []
    monkeypatch.setattr(OJ.time, "sleep", sleeps.append)
    judge = OpenAIJudge(spec="openai:m", max_retries=3, concurrency=1)
    judge._client = _FakeClient(script=[_status(404), openai.APIConnectionError(request=_request()),
                                        _status(400)])
    assert judge.complete_many([_msgs("a")]) == [None]
    assert judge.failure_reason(_msgs("a")) == "HTTP 404 after 1 attempt(s)" and sleeps == []
    judge.max_retries = 1
    assert judge.complete_many([_msgs("b")]) == [None]  # connection error retried once, then 400 ends it
    assert judge.failure_reason(_msgs("b")) == "HTTP 400 after 2 attempt(s)" and sleeps == [1.0]
    assert judge.accounting()["failure_reasons"] == {"HTTP 404": 1, "APIConnectionError": 1, "HTTP 400": 1}
    for code in (401, 403):
        judge._client = _FakeClient(script=[_status(code)])
        with pytest.raises(SuiteError) as err:
            judge.complete_many([_msgs(f"k{code}")])
        assert str(err.value) == f"the judge endpoint rejected the OpenAI API key (HTTP {code})"


# ---------------------------------------------------------------- alpaca_eval.py: metrics
def _ann(prefs, annotators=None):
    return [{"instruction": f"i{n}", "output_1": "r", "output_2": "x" * (n + 1), "preference": p,
             **({"annotator": annotators[n]} if annotators else {})} for n, p in enumerate(prefs)]


def test_metrics_info_in_full_from_a_file_and_without_lc(tmp_path):
    missing = tmp_path / "nope.json"
    with pytest.raises(SuiteError) as err:
        A.metrics_from_annotations(str(missing))
    assert str(err.value) == f"annotations file not found: {missing}"
    path = tmp_path / "annotations.json"
    path.write_text(json.dumps(_ann([2.0, 1.0, None], annotators=["b", "a", "b"])))
    metrics, info = A.metrics_from_annotations(str(path))
    assert info == {"n_annotations": 3, "n_unannotated": 1, "annotator": "a, b",
                    "lc_unavailable": "no data_dir: LC needs df_gamed.csv (HF dataset tatsu-lab/alpaca_eval), "
                                      "never downloaded here"}
    # one win, one loss: 50 %; output_2 lengths 1, 2, 3 -> 2
    assert metrics == pytest.approx({**ALL_NONE, "win_rate": 50.0, "standard_error": 50.0, "n_wins": 1,
                                     "n_wins_base": 1, "n_draws": 0, "n_total": 2, "discrete_win_rate": 50.0,
                                     "avg_length": 2})
    metrics, info = A.metrics_from_annotations(_ann([2.0, 2.0]), length_controlled=False)
    assert info == {"n_annotations": 2, "n_unannotated": 0}
    assert (metrics["length_controlled_winrate"], metrics["lc_standard_error"]) == (None, None)


@pytest.mark.parametrize("lc,se,degenerate", [(50.0, 0.0, True), (50.0, 0.5, False), (51.0, 0.0, False)])
def test_only_an_exact_fifty_with_zero_error_is_degenerate(monkeypatch, lc, se, degenerate):
    monkeypatch.setattr(A, "_length_controlled",
                        lambda df, d: ({"length_controlled_winrate": lc, "lc_standard_error": se}, None))
    metrics, info = A.metrics_from_annotations(_ann([1.5, 1.5]), data_dir="unused")
    if degenerate:
        assert (metrics["length_controlled_winrate"], metrics["lc_standard_error"]) == (None, None)
        assert info == {"n_annotations": 2, "n_unannotated": 0,
                        "lc_degenerate": "GLM fit returned exactly 50.0 with zero error (all coefficients zero)",
                        "lc_raw": {"length_controlled_winrate": 50.0, "lc_standard_error": 0.0}}
    else:
        assert (metrics["length_controlled_winrate"], metrics["lc_standard_error"]) == (lc, se)
        assert info == {"n_annotations": 2, "n_unannotated": 0}


def test_local_hub_file_serves_only_the_mirrored_file(tmp_path):
    from alpaca_eval.metrics import glm_winrate

    original = glm_winrate.hf_hub_download
    local = tmp_path / "df_gamed.csv"
    with A._local_hub_file("df_gamed.csv", local):
        assert glm_winrate.hf_hub_download(repo_id="tatsu-lab/alpaca_eval", filename="df_gamed.csv",
                                           repo_type="dataset") == str(local)
        with pytest.raises(SuiteError) as err:
            glm_winrate.hf_hub_download(repo_id="tatsu-lab/alpaca_eval", filename="other.csv")
        assert str(err.value) == "alpaca_eval asked the hub for tatsu-lab/alpaca_eval/other.csv; only df_gamed.csv is mirrored"
    assert glm_winrate.hf_hub_download is original
    with pytest.raises(KeyError):
        with A._local_hub_file("df_gamed.csv", local):
            raise KeyError("inside")
    assert glm_winrate.hf_hub_download is original


# ---------------------------------------------------------------- alpaca_eval.py: options, registry, helpers
def test_option_bounds_at_their_edges():
    assert validated_options("alpaca-eval", {"limit": 1, "max_new_tokens": 1, "top_p": 1.0, "temperature": 0.0,
                                             "annotators_config": "x"}) == {
        "limit": 1, "max_new_tokens": 1, "temperature": 0.0, "top_p": 1.0, "annotators_config": "x"}
    for bad in ({"max_new_tokens": 0}, {"top_p": 0.0}, {"annotators_config": ""}, {"nucleus": 0.5}):
        with pytest.raises(ValidationError):
            validated_options("alpaca-eval", bad)


def test_registered_suite_headline_and_paired_metric():
    from selm_bench.harness.core import registry

    entry = registry.entry("suite", "alpaca-eval")
    assert (entry.obj, entry.options, entry.paired) == (A.run, A.AlpacaEvalOptions, A.paired)
    assert entry.headline == "length_controlled_winrate"


def test_sampling_and_generate_pass_options_and_user_turns(tmp_path):
    ctx = EvalContext(model="m", name="m", out_dir=tmp_path, suite="alpaca-eval", seed=7,
                      options={"temperature": 0.5, "top_p": 0.75, "max_new_tokens": 9})
    assert A._sampling(ctx) == Sampling(n=1, temperature=0.5, top_p=0.75, max_new_tokens=9, seed=7)

    class Gen:
        def chat(self, conversations, sampling):
            self.seen = (conversations, sampling)
            return [["first " + c[-1]["content"], "second"] for c in conversations]

    gen = Gen()
    assert A._generate(gen, ["p", "q"], "S") == ["first p", "first q"]
    assert gen.seen == ([[{"role": "user", "content": "p"}], [{"role": "user", "content": "q"}]], "S")


def test_unjudged_average_length_and_cached_rows(tmp_path):
    assert A._unjudged([{"output": "abcd"}]).metrics == {**ALL_NONE, "avg_length": 4}
    assert A._unjudged([]).metrics == {**ALL_NONE, "avg_length": 0}
    assert A._cached_rows(tmp_path / "none.json") == 0
    (tmp_path / "c.json").write_text(json.dumps([{}, {}, {}]))
    assert A._cached_rows(tmp_path / "c.json") == 3


def test_write_annotations_is_pandas_records_json_indented_two(tmp_path):
    path = tmp_path / "annotations.json"
    A._write_annotations(path, [{"instruction": "i", "preference": 1.5}, {"instruction": "j", "preference": None}])
    # pandas' to_json(orient="records", indent=2): no space after ":", None as null
    assert path.read_text() == ('[\n  {\n    "instruction":"i",\n    "preference":1.5\n  },\n'
                                '  {\n    "instruction":"j",\n    "preference":null\n  }\n]')


def test_judge_client_endpoint_precedence_and_cache_dir(tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.setenv("OPENAI_API_BASE", "http://api-base.example/v1")
    ctx = EvalContext(model="m", name="m", out_dir=tmp_path / "evals" / "alpaca-eval",
                      judge_options={"concurrency": 2, "max_retries": 1})
    judge = A._judge_client(ctx, "gpt-4-turbo")
    assert (judge.model, judge.base_url, judge.concurrency, judge.max_retries) == (
        "gpt-4-turbo", "http://api-base.example/v1", 2, 1)
    assert judge.cache_dir == tmp_path / "evals" / "judge-cache" / "openai"
    monkeypatch.setenv("OPENAI_BASE_URL", "http://base-url.example/v1")
    assert A._judge_client(ctx, "g").base_url == "http://base-url.example/v1"
    ctx.judge_options = {"base_url": "http://option.example/v1"}
    assert A._judge_client(ctx, "g").base_url == "http://option.example/v1"
    assert ctx.judge_options == {"base_url": "http://option.example/v1"}  # the context's dict is not changed
    with pytest.raises(SuiteError) as err:
        A._judge_client(ctx, "")
    assert str(err.value) == "alpaca-eval: judge spec 'openai:' names no model; use e.g. openai:gpt-4"


# ---------------------------------------------------------------- alpaca_eval.py: the completions contract
CHAT = ("max_tokens", "temperature", "top_p", "logprobs", "top_logprobs", "stop", "seed", "presence_penalty",
        "frequency_penalty", "response_format", "tools", "tool_choice", "functions", "function_call")


class _Client:
    def __init__(self, choices, acct=None, reason=None):
        self.choices, self.acct, self.reason, self.sent = choices, acct or {}, reason, []

    def complete_many(self, requests, **params):
        self.sent.append((requests, params))
        return self.choices[:len(requests)]

    def failure_reason(self, messages, **params):
        return self.reason

    def accounting(self):
        return self.acct


def test_completions_forward_every_chat_parameter_and_drop_alpaca_evals_own(tmp_path, monkeypatch):
    client = _Client([{"message": {"content": "ok"}, "total_tokens": 4}])
    monkeypatch.setattr(A, "_judge_client", lambda ctx, model: client)
    clock = iter([10.0, 16.0])
    monkeypatch.setattr(A.time, "time", lambda: next(clock))
    chat = {k: f"v{n}" for n, k in enumerate(CHAT)}
    own = {"num_procs": 2, "batch_size": 1, "is_strip": True, "price_per_token": 0.5, "requires_chatml": True,
           "is_chat": True}
    comp = A._Completions(EvalContext(model="m", name="m", out_dir=tmp_path))
    out = comp([_chatml("p")], "text-davinci-003", **chat, **own)  # requires_chatml=True overrides the model name
    assert client.sent == [([[{"role": "user", "content": "p"}]], chat)]
    assert out == {"completions": ["ok"], "completions_all": [{"message": {"content": "ok"}, "total_tokens": 4,
                                                               "text": "ok"}],
                   "price_per_example": [2.0], "time_per_example": [6.0]}  # 4 tokens x 0.5; 6 s for one prompt


def test_completions_refuse_completion_api_models(tmp_path, monkeypatch):
    monkeypatch.setattr(A, "_judge_client", lambda ctx, model: _Client([]))
    comp = A._Completions(EvalContext(model="m", name="m", out_dir=tmp_path))
    for model, kw in (("gpt-4", {"requires_chatml": False}), ("text-davinci-003", {})):
        with pytest.raises(SuiteError) as err:
            comp([_chatml("p")], model, max_tokens=1, **kw)
        assert str(err.value) == ("the annotator's completion settings are not chat-completion parameters the judge "
                                  "client sends (a completions-API model)")
    with pytest.raises(SuiteError) as err:
        comp([_chatml("p")], "gpt-4", logit_bias={}, best_of=2)
    assert str(err.value).endswith("sends (best_of, logit_bias)")


def test_completions_empty_replies_unknown_failures_and_one_client_per_model(tmp_path, monkeypatch):
    clients = {"gpt-4-a": [], "gpt-4-b": []}

    def judge_client(ctx, model):
        acct = {"gpt-4-a": {"calls": 2, "failure_reasons": {"HTTP 500": 1}},
                "gpt-4-b": {"calls": 3, "failure_reasons": {"HTTP 500": 2, "HTTP 429": 1}}}[model]
        c = _Client([{"message": None, "total_tokens": 2}, {"message": {"content": "", "tool_calls": []},
                                                            "total_tokens": 1}, None], acct)
        clients[model].append(c)
        return c

    monkeypatch.setattr(A, "_judge_client", judge_client)
    comp = A._Completions(EvalContext(model="m", name="m", out_dir=tmp_path))
    prompts = [_chatml("a"), _chatml("b"), _chatml("c")]
    out = comp(prompts, "gpt-4-a", price_per_token=1.0)
    assert out["completions"] == [" ", " ", ""]
    assert out["completions_all"][2] == {"text": "", "total_tokens": 0, "failed": "judge call failed: unknown"}
    assert comp.failed == {prompts[2]: "judge call failed: unknown"}
    comp(prompts[:1], "gpt-4-a", price_per_token=1.0)
    comp(prompts[:1], "gpt-4-b", price_per_token=1.0)
    assert [len(c[0].sent) for c in (clients["gpt-4-a"], clients["gpt-4-b"])] == [2, 1]  # the first client kept
    assert comp.accounting() == {"calls": 5, "failure_reasons": {"HTTP 500": 3, "HTTP 429": 1}}


# ---------------------------------------------------------------- alpaca_eval.py: _annotate with a stand-in annotator
def _fake_alpaca_eval(monkeypatch, tmp_path, annotations, client, new_cache_rows, seen):
    sentinel = object()

    class Single:
        fn_completions = sentinel

    class Annotator:
        def __init__(self, **kw):
            seen["kwargs"] = kw
            self.df_annotations, self.annotators = None, {"a": Single()}
            self.all_keys, self.annotation_key = ["instruction", "output_1", "output_2"], "preference"

        def annotate_head2head(self, outputs_1, outputs_2):
            seen["levels"] = (logging.getLogger().level, logging.getLogger("alpaca_eval").level)
            seen["columns"] = (list(self.df_annotations.columns), len(self.df_annotations))
            seen["outputs"] = (outputs_1, outputs_2)
            prompts = [_chatml(f"judge {a['instruction']} vs {a['output_2']}") for a in outputs_2]
            self.annotators["a"].fn_completions(prompts, "gpt-4-1106-preview", max_tokens=1, price_per_token=0.0)
            cache = tmp_path / "annotator_cache.json"
            rows = json.loads(cache.read_text()) if cache.exists() else []
            cache.write_text(json.dumps(rows + [{}] * new_cache_rows))
            if isinstance(annotations, BaseException):
                raise annotations
            return annotations

    fake = types.SimpleNamespace(annotators=types.SimpleNamespace(PairwiseAnnotator=Annotator),
                                 decoders=types.SimpleNamespace(openai=types.SimpleNamespace(openai_completions=sentinel)))
    monkeypatch.setattr(A, "_alpaca_eval", lambda: fake)
    monkeypatch.setattr(A, "_judge_client", lambda ctx, model: client)


def test_annotate_accounting_errors_and_quiet_loggers(tmp_path, monkeypatch):
    ok = {"message": {"content": "m"}, "total_tokens": 7}

    class Client(_Client):
        def failure_reason(self, messages, **params):
            return {"judge i2 vs o2": "HTTP 500 after 1 attempt(s)", "judge i3 vs zz": "HTTP 429 after 1 attempt(s)"}[
                messages[0]["content"]]

    client = Client([ok, None, None], {"calls": 3, "cached": 2, "retries": 1,
                                       "failure_reasons": {"HTTP 500": 1, "HTTP 429": 1}})
    annotations = [
        {"instruction": "i1", "output_2": "o1", "preference": 2.0, "preference_raw_completion": {"total_tokens": 7}},
        {"instruction": "i2", "output_2": "o2", "preference": None, "raw_completion": {"total_tokens": 3}},  # older key
        {"instruction": "i3", "output_2": "o3", "preference": float("nan"), "preference_raw_completion": None},
        {"instruction": "i4", "output_2": "o4", "preference": 1.5, "preference_raw_completion": {"total_tokens": None}},
    ]
    seen = {}
    _fake_alpaca_eval(monkeypatch, tmp_path, annotations, client, new_cache_rows=2, seen=seen)
    (tmp_path / "annotator_cache.json").write_text(json.dumps([{}]))  # one row cached by an earlier run
    levels = (logging.getLogger().level, logging.getLogger("alpaca_eval").level)
    ctx = EvalContext(model="m", name="m", out_dir=tmp_path, suite="alpaca-eval")
    outputs_2 = [{"instruction": "i1", "output_2": "o1"}, {"instruction": "i2", "output_2": "o2"},
                 {"instruction": "i3", "output_2": "zz"}]
    got, acct, errors = A._annotate(ctx, [{"instruction": "ref"}], outputs_2)

    assert got is annotations
    assert seen["kwargs"] == {"annotators_config": "weighted_alpaca_eval_gpt4_turbo",
                              "caching_path": tmp_path / "annotator_cache.json", "seed": 0,
                              "is_store_missing_annotations": False}
    assert seen["columns"] == (["instruction", "output_1", "output_2", "preference"], 0)
    assert seen["outputs"] == ([{"instruction": "ref"}], outputs_2)
    assert seen["levels"] == (logging.CRITICAL, logging.CRITICAL)
    assert (logging.getLogger().level, logging.getLogger("alpaca_eval").level) == levels
    # i3's failed prompt names i3 but not its output o3: no reason of its own
    assert errors == {"i2": "judge call failed: HTTP 500 after 1 attempt(s)", "i3": "the judge's reply gave no preference"}
    # cached = 4 annotations - 2 newly stored - 2 failed + 2 served by the client's disk cache
    assert acct == {"annotator": "weighted_alpaca_eval_gpt4_turbo", "calls": 3, "cached": 2, "failures": 2,
                    "retries": 1, "failure_reasons": {"HTTP 500": 1, "HTTP 429": 1}, "total_tokens": 10.0}


def test_annotate_with_empty_accounting_and_failures(tmp_path, monkeypatch):
    ctx = EvalContext(model="m", name="m", out_dir=tmp_path, suite="alpaca-eval",
                      options={"annotators_config": "my_config"})
    ann = [{"instruction": "i1", "output_2": "o1", "preference": 1.0}]
    seen = {}
    _fake_alpaca_eval(monkeypatch, tmp_path, ann, _Client([{"message": {"content": "m"}, "total_tokens": 1}]),
                      new_cache_rows=0, seen=seen)
    got, acct, errors = A._annotate(ctx, [], [{"instruction": "i1", "output_2": "o1"}])
    assert seen["kwargs"]["annotators_config"] == "my_config" and errors == {}
    # nothing stored now: the one annotation came from alpaca_eval's cache
    assert acct == {"annotator": "my_config", "calls": 0, "cached": 1, "failures": 0, "retries": 0,
                    "failure_reasons": {}, "total_tokens": 0}

    levels = (logging.getLogger().level, logging.getLogger("alpaca_eval").level)
    for exc, msg in ((SuiteError("the judge client broke"), "alpaca-eval annotator failed: the judge client broke"),
                     (RuntimeError(), "alpaca-eval annotator failed: RuntimeError: ")):
        _fake_alpaca_eval(monkeypatch, tmp_path, exc, _Client([None]), new_cache_rows=0, seen={})
        with pytest.raises(SuiteError) as err:
            A._annotate(ctx, [], [{"instruction": "i1", "output_2": "o1"}])
        assert str(err.value) == msg
        assert (logging.getLogger().level, logging.getLogger("alpaca_eval").level) == levels


# ---------------------------------------------------------------- alpaca_eval.py: real mode with stand-ins
def _reference(data, rows):
    ref = data / "alpaca_eval" / "results" / "gpt4_1106_preview" / "model_outputs.json"
    ref.parent.mkdir(parents=True)
    ref.write_text(json.dumps(rows))
    return ref


class _Gen:
    def __init__(self):
        self.seen = []

    def chat(self, conversations, sampling):
        self.seen.append((conversations, sampling))
        return [["out:" + c[-1]["content"]] for c in conversations]


def test_real_mode_no_judge_saves_outputs_and_items_in_full(tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)  # --no-judge needs no key
    data = tmp_path / "data"
    _reference(data, [{"dataset": "d", "instruction": "q0", "output": "r0"}, {"instruction": "q1", "output": "r1"},
                      {"dataset": "d", "instruction": "q2", "output": "r2"}])
    gen = _Gen()
    out_dir = tmp_path / "evals" / "m" / "alpaca-eval"
    ctx = EvalContext(model="m", name="policy", out_dir=out_dir, data_dir=data, options={"limit": 2}, seed=5,
                      no_judge=True, _generator=gen)
    result = A.run(ctx)
    assert gen.seen == [([[{"role": "user", "content": "q0"}], [{"role": "user", "content": "q1"}]],
                         Sampling(n=1, temperature=0.0, top_p=1.0, max_new_tokens=2048, seed=5))]
    assert result.items == [
        {"id": "0", "index": 0, "dataset": "d", "instruction": "q0", "output": "out:q0", "reference_output": "r0",
         "score": None},
        {"id": "1", "index": 1, "dataset": None, "instruction": "q1", "output": "out:q1", "reference_output": "r1",
         "score": None}]
    assert result.metrics == {**ALL_NONE, "avg_length": 6}
    assert result.info == {"no_judge": "outputs saved to model_outputs.json, not annotated"}
    assert json.loads((out_dir / "model_outputs.json").read_text()) == [
        {"dataset": "d", "instruction": "q0", "output": "out:q0", "generator": "policy"},
        {"dataset": None, "instruction": "q1", "output": "out:q1", "generator": "policy"}]
    assert sorted(p.name for p in out_dir.iterdir()) == ["model_outputs.json"]


def test_real_mode_errors_in_full(tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(SuiteError) as err:
        A.run(EvalContext(model="m", name="m", out_dir=tmp_path / "o"))
    assert str(err.value) == f"alpaca-eval needs data_dir with alpaca_eval/results/gpt4_1106_preview/model_outputs.json (from {SOURCE})"
    ref = tmp_path / "alpaca_eval" / "results" / "gpt4_1106_preview" / "model_outputs.json"
    with pytest.raises(SuiteError) as err:
        A.run(EvalContext(model="m", name="m", out_dir=tmp_path / "o", data_dir=tmp_path))
    assert str(err.value) == f"alpaca-eval reference outputs not found: {ref} (get it from {SOURCE})"
    _reference(tmp_path, [{"instruction": "q", "output": "r"}])
    with pytest.raises(SuiteError) as err:
        A.run(EvalContext(model="m", name="m", out_dir=tmp_path / "o", data_dir=tmp_path, _generator=_Gen()))
    assert str(err.value) == ("alpaca-eval: OPENAI_API_KEY is not set (the openai judge reads its key from the "
                              "environment only); or run with --no-judge and judge later")


def test_judge_saved_items_scores_errors_and_info_in_full(tmp_path, monkeypatch):
    data = tmp_path / "data"
    ref_rows = [{"dataset": "d", "instruction": f"q{n}", "output": f"r{n}"} for n in range(4)]
    del ref_rows[1]["dataset"]
    ref = _reference(data, ref_rows)
    out_dir = tmp_path / "evals" / "m" / "alpaca-eval"
    out_dir.mkdir(parents=True)
    saved = [{"dataset": None, "instruction": f"q{n}", "output": f"o{n}", "generator": "m"} for n in (2, 0, 3, 1)]
    (out_dir / "model_outputs.json").write_text(json.dumps(saved))
    annotations = [{"instruction": f"q{n}", "output_1": f"r{n}", "output_2": f"o{n}", "preference": p}
                   for n, p in ((2, 1.75), (0, None), (3, float("nan")), (1, 1.25))]
    calls = []

    def annotate(ctx, reference, model_outputs):
        calls.append((reference, model_outputs))
        return annotations, {"calls": 2}, {"q0": "judge call failed: HTTP 500 after 1 attempt(s)"}

    monkeypatch.setattr(A, "_annotate", annotate)
    result = A.judge_saved(EvalContext(model="m", name="m", out_dir=out_dir, data_dir=data))
    assert calls == [([ref_rows[2], ref_rows[0], ref_rows[3], ref_rows[1]], saved)]
    # id: the instruction's position in the reference; index: its position in the saved outputs
    assert result.items == [
        {"id": "2", "index": 0, "dataset": "d", "instruction": "q2", "output": "o2", "reference_output": "r2",
         "score": 0.75, "preference": 1.75},
        {"id": "0", "index": 1, "dataset": "d", "instruction": "q0", "output": "o0", "reference_output": "r0",
         "score": None, "preference": None, "judge_error": "judge call failed: HTTP 500 after 1 attempt(s)"},
        {"id": "3", "index": 2, "dataset": "d", "instruction": "q3", "output": "o3", "reference_output": "r3",
         "score": None, "preference": None, "judge_error": "the judge's reply gave no preference"},
        {"id": "1", "index": 3, "dataset": None, "instruction": "q1", "output": "o1", "reference_output": "r1",
         "score": 0.25, "preference": 1.25}]
    gamed = data / "alpaca_eval" / "df_gamed.csv"
    assert result.info == {"n_annotations": 4, "n_unannotated": 2,
                           "lc_unavailable": f"{gamed} not found (LC needs it; source: HF dataset tatsu-lab/alpaca_eval)",
                           "reference": str(ref), "n_instructions": 4, "judge": {"calls": 2},
                           "not_canonical": ["4/805 instructions", "no LC win rate"]}
    # judged: 0.75 and 0.25 -> 50 %; standard error 100 * stdev([0.75, 0.25]) / sqrt(2) = 100 * 0.3536 / 1.4142 = 25
    assert result.metrics == pytest.approx({**ALL_NONE, "win_rate": 50.0, "standard_error": 25.0, "n_wins": 1,
                                            "n_wins_base": 1, "n_draws": 0, "n_total": 2, "discrete_win_rate": 50.0,
                                            "avg_length": 2})
    written = json.loads((out_dir / "annotations.json").read_text())
    assert [(a["instruction"], a["preference"]) for a in written] == [("q2", 1.75), ("q0", None), ("q3", None),
                                                                      ("q1", 1.25)]


# ---------------------------------------------------------------- alpaca_eval.py: tiny mode with stand-ins
TINY_REASON = ("tiny mode: alpaca_eval's LC GLM uses df_gamed.csv's per-instruction difficulty of the 805 AlpacaEval "
               "instructions, which does not exist for tiny-world prompts")


def _tiny_setup(tmp_path, monkeypatch):
    from support.fixtures import answers_checkpoint, use_fixed_answers

    backend = use_fixed_answers(monkeypatch)
    world = tmp_path / "world"
    world.mkdir()
    rows = [{"id": "e0", "category": "add", "prompt": "p0", "answer": "42"},
            {"id": "e1", "category": "add", "prompt": "p1", "answer": "7"},
            {"id": "e2", "category": "extract", "prompt": "p2", "answer": "ab"},
            {"id": "e3", "category": "add", "prompt": "p3", "answer": "1"}]
    (world / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    model = answers_checkpoint(tmp_path / "policy", {"p0": "42", "p1": "7", "p2": "ax", "p3": "1"})
    ref = answers_checkpoint(tmp_path / "checkpoints" / "sft" / "model", {"p0": "", "p1": "7", "p2": "ab", "p3": "1"})
    return backend, world, model, ref


def test_tiny_mode_items_annotations_and_info_in_full(tmp_path, monkeypatch):
    backend, world, model, ref = _tiny_setup(tmp_path, monkeypatch)
    out_dir = tmp_path / "evals" / "policy" / "alpaca-eval"
    ctx = EvalContext(model=str(model), name="policy", out_dir=out_dir, options={"limit": 3}, world_dir=world,
                      backend=backend, references={"sft": ref})
    result = A.judge_saved(ctx)  # tiny mode: regenerates and judges in one go
    # verifier: "42"/"" -> 1, 0: preference 2; "7"/"7": tie 1.5; "ax"/"ab": 0.25 (half the char overlap 0.5)
    # vs 1 -> 1.5 + (0.25 - 1) / 2 = 1.125
    assert result.items == [
        {"index": 0, "id": "e0", "category": "add", "instruction": "p0", "output": "42", "reference_output": "",
         "score": 1.0, "verifier_score": 1.0, "ref_score": 0.0, "preference": 2.0},
        {"index": 1, "id": "e1", "category": "add", "instruction": "p1", "output": "7", "reference_output": "7",
         "score": 0.5, "verifier_score": 1.0, "ref_score": 1.0, "preference": 1.5},
        {"index": 2, "id": "e2", "category": "extract", "instruction": "p2", "output": "ax", "reference_output": "ab",
         "score": 0.125, "verifier_score": 0.25, "ref_score": 1.0, "preference": 1.125}]
    cache = ref.parent / "eval-cache"
    (cache_file,) = cache.iterdir()
    assert cache_file.name.startswith("alpaca-eval-outputs-") and len(cache_file.name) == len("alpaca-eval-outputs-.json") + 16
    assert json.loads(cache_file.read_text()) == {"reference": str(ref), "outputs": ["", "7", "ab"]}
    assert result.info == {"reference": str(ref), "reference_cache": str(cache_file), "n_annotations": 3,
                           "n_unannotated": 0, "annotator": "oracle", "lc_unavailable": TINY_REASON,
                           "judge": {"calls": 6, "cached": 0, "failures": 0, "prompt_tokens": 0, "completion_tokens": 0},
                           "preference_rule": "1.5 + (score_model - score_reference) / 2"}
    won = [1.0, 0.5, 0.125]
    # discrete: 2 -> win, 1.5 -> draw (a half), 1.125 -> loss; output lengths 2, 1, 2 -> int(5 / 3) = 1
    assert result.metrics == pytest.approx({
        **ALL_NONE, "win_rate": 100 * 1.625 / 3, "standard_error": 100 * statistics.stdev(won) / math.sqrt(3),
        "n_wins": 1, "n_wins_base": 1, "n_draws": 1, "n_total": 3, "discrete_win_rate": 50.0, "avg_length": 1})
    assert json.loads((out_dir / "annotations.json").read_text()) == [
        {"instruction": p, "output_1": ro, "generator_1": "sft-reference", "dataset": "tiny-world", "output_2": o,
         "generator_2": "policy", "annotator": "oracle", "preference": pref}
        for p, ro, o, pref in (("p0", "", "42", 2.0), ("p1", "7", "7", 1.5), ("p2", "ab", "ax", 1.125))]
    assert json.loads((out_dir / "model_outputs.json").read_text()) == [
        {"dataset": "tiny-world", "instruction": p, "output": o, "generator": "policy"}
        for p, o in (("p0", "42"), ("p1", "7"), ("p2", "ax"))]


def test_tiny_mode_reference_cache_reuse_no_judge_and_missing_reference(tmp_path, monkeypatch):
    from selm_bench.harness.core import registry

    backend, world, model, ref = _tiny_setup(tmp_path, monkeypatch)

    def ctx(**kw):
        return EvalContext(model=str(model), name="policy", out_dir=tmp_path / "evals" / "alpaca-eval",
                           world_dir=world, backend=backend, references={"sft": ref}, **kw)

    result = A.run(ctx(no_judge=True, options={"limit": 2}))
    (cache_file,) = (ref.parent / "eval-cache").iterdir()
    assert result.info == {"no_judge": "outputs saved to model_outputs.json, not annotated", "reference": str(ref),
                           "reference_cache": str(cache_file)}
    assert result.metrics == {**ALL_NONE, "avg_length": 1}  # "42", "7": int(3 / 2)
    assert not (tmp_path / "evals" / "alpaca-eval" / "annotations.json").exists()

    def no_backend(*args, **kwargs):
        raise AssertionError("the reference checkpoint was loaded again")

    monkeypatch.setattr(registry.get("backend", backend), "__init__", no_backend)
    gen = _Gen()
    again = A.run(ctx(no_judge=True, options={"limit": 2}, _generator=gen))  # same prompts: served from the cache
    assert again.info["reference_cache"] == str(cache_file)
    assert gen.seen[0][1] == Sampling(n=1, temperature=0.0, top_p=1.0, max_new_tokens=24, seed=0)

    no_ref = ctx(no_judge=True)
    no_ref.references = {}
    with pytest.raises(SuiteError) as err:
        A.run(no_ref)
    assert str(err.value) == ("alpaca-eval (tiny mode) compares against the SFT checkpoint; references['sft'] "
                              "is not set")
