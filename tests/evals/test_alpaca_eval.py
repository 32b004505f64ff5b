"""AlpacaEval (evals/alpaca_eval.py): the published numbers from real annotations, the metrics by
hand, the length-controlled win rate's local data, the completions contract alpaca_eval's annotator
is served through, the real mode (stand-ins, and a loopback OpenAI-compatible judge) and the tiny
mode against the SFT checkpoint; alpaca_eval's installed package is never written to."""

import json
import logging
import math
import random
import socket
import statistics
import threading
import types
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from conftest import send_json as _send_json
from selm_bench.evals import alpaca_eval as A
from selm_bench.evals.alpaca_eval import METRIC_KEYS, judge_saved, metrics_from_annotations, run
from selm_bench.evals.base import EvalContext, SuiteError
from selm_bench.trainers.generation import Sampling


def _alpaca_eval_dir() -> Path:
    import alpaca_eval

    return Path(alpaca_eval.__file__).parent


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under the package (bytecode caches aside) with its size and mtime."""
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts
    }


@pytest.fixture
def no_network(monkeypatch):
    """Fail any connection that is not to this machine."""
    real = socket.socket.connect

    def connect(self, address):
        host = address[0] if isinstance(address, tuple) else address
        if host not in ("127.0.0.1", "localhost", "::1") and not str(host).startswith("/"):
            raise AssertionError(f"network access attempted: {address}")
        return real(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)


def _annotations(prefs, gen2="model", instructions=None):
    instructions = instructions or [f"instruction {i}" for i in range(len(prefs))]
    return [
        {"instruction": ins, "output_1": f"reference {i}", "output_2": "x" * (10 + 7 * i), "generator_1": "ref",
         "generator_2": gen2, "annotator": "test", "preference": p}
        for i, (ins, p) in enumerate(zip(instructions, prefs))
    ]


def test_openhermes_matches_published_numbers(no_network, tmp_path):
    """alpaca_eval's published leaderboard row for OpenHermes-2.5-Mistral-7B, from its 805 annotations
    (../shared/data's file when present, else the committed fixture with the same preferences)."""
    from support.fixtures import openhermes_annotations

    path = openhermes_annotations(tmp_path)
    data_dir = path.parents[3] if path.name == "annotations.json" else tmp_path
    metrics, info = metrics_from_annotations(path, data_dir=data_dir)
    assert metrics["win_rate"] == pytest.approx(10.3404, abs=1e-4)
    assert metrics["standard_error"] == pytest.approx(0.9357, abs=1e-4)
    assert (metrics["n_wins"], metrics["n_wins_base"], metrics["n_draws"], metrics["n_total"]) == (75, 727, 3, 805)
    assert metrics["discrete_win_rate"] == pytest.approx(9.5031, abs=1e-4)
    if not (data_dir / "alpaca_eval" / "df_gamed.csv").exists():
        assert metrics["length_controlled_winrate"] is None and "df_gamed.csv" in info["lc_unavailable"]


def test_win_rate_by_hand():
    """AlpacaEval 2.0's weighted win rate = mean(preference - 1) x 100 over annotated rows; the discrete
    one rounds each preference (1.5 stays a draw, worth a half); wins / base wins split at 0.5."""
    import statistics

    rows = _annotations([1.0, 2.0, 1.5, 1.2, 1.9, 1.0000003, 1.7, None])
    metrics, info = metrics_from_annotations(rows)
    won = [0.0, 1.0, 0.5, 0.2, 0.9, 0.0000003, 0.7]  # preference - 1, the unannotated row dropped
    assert metrics["win_rate"] == pytest.approx(100 * 3.3000003 / 7)
    assert metrics["standard_error"] == pytest.approx(100 * statistics.stdev(won) / math.sqrt(7))
    assert metrics["discrete_win_rate"] == pytest.approx(100 * (0 + 1 + 0.5 + 0 + 1 + 0 + 1) / 7)  # 1.2 -> 1, 1.7 -> 2
    assert (metrics["n_wins"], metrics["n_wins_base"], metrics["n_draws"], metrics["n_total"]) == (3, 3, 1, 7)
    assert metrics["avg_length"] == int(sum(10 + 7 * i for i in range(8)) / 8)  # output_2 lengths
    assert info["n_unannotated"] == 1 and set(metrics) == set(METRIC_KEYS)


def test_lc_unavailable_offline_is_none_with_reason(tmp_path, no_network):
    rows = _annotations([1.0, 2.0, 1.3, 1.8, 1.6, 1.1])
    for data_dir in (None, tmp_path):
        metrics, info = metrics_from_annotations(rows, data_dir=data_dir)
        assert metrics["length_controlled_winrate"] is None and metrics["lc_standard_error"] is None
        assert "df_gamed.csv" in info["lc_unavailable"]
        assert math.isfinite(metrics["win_rate"])


def test_lc_uses_local_df_gamed_without_writing_site_packages(tmp_path, monkeypatch, no_network):
    """The GLM runs on a local df_gamed.csv (synthetic here: it checks the plumbing, not the numbers)."""
    import pandas as pd
    from alpaca_eval.metrics import glm_winrate

    before = _snapshot(_alpaca_eval_dir())
    monkeypatch.chdir(tmp_path)
    n, rng = 40, random.Random(0)
    instructions = [f"instruction {i}" for i in range(n)]
    ref = tmp_path / "data" / "alpaca_eval" / "results" / "gpt4_1106_preview" / "model_outputs.json"
    ref.parent.mkdir(parents=True)
    ref.write_text(json.dumps([{"instruction": s, "output": "r", "dataset": "d", "generator": "gpt4_1106_preview"} for s in instructions]))
    difficulty = [rng.gauss(0, 1) for _ in range(n)]
    gamed = []
    for m in ("gamed_a", "gamed_b"):
        for i in range(n):
            delta = rng.gauss(0, 1)  # longer output_2 (negative delta) wins more often
            gamed.append({"model": m, "index": i, "preference": 1 / (1 + math.exp(2 * delta)), "std_delta_len": delta,
                          "instruction_difficulty": difficulty[i], "not_gamed_baseline": False})
    pd.DataFrame(gamed).to_csv(tmp_path / "data" / "alpaca_eval" / "df_gamed.csv", index=False)
    # output_2 grows with i (see _annotations) and so does the preference: a length-driven win rate.
    rows = _annotations([min(2.0, 1.2 + 0.8 * i / n + rng.gauss(0, 0.05)) for i in range(n)], instructions=instructions)
    rng.shuffle(rows)  # order must not matter: rows are indexed by their instruction's position

    metrics, info = metrics_from_annotations(rows, data_dir=tmp_path / "data")
    assert "lc_unavailable" not in info, info
    assert 0 < metrics["length_controlled_winrate"] < 100 and metrics["lc_standard_error"] >= 0
    assert glm_winrate.hf_hub_download.__module__.startswith("huggingface_hub")  # the local file patch is undone
    assert _snapshot(_alpaca_eval_dir()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


def _tiny_ctx(tmp_path, tiny_world, tiny_model, **kw):
    return EvalContext(
        model=str(tiny_model), name="tiny-policy", out_dir=tmp_path / "evals" / "tiny-policy" / "alpaca-eval",
        options={"limit": 6, "max_new_tokens": 6}, world_dir=tiny_world,
        **{"references": {"sft": Path(tiny_model)}, **kw},
    )


def test_tiny_mode_end_to_end(tmp_path, tiny_world, tiny_model, no_network):
    import shutil

    before = _snapshot(_alpaca_eval_dir())
    sft = tmp_path / "checkpoints" / "sft" / "model"  # the reference checkpoint, as a run lays it out
    shutil.copytree(tiny_model, sft)
    ctx = _tiny_ctx(tmp_path, tiny_world, tiny_model)
    ctx.references = {"sft": sft}
    result = run(ctx)
    assert set(result.metrics) == set(METRIC_KEYS)
    assert math.isfinite(result.metrics["win_rate"]) and result.metrics["n_total"] == 6
    assert result.metrics["length_controlled_winrate"] is None and "tiny mode" in result.info["lc_unavailable"]
    assert len(result.items) == 6
    assert {"id", "instruction", "output", "reference_output", "preference", "score", "verifier_score", "ref_score"} <= set(result.items[0])
    assert all(1.0 <= i["preference"] <= 2.0 and i["score"] == i["preference"] - 1 for i in result.items)
    ann = json.loads((ctx.out_dir / "annotations.json").read_text())
    assert ann[0]["generator_1"] == "sft-reference" and ann[0]["generator_2"] == "tiny-policy"
    outs = json.loads((ctx.out_dir / "model_outputs.json").read_text())
    assert set(outs[0]) == {"dataset", "instruction", "output", "generator"}

    cache = Path(result.info["reference_cache"])
    assert cache.parent == tmp_path / "checkpoints" / "sft" / "eval-cache"  # one cache per reference model
    stamp = cache.stat().st_mtime_ns
    again = run(_tiny_ctx(tmp_path, tiny_world, tiny_model, references={"sft": sft}))  # from the cache
    assert cache.stat().st_mtime_ns == stamp and again.metrics == result.metrics
    assert _snapshot(_alpaca_eval_dir()) == before


# ---------------------------------------------------------------- real mode against a fake local judge
API_KEY = "sk-test-local-judge-0123456789"


class _FakeJudge(BaseHTTPRequestHandler):
    """Chat completions with logprobs, shaped like OpenAI's. It prefers an output tagged GOOD and the other
    one of a pair tagged BAD, wherever alpaca_eval's randomised order put them ("m" = first, "M" = second)."""

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
        prompt = body["messages"][-1]["content"]
        first, second = prompt.split('"model_identifier": "M"')
        first = first.split('"model_identifier": "m"')[1]
        token = "m" if "GOOD" in first or "BAD" in second else "M"
        self.server.shown_first.append("reference" if "answer" in first else "model")
        other = "M" if token == "m" else "m"
        top = [{"token": t, "bytes": list(t.encode()), "logprob": lp} for t, lp in ((token, -0.05), (other, -3.0))]
        reply = {
            "id": "chatcmpl-fake", "object": "chat.completion", "created": 0, "model": body["model"],
            "choices": [{
                "index": 0, "finish_reason": "length", "message": {"role": "assistant", "content": token},
                "logprobs": {"content": [{**top[0], "top_logprobs": top}]},
            }],
            "usage": {"prompt_tokens": 100, "completion_tokens": 1, "total_tokens": 101},
        }
        _send_json(self, 200, reply)

    def log_message(self, *args):
        pass


@pytest.fixture
def fake_judge():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeJudge)
    server.requests, server.shown_first = [], []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_real_mode_through_fake_local_openai_server(tmp_path, tiny_model, fake_judge, monkeypatch, no_network):
    before = _snapshot(_alpaca_eval_dir())
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{fake_judge.server_address[1]}/v1")
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    data = tmp_path / "data"
    ref = data / "alpaca_eval" / "results" / "gpt4_1106_preview" / "model_outputs.json"
    ref.parent.mkdir(parents=True)
    # The reference is GOOD on the first two (reference wins) and BAD on the third (the model wins).
    # These numbers make alpaca_eval (seed 0) show the pairs in both orders: switched, not, switched.
    ref.write_text(json.dumps([
        {"dataset": "test", "instruction": f"Question number {n} ?", "generator": "gpt4_1106_preview",
         "output": "GOOD answer" if j < 2 else "BAD answer"}
        for j, n in enumerate((0, 3, 1, 4))
    ]))
    ctx = EvalContext(model=str(tiny_model), name="tiny-policy", out_dir=tmp_path / "evals" / "alpaca-eval",
                      options={"limit": 3, "max_new_tokens": 4}, data_dir=data)
    result = run(ctx)

    assert len(fake_judge.requests) == 3
    assert sorted(fake_judge.shown_first) == ["model", "model", "reference"]  # randomised order, undone
    req = fake_judge.requests[0]
    assert req["path"] == "/v1/chat/completions" and req["auth"] == f"Bearer {API_KEY}"
    assert req["body"]["model"] == "gpt-4-1106-preview" and req["body"]["logprobs"] is True
    assert req["body"]["top_logprobs"] == 5 and req["body"]["max_tokens"] == 1

    p = 1 / (1 + math.exp(-2.95))  # the preferred token's share of m/M probability mass
    assert [i["preference"] for i in result.items] == pytest.approx([2 - p, 2 - p, 1 + p])
    m = result.metrics
    assert (m["n_wins"], m["n_wins_base"], m["n_draws"], m["n_total"]) == (1, 2, 0, 3)
    assert m["win_rate"] == pytest.approx(100 * (2 * (1 - p) + p) / 3)
    assert m["length_controlled_winrate"] is None and "lc_unavailable" in result.info
    acct = result.info["judge"]
    assert (acct["calls"], acct["cached"], acct["failures"]) == (3, 0, 0) and acct["total_tokens"] == 303

    ann = json.loads((ctx.out_dir / "annotations.json").read_text())
    assert [a["generator_1"] for a in ann] == ["gpt4_1106_preview"] * 3
    assert {a["generator_2"] for a in ann} == {"tiny-policy"} and ann[0]["annotator"] == "weighted_alpaca_eval_gpt4_turbo"
    outs = json.loads((ctx.out_dir / "model_outputs.json").read_text())
    assert len(outs) == 3 and outs[0]["generator"] == "tiny-policy"

    # Judge later: --no-judge saves outputs only; judge_saved annotates them to the same numbers.
    later = EvalContext(model=str(tiny_model), name="tiny-policy", out_dir=tmp_path / "evals" / "later",
                        options={"limit": 3, "max_new_tokens": 4}, data_dir=data, no_judge=True)
    assert run(later).metrics["win_rate"] is None and not (later.out_dir / "annotations.json").exists()
    later.no_judge = False
    assert judge_saved(later).metrics == result.metrics
    n = len(fake_judge.requests)
    again = judge_saved(later)  # re-judging unchanged outputs: alpaca_eval's cache, zero calls
    assert len(fake_judge.requests) == n and (again.info["judge"]["calls"], again.info["judge"]["cached"]) == (0, 3)
    assert [(i["id"], i["index"], i["dataset"]) for i in again.items] == [("0", 0, "test"), ("1", 1, "test"), ("2", 2, "test")]
    for f in tmp_path.rglob("*"):
        if f.is_file():
            assert API_KEY not in f.read_text(errors="ignore"), f
    assert _snapshot(_alpaca_eval_dir()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "evals"]


class _Unauthorized(BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        _send_json(self, 401, {"error": {"message": f"Incorrect API key provided: {API_KEY}",
                                         "type": "invalid_request_error", "code": "invalid_api_key"}})

    def log_message(self, *args):
        pass


def test_real_mode_auth_failure_is_one_line_without_the_key(tmp_path, tiny_model, monkeypatch, capfd, no_network):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Unauthorized)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.chdir(tmp_path)
        monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{server.server_address[1]}/v1")
        monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
        ref = tmp_path / "data" / "alpaca_eval" / "results" / "gpt4_1106_preview" / "model_outputs.json"
        ref.parent.mkdir(parents=True)
        ref.write_text(json.dumps([{"dataset": "t", "instruction": "Hi ?", "generator": "g", "output": "x"}]))
        ctx = EvalContext(model=str(tiny_model), name="p", out_dir=tmp_path / "ae",
                          options={"limit": 1, "max_new_tokens": 2}, data_dir=tmp_path / "data")
        with pytest.raises(SuiteError) as err:
            run(ctx)
    finally:
        server.shutdown()
        server.server_close()
    msg = str(err.value)
    assert "\n" not in msg and API_KEY not in msg and "annotator failed" in msg
    out = capfd.readouterr()
    assert API_KEY not in out.out + out.err and "Traceback" not in out.err


def test_tiny_mode_two_checkpoints_hand_computed(tmp_path, tiny_world, monkeypatch):
    """Two checkpoints with known outputs: per-item `id` (the world's prompt id) and `score` =
    preference - 1 (1: the model's output preferred, 0: the reference's, 0.5: a tie), the win rate
    and counts, all by hand. A reversed preference (reference minus model) fails this test."""
    from support.fixtures import answers_checkpoint, use_fixed_answers

    backend = use_fixed_answers(monkeypatch)
    rows = [json.loads(line) for line in (tiny_world / "eval.jsonl").read_text().splitlines()][:6]
    gold = [r["answer"] for r in rows]
    # row:        0     1     2     3     4     5
    # model:    gold  gold  gold   ""   gold   ""
    # reference: ""    ""    ""   gold  gold   ""
    model = answers_checkpoint(tmp_path / "policy", {r["prompt"]: g if i in (0, 1, 2, 4) else "" for i, (r, g) in enumerate(zip(rows, gold))})
    ref = answers_checkpoint(tmp_path / "checkpoints" / "sft" / "model",
                             {r["prompt"]: g if i in (3, 4) else "" for i, (r, g) in enumerate(zip(rows, gold))})
    ctx = EvalContext(model=str(model), name="policy", out_dir=tmp_path / "evals" / "policy" / "alpaca-eval",
                      options={"limit": 6}, world_dir=tiny_world, backend=backend, references={"sft": ref})
    result = run(ctx)
    assert [i["id"] for i in result.items] == [r["id"] for r in rows]
    assert [i["score"] for i in result.items] == [1.0, 1.0, 1.0, 0.0, 0.5, 0.5]
    assert [i["preference"] for i in result.items] == [2.0, 2.0, 2.0, 1.0, 1.5, 1.5]
    assert [i["verifier_score"] for i in result.items] == [1.0, 1.0, 1.0, 0.0, 1.0, 0.0]
    assert [i["ref_score"] for i in result.items] == [0.0, 0.0, 0.0, 1.0, 1.0, 0.0]
    m = result.metrics
    assert m["win_rate"] == pytest.approx(100 * 4 / 6) and m["discrete_win_rate"] == pytest.approx(100 * 4 / 6)
    assert (m["n_wins"], m["n_wins_base"], m["n_draws"], m["n_total"]) == (3, 1, 2, 6)

    # The same two checkpoints the other way round: every score mirrors (1 - s).
    ctx2 = EvalContext(model=str(ref), name="sft", out_dir=tmp_path / "evals" / "sft" / "alpaca-eval",
                       options={"limit": 6}, world_dir=tiny_world, backend=backend, references={"sft": model})
    back = run(ctx2)
    assert [i["score"] for i in back.items] == [0.0, 0.0, 0.0, 1.0, 0.5, 0.5]
    assert back.metrics["win_rate"] == pytest.approx(100 * 2 / 6)


def test_real_mode_missing_key_fails_before_generating(tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    ref = tmp_path / "alpaca_eval" / "results" / "gpt4_1106_preview" / "model_outputs.json"
    ref.parent.mkdir(parents=True)
    ref.write_text(json.dumps([{"instruction": "Hi ?", "output": "x"}]))
    ctx = EvalContext(model=str(tmp_path / "no-such-model"), name="m", out_dir=tmp_path / "ae", data_dir=tmp_path)
    with pytest.raises(SuiteError) as err:
        run(ctx)  # the model (which does not exist) is never loaded
    msg = str(err.value)
    assert msg.startswith("alpaca-eval: OPENAI_API_KEY") and "--no-judge" in msg  # and how to go on without one
    assert not (tmp_path / "ae" / "model_outputs.json").exists()


def test_small_pieces_by_hand(tmp_path, monkeypatch):
    import numpy as np

    info = {}
    out = A._plain({"win_rate": np.float64(12.5), "n_wins": np.int64(3), "avg_length": 10.7,
                    "standard_error": float("nan")}, info)
    assert out == {**{k: None for k in METRIC_KEYS}, "win_rate": 12.5, "n_wins": 3, "avg_length": 10}
    assert type(out["n_wins"]) is int and info == {"non_finite": ["standard_error"]}
    assert A.paired([{"score": 1.0}, {"score": 0.5}, {"score": 0.0}, {"score": None}]) == {"win_rate": 50.0}
    assert A.paired([{"score": None}]) == {"win_rate": None}
    res = A._unjudged([{"output": "abc"}, {"output": "abcdefgh"}])
    assert res.metrics == {**{k: None for k in METRIC_KEYS}, "avg_length": 5}
    assert list(res.info) == ["no_judge"] and "model_outputs.json" in res.info["no_judge"]
    monkeypatch.setenv("OPENAI_API_KEY", "my-secret-123")
    # the key in the environment, and anything shaped like an OpenAI key, are masked
    assert A._redact("my-secret-123 sk-abcdEFGH_12") == "<OPENAI_API_KEY> <key>"
    assert (A._number(None), A._number(float("nan")), A._number(2)) == (None, None, 2.0)


def _lc_reason(df, data_dir):
    """The reason the LC win rate is not computed (with no metrics), else fail."""
    metrics, reason = A._length_controlled(df, data_dir)
    assert metrics == {} and isinstance(reason, str) and "\n" not in reason
    return reason


def test_each_reason_lc_is_not_computed_names_what_is_missing(tmp_path):
    import pandas as pd

    df = pd.DataFrame(_annotations([1.0, 2.0]))
    reason = _lc_reason(df, None)
    assert reason.startswith("no data_dir") and "df_gamed.csv" in reason and "tatsu-lab/alpaca_eval" in reason
    gamed = tmp_path / "alpaca_eval" / "df_gamed.csv"
    reason = _lc_reason(df, tmp_path)
    assert reason.startswith(f"{gamed} not found") and "tatsu-lab/alpaca_eval" in reason
    gamed.parent.mkdir(parents=True)
    gamed.write_text("x\n")
    ref = tmp_path.joinpath(*A.REFERENCE_FILE)
    ref.parent.mkdir(parents=True)
    ref.write_text(json.dumps([{"instruction": "instruction 0", "output": "r"}]))
    reason = _lc_reason(df, tmp_path)  # "instruction 1" is not in the reference
    assert reason.startswith("1 annotated instructions") and "AlpacaEval" in reason
    ref.write_text(json.dumps([{"instruction": "instruction 0"}, {"instruction": "instruction 1"}]))
    two = pd.DataFrame(_annotations([1.0, 2.0])).assign(generator_2=["a", "b"])
    assert "exactly one generator_2" in _lc_reason(two, tmp_path)
    assert "exactly one generator_1" in _lc_reason(df.drop(columns=["generator_1"]), tmp_path)


def _refusal(fn, ctx):
    """The one-line SuiteError `fn(ctx)` raises."""
    with pytest.raises(SuiteError) as err:
        fn(ctx)
    assert str(err.value).startswith("alpaca-eval") and "\n" not in str(err.value)
    return str(err.value)


def test_judging_saved_outputs_refuses_what_it_cannot_judge(tmp_path):
    """No saved outputs, no reference file, outputs of instructions the reference lacks (one quoted,
    cut at 60 characters), no data_dir: each named, nothing annotated."""
    ctx = EvalContext(model="m", name="m", out_dir=tmp_path / "ae", data_dir=tmp_path, suite="alpaca-eval")
    msg = _refusal(judge_saved, ctx)
    assert str(tmp_path / "ae" / "model_outputs.json") in msg and "--no-judge" in msg
    (tmp_path / "ae").mkdir()
    stranger = "not in the set " * 8
    (tmp_path / "ae" / "model_outputs.json").write_text(json.dumps([{"instruction": stranger, "output": "o"}]))
    ref = tmp_path / "alpaca_eval" / "results" / "gpt4_1106_preview" / "model_outputs.json"
    msg = _refusal(judge_saved, ctx)
    assert str(ref) in msg and "tatsu-lab/alpaca_eval" in msg
    ref.parent.mkdir(parents=True)
    ref.write_text(json.dumps([{"instruction": "a", "output": "r"}]))
    msg = _refusal(judge_saved, ctx)
    assert "1 saved instruction(s)" in msg and str(ref) in msg and repr(stranger[:60]) in msg
    msg = _refusal(judge_saved, EvalContext(model="m", name="m", out_dir=tmp_path / "ae", suite="alpaca-eval"))
    assert "data_dir" in msg and "gpt4_1106_preview/model_outputs.json" in msg
    assert not (tmp_path / "ae" / "annotations.json").exists()


def test_completions_contract_served_by_the_judge_client(tmp_path, monkeypatch):
    """What alpaca_eval's annotator gets back from the harness's client: texts, tool-call
    arguments, failures with their reason, price and time per example (a stand-in clock)."""
    from alpaca_eval.decoders.openai import _get_price_per_token

    reason = "HTTP 500 after 3 attempt(s)"  # what the client says of the failed request

    class Client:
        def complete_many(self, requests, **params):
            self.requests, self.params = requests, params
            return [{"message": {"content": "m"}, "total_tokens": 10},
                    {"message": {"tool_calls": [{"function": {"arguments": "{\"x\": 1}"}}]}, "total_tokens": 4},
                    None]

        def failure_reason(self, messages, **params):
            return reason

        def accounting(self):
            return {"calls": 3, "failure_reasons": {"HTTP 500": 1}}

    client = Client()
    monkeypatch.setattr(A, "_judge_client", lambda ctx, model: client)
    clock = iter([100.0, 106.0])
    monkeypatch.setattr(A.time, "time", lambda: next(clock))
    comp = A._Completions(EvalContext(model="m", name="m", out_dir=tmp_path))
    chatml = [f"<|im_start|>user\n{p}\n<|im_end|>" for p in ("p1", "p2")] + [" <|im_start|>user\np3\n<|im_end|> "]
    out = comp(chatml, "gpt-4-1106-preview", max_tokens=5, temperature=0, num_procs=4)
    price = _get_price_per_token("gpt-4-1106-preview", None)
    assert out["completions"] == ["m", "{\"x\": 1}", ""]
    assert out["price_per_example"] == [10 * price, 4 * price, 0]
    assert out["time_per_example"] == [2.0, 2.0, 2.0]  # 6 s over 3 prompts
    failed = out["completions_all"][2].pop("failed")
    assert out["completions_all"][2] == {"text": "", "total_tokens": 0}
    assert failed.startswith("judge call failed") and failed.endswith(reason)  # the client's reason, kept
    assert comp.failed == {chatml[2]: failed}
    assert client.requests[2] == [{"role": "user", "content": "p3"}]  # the chatml prompt, stripped, as messages
    assert client.params == {"max_tokens": 5, "temperature": 0}  # alpaca_eval's own knobs are not sent
    assert comp.accounting() == {"calls": 3, "failure_reasons": {"HTTP 500": 1}}


def test_an_annotator_crash_is_one_line_without_the_key(tmp_path, monkeypatch):
    sentinel = object()

    class Single:
        fn_completions = sentinel

    class Annotator:
        def __init__(self, **kw):
            self.df_annotations, self.annotators = None, {"a": Single()}
            self.all_keys, self.annotation_key = ["instruction"], "preference"

        def annotate_head2head(self, outputs_1, outputs_2):
            raise ValueError("endpoint said sk-abcdefgh1234 is bad\nsecond line")

    fake = types.SimpleNamespace(annotators=types.SimpleNamespace(PairwiseAnnotator=Annotator),
                                 decoders=types.SimpleNamespace(openai=types.SimpleNamespace(openai_completions=sentinel)))
    monkeypatch.setattr(A, "_alpaca_eval", lambda: fake)
    ctx = EvalContext(model="m", name="m", out_dir=tmp_path, suite="alpaca-eval")
    with pytest.raises(SuiteError) as err:
        A._annotate(ctx, [{"instruction": "i"}], [{"instruction": "i"}])
    msg = str(err.value)
    assert msg.startswith("alpaca-eval annotator failed") and "ValueError" in msg  # the error's type and first line
    assert "<key> is bad" in msg and "sk-abcdefgh1234" not in msg and "second line" not in msg and "\n" not in msg
    Single.fn_completions = object()  # an annotator that does not call OpenAI chat completions
    with pytest.raises(SuiteError) as err:
        A._annotate(ctx, [{"instruction": "i"}], [{"instruction": "i"}])
    assert "'weighted_alpaca_eval_gpt4_turbo'" in str(err.value) and "OpenAI" in str(err.value)


# ---------------------------------------------------------------- metrics from annotations, by hand
ALL_NONE = {k: None for k in ("win_rate", "standard_error", "n_wins", "n_wins_base", "n_draws", "n_total",
                              "discrete_win_rate", "avg_length", "length_controlled_winrate", "lc_standard_error")}


def _ann(prefs, annotators=None):
    """Annotations with output_2 of length 1, 2, 3, ... and, if given, an annotator per row."""
    return [{"instruction": f"i{n}", "output_1": "r", "output_2": "x" * (n + 1), "preference": p,
             **({"annotator": annotators[n]} if annotators else {})} for n, p in enumerate(prefs)]


def test_metrics_and_info_from_an_annotations_file_and_without_lc(tmp_path):
    missing = tmp_path / "nope.json"
    with pytest.raises(SuiteError) as err:
        A.metrics_from_annotations(str(missing))
    assert str(missing) in str(err.value) and "not found" in str(err.value)
    path = tmp_path / "annotations.json"
    path.write_text(json.dumps(_ann([2.0, 1.0, None], annotators=["b", "a", "b"])))
    metrics, info = A.metrics_from_annotations(str(path))
    assert "no data_dir" in info.pop("lc_unavailable")
    assert info == {"n_annotations": 3, "n_unannotated": 1, "annotator": "a, b"}
    # one win, one loss: 50 %; output_2 lengths 1, 2, 3 -> 2
    assert metrics == pytest.approx({**ALL_NONE, "win_rate": 50.0, "standard_error": 50.0, "n_wins": 1,
                                     "n_wins_base": 1, "n_draws": 0, "n_total": 2, "discrete_win_rate": 50.0,
                                     "avg_length": 2})
    metrics, info = A.metrics_from_annotations(_ann([2.0, 2.0]), length_controlled=False)
    assert info == {"n_annotations": 2, "n_unannotated": 0}
    assert (metrics["length_controlled_winrate"], metrics["lc_standard_error"]) == (None, None)


@pytest.mark.parametrize("lc,se,degenerate", [(50.0, 0.0, True), (50.0, 0.5, False), (51.0, 0.0, False)])
def test_only_an_lc_fit_of_exactly_fifty_with_zero_error_is_flagged_degenerate(monkeypatch, lc, se, degenerate):
    """A GLM whose coefficients are all zero returns exactly 50 +- 0: reported as no LC win rate,
    the raw fit kept in info; 50 with an error, or 51 without, is a real fit."""
    monkeypatch.setattr(A, "_length_controlled",
                        lambda df, d: ({"length_controlled_winrate": lc, "lc_standard_error": se}, None))
    metrics, info = A.metrics_from_annotations(_ann([1.5, 1.5]), data_dir="unused")
    if degenerate:
        assert (metrics["length_controlled_winrate"], metrics["lc_standard_error"]) == (None, None)
        assert "50.0" in info.pop("lc_degenerate")
        assert info == {"n_annotations": 2, "n_unannotated": 0,
                        "lc_raw": {"length_controlled_winrate": 50.0, "lc_standard_error": 0.0}}
    else:
        assert (metrics["length_controlled_winrate"], metrics["lc_standard_error"]) == (lc, se)
        assert info == {"n_annotations": 2, "n_unannotated": 0}


def test_the_local_hub_file_serves_only_the_mirrored_file_and_is_undone(tmp_path):
    from alpaca_eval.metrics import glm_winrate

    original = glm_winrate.hf_hub_download
    local = tmp_path / "df_gamed.csv"
    with A._local_hub_file("df_gamed.csv", local):
        assert glm_winrate.hf_hub_download(repo_id="tatsu-lab/alpaca_eval", filename="df_gamed.csv",
                                           repo_type="dataset") == str(local)
        with pytest.raises(SuiteError) as err:
            glm_winrate.hf_hub_download(repo_id="tatsu-lab/alpaca_eval", filename="other.csv")
        assert "tatsu-lab/alpaca_eval/other.csv" in str(err.value)
    assert glm_winrate.hf_hub_download is original
    with pytest.raises(KeyError):
        with A._local_hub_file("df_gamed.csv", local):
            raise KeyError("inside")
    assert glm_winrate.hf_hub_download is original


# ---------------------------------------------------------------- sampling, generation, files, the judge client
def test_sampling_and_generation_pass_the_options_and_user_turns(tmp_path):
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


def test_annotations_json_is_written_as_pandas_writes_records(tmp_path):
    """annotations.json as alpaca_eval itself writes it: pandas' to_json(orient="records", indent=2)."""
    import pandas as pd

    rows = [{"instruction": "i", "preference": 1.5}, {"instruction": "j", "preference": None}]
    path = tmp_path / "annotations.json"
    A._write_annotations(path, rows)
    assert path.read_text() == pd.DataFrame(rows).to_json(orient="records", indent=2)
    assert json.loads(path.read_text()) == rows


def test_the_judge_client_endpoint_precedence_and_cache_dir(tmp_path, monkeypatch):
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
    assert str(err.value).startswith("alpaca-eval: ") and "'openai:'" in str(err.value)


# ---------------------------------------------------------------- the completions contract
CHAT = ("max_tokens", "temperature", "top_p", "logprobs", "top_logprobs", "stop", "seed", "presence_penalty",
        "frequency_penalty", "response_format", "tools", "tool_choice", "functions", "function_call")


def _chatml(text):
    return f"<|im_start|>user\n{text}\n<|im_end|>"


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


def test_completions_refuse_completion_api_models_and_unsupported_settings(tmp_path, monkeypatch):
    client = _Client([])
    monkeypatch.setattr(A, "_judge_client", lambda ctx, model: client)
    comp = A._Completions(EvalContext(model="m", name="m", out_dir=tmp_path))
    for model, kw in (("gpt-4", {"requires_chatml": False}), ("text-davinci-003", {})):
        with pytest.raises(SuiteError) as err:
            comp([_chatml("p")], model, max_tokens=1, **kw)
        assert str(err.value).endswith("(a completions-API model)")
    with pytest.raises(SuiteError) as err:
        comp([_chatml("p")], "gpt-4", logit_bias={}, best_of=2)
    assert str(err.value).endswith("(best_of, logit_bias)")  # every setting the client cannot send, sorted
    assert client.sent == []


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


# ---------------------------------------------------------------- _annotate with a stand-in annotator
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
    assert seen["levels"] == (logging.CRITICAL, logging.CRITICAL)  # alpaca_eval's logging silenced while it runs
    assert (logging.getLogger().level, logging.getLogger("alpaca_eval").level) == levels  # and restored
    # i2's failed prompt: the client's reason; i3's failed prompt names i3 but not its output o3: no reason of its own
    assert sorted(errors) == ["i2", "i3"]
    assert errors["i2"].endswith("HTTP 500 after 1 attempt(s)") and "no preference" in errors["i3"]
    # cached = 4 annotations - 2 newly stored - 2 failed + 2 served by the client's disk cache
    assert acct == {"annotator": "weighted_alpaca_eval_gpt4_turbo", "calls": 3, "cached": 2, "failures": 2,
                    "retries": 1, "failure_reasons": {"HTTP 500": 1, "HTTP 429": 1}, "total_tokens": 10.0}


def test_annotate_with_empty_accounting_and_a_failing_annotator(tmp_path, monkeypatch):
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
    # a SuiteError keeps its own words; anything else is named by its type
    for exc, token in ((SuiteError("the judge client broke"), ": the judge client broke"), (RuntimeError(), ": RuntimeError")):
        _fake_alpaca_eval(monkeypatch, tmp_path, exc, _Client([None]), new_cache_rows=0, seen={})
        with pytest.raises(SuiteError) as err:
            A._annotate(ctx, [], [{"instruction": "i1", "output_2": "o1"}])
        assert str(err.value).startswith("alpaca-eval annotator failed") and token in str(err.value)
        assert (logging.getLogger().level, logging.getLogger("alpaca_eval").level) == levels


# ---------------------------------------------------------------- real mode with stand-ins
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


def test_real_mode_with_no_judge_saves_outputs_and_items(tmp_path, monkeypatch):
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
    assert list(result.info) == ["no_judge"] and "model_outputs.json" in result.info["no_judge"]
    assert json.loads((out_dir / "model_outputs.json").read_text()) == [
        {"dataset": "d", "instruction": "q0", "output": "out:q0", "generator": "policy"},
        {"dataset": None, "instruction": "q1", "output": "out:q1", "generator": "policy"}]
    assert sorted(p.name for p in out_dir.iterdir()) == ["model_outputs.json"]


def test_real_mode_without_the_reference_outputs_names_the_file_and_its_source(tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    msg = _refusal(A.run, EvalContext(model="m", name="m", out_dir=tmp_path / "o"))
    assert "data_dir" in msg and "gpt4_1106_preview/model_outputs.json" in msg and "tatsu-lab/alpaca_eval" in msg
    ref = tmp_path / "alpaca_eval" / "results" / "gpt4_1106_preview" / "model_outputs.json"
    msg = _refusal(A.run, EvalContext(model="m", name="m", out_dir=tmp_path / "o", data_dir=tmp_path))
    assert str(ref) in msg and "tatsu-lab/alpaca_eval" in msg
    assert not [p for p in (tmp_path / "o").rglob("*") if p.is_file()]  # nothing generated, nothing written


def test_judging_saved_outputs_items_scores_errors_and_info(tmp_path, monkeypatch):
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
        return annotations, {"calls": 2}, {"q0": "HTTP 500"}

    monkeypatch.setattr(A, "_annotate", annotate)
    result = A.judge_saved(EvalContext(model="m", name="m", out_dir=out_dir, data_dir=data))
    assert calls == [([ref_rows[2], ref_rows[0], ref_rows[3], ref_rows[1]], saved)]
    # id: the instruction's position in the reference; index: its position in the saved outputs; a row
    # without a preference gets the annotator's reason, else a reason of its own
    no_preference = result.items[2].pop("judge_error")
    assert "no preference" in no_preference
    assert result.items == [
        {"id": "2", "index": 0, "dataset": "d", "instruction": "q2", "output": "o2", "reference_output": "r2",
         "score": 0.75, "preference": 1.75},
        {"id": "0", "index": 1, "dataset": "d", "instruction": "q0", "output": "o0", "reference_output": "r0",
         "score": None, "preference": None, "judge_error": "HTTP 500"},
        {"id": "3", "index": 2, "dataset": "d", "instruction": "q3", "output": "o3", "reference_output": "r3",
         "score": None, "preference": None},
        {"id": "1", "index": 3, "dataset": None, "instruction": "q1", "output": "o1", "reference_output": "r1",
         "score": 0.25, "preference": 1.25}]
    info = dict(result.info)
    assert info.pop("lc_unavailable").startswith(f"{data / 'alpaca_eval' / 'df_gamed.csv'} not found")
    assert info == {"n_annotations": 4, "n_unannotated": 2, "reference": str(ref), "n_instructions": 4,
                    "judge": {"calls": 2}, "not_canonical": ["4/805 instructions", "no LC win rate"]}
    # judged: 0.75 and 0.25 -> 50 %; standard error 100 * stdev([0.75, 0.25]) / sqrt(2) = 100 * 0.3536 / 1.4142 = 25
    assert result.metrics == pytest.approx({**ALL_NONE, "win_rate": 50.0, "standard_error": 25.0, "n_wins": 1,
                                            "n_wins_base": 1, "n_draws": 0, "n_total": 2, "discrete_win_rate": 50.0,
                                            "avg_length": 2})
    written = json.loads((out_dir / "annotations.json").read_text())
    assert [(a["instruction"], a["preference"]) for a in written] == [("q2", 1.75), ("q0", None), ("q3", None),
                                                                      ("q1", 1.25)]


# ---------------------------------------------------------------- tiny mode with stand-ins
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


def test_tiny_mode_items_annotations_and_info_by_hand(tmp_path, monkeypatch):
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
    info = dict(result.info)
    lc_reason, rule = info.pop("lc_unavailable"), info.pop("preference_rule")
    assert lc_reason.startswith("tiny mode") and "df_gamed.csv" in lc_reason  # no difficulty data for tiny prompts
    assert "score_model" in rule and "score_reference" in rule  # the rule the preferences above follow
    assert info == {"reference": str(ref), "reference_cache": str(cache_file), "n_annotations": 3,
                    "n_unannotated": 0, "annotator": "oracle",
                    "judge": {"calls": 6, "cached": 0, "failures": 0, "prompt_tokens": 0, "completion_tokens": 0}}
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


def test_tiny_mode_reuses_the_reference_cache_saves_outputs_only_with_no_judge_and_needs_the_sft_reference(
        tmp_path, monkeypatch):
    from selm_bench.harness.core import registry

    backend, world, model, ref = _tiny_setup(tmp_path, monkeypatch)

    def ctx(**kw):
        return EvalContext(model=str(model), name="policy", out_dir=tmp_path / "evals" / "alpaca-eval",
                           world_dir=world, backend=backend, references={"sft": ref}, **kw)

    result = A.run(ctx(no_judge=True, options={"limit": 2}))
    (cache_file,) = (ref.parent / "eval-cache").iterdir()
    info = dict(result.info)
    assert "model_outputs.json" in info.pop("no_judge")
    assert info == {"reference": str(ref), "reference_cache": str(cache_file)}
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
    msg = _refusal(A.run, no_ref)
    assert "tiny mode" in msg and "references['sft']" in msg
