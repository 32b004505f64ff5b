import json
import math
import random
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from conftest import send_json as _send_json
from selm_bench.evals.alpaca_eval import METRIC_KEYS, judge_saved, metrics_from_annotations, run
from selm_bench.evals.base import EvalContext, SuiteError


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


def test_degenerate_lc_fit_is_flagged(monkeypatch):
    import selm_bench.evals.alpaca_eval as suite

    monkeypatch.setattr(suite, "_length_controlled", lambda df, d: ({"length_controlled_winrate": 50.0, "lc_standard_error": 0.0}, None))
    metrics, info = metrics_from_annotations(_annotations([1.5, 1.5, 1.5]), data_dir="unused")
    assert metrics["length_controlled_winrate"] is None and "lc_degenerate" in info
    assert info["lc_raw"]["length_controlled_winrate"] == 50.0


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


def test_tiny_mode_no_judge_and_missing_reference(tmp_path, tiny_world, tiny_model):
    result = run(_tiny_ctx(tmp_path, tiny_world, tiny_model, no_judge=True))
    assert result.metrics["win_rate"] is None and "no_judge" in result.info
    assert not (tmp_path / "evals" / "tiny-policy" / "alpaca-eval" / "annotations.json").exists()
    ctx = _tiny_ctx(tmp_path, tiny_world, tiny_model)
    ctx.references = {}
    with pytest.raises(SuiteError, match="sft"):
        run(ctx)


def test_real_mode_missing_reference_names_file(tmp_path, tiny_model):
    ctx = EvalContext(model=str(tiny_model), name="m", out_dir=tmp_path / "o", data_dir=tmp_path)
    with pytest.raises(SuiteError, match="gpt4_1106_preview/model_outputs.json.*tatsu-lab/alpaca_eval"):
        run(ctx)


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
    with pytest.raises(SuiteError, match=r"^alpaca-eval: OPENAI_API_KEY is not set .*--no-judge"):
        run(ctx)  # the model (which does not exist) is never loaded
    assert not (tmp_path / "ae" / "model_outputs.json").exists()


def test_small_pieces_by_hand(tmp_path, monkeypatch):
    import numpy as np

    from selm_bench.evals import alpaca_eval as A

    info = {}
    out = A._plain({"win_rate": np.float64(12.5), "n_wins": np.int64(3), "avg_length": 10.7,
                    "standard_error": float("nan")}, info)
    assert out == {**{k: None for k in METRIC_KEYS}, "win_rate": 12.5, "n_wins": 3, "avg_length": 10}
    assert type(out["n_wins"]) is int and info == {"non_finite": ["standard_error"]}
    assert A.paired([{"score": 1.0}, {"score": 0.5}, {"score": 0.0}, {"score": None}]) == {"win_rate": 50.0}
    assert A.paired([{"score": None}]) == {"win_rate": None}
    res = A._unjudged([{"output": "abc"}, {"output": "abcdefgh"}])
    assert res.metrics == {**{k: None for k in METRIC_KEYS}, "avg_length": 5}
    assert res.info == {"no_judge": "outputs saved to model_outputs.json, not annotated"}
    monkeypatch.setenv("OPENAI_API_KEY", "my-secret-123")
    assert A._redact("bad key my-secret-123 and sk-abcdEFGH_12 here") == "bad key <OPENAI_API_KEY> and <key> here"
    assert (A._number(None), A._number(float("nan")), A._number(2)) == (None, None, 2.0)


def test_lc_reasons_in_full(tmp_path):
    import pandas as pd

    from selm_bench.evals import alpaca_eval as A

    df = pd.DataFrame(_annotations([1.0, 2.0]))
    assert A._length_controlled(df, None) == (
        {}, "no data_dir: LC needs df_gamed.csv (HF dataset tatsu-lab/alpaca_eval), never downloaded here")
    gamed = tmp_path / "alpaca_eval" / "df_gamed.csv"
    assert A._length_controlled(df, tmp_path) == (
        {}, f"{gamed} not found (LC needs it; source: HF dataset tatsu-lab/alpaca_eval)")
    gamed.parent.mkdir(parents=True)
    gamed.write_text("x\n")
    ref = tmp_path.joinpath(*A.REFERENCE_FILE)
    ref.parent.mkdir(parents=True)
    ref.write_text(json.dumps([{"instruction": "instruction 0", "output": "r"}]))
    assert A._length_controlled(df, tmp_path) == ({}, "1 annotated instructions are not AlpacaEval instructions")
    ref.write_text(json.dumps([{"instruction": "instruction 0"}, {"instruction": "instruction 1"}]))
    two = pd.DataFrame(_annotations([1.0, 2.0])).assign(generator_2=["a", "b"])
    assert A._length_controlled(two, tmp_path) == ({}, "LC needs exactly one generator_2 in the annotations")
    assert A._length_controlled(df.drop(columns=["generator_1"]), tmp_path) == (
        {}, "LC needs exactly one generator_1 in the annotations")


def test_judge_saved_lines_in_full(tmp_path):
    ctx = EvalContext(model="m", name="m", out_dir=tmp_path / "ae", data_dir=tmp_path, suite="alpaca-eval")
    with pytest.raises(SuiteError) as err:
        judge_saved(ctx)
    assert str(err.value) == (f"alpaca-eval: no saved outputs at {tmp_path / 'ae' / 'model_outputs.json'}; run "
                              "`selm-bench eval ... --no-judge` first")
    (tmp_path / "ae").mkdir()
    (tmp_path / "ae" / "model_outputs.json").write_text(json.dumps([{"instruction": "not in the set " * 8, "output": "o"}]))
    ref = tmp_path / "alpaca_eval" / "results" / "gpt4_1106_preview" / "model_outputs.json"
    with pytest.raises(SuiteError) as err:
        judge_saved(ctx)
    assert str(err.value) == (f"alpaca-eval reference outputs not found: {ref} (get it from the alpaca_eval GitHub repo "
                              "(tatsu-lab/alpaca_eval) results/gpt4_1106_preview/model_outputs.json, or the HF dataset "
                              "tatsu-lab/alpaca_eval)")
    ref.parent.mkdir(parents=True)
    ref.write_text(json.dumps([{"instruction": "a", "output": "r"}]))
    with pytest.raises(SuiteError) as err:
        judge_saved(ctx)
    assert str(err.value) == (f"alpaca-eval: 1 saved instruction(s) are not in {ref}, e.g. {('not in the set ' * 4)[:60]!r}; "
                              "were the outputs made with another reference?")
    with pytest.raises(SuiteError) as err:
        judge_saved(EvalContext(model="m", name="m", out_dir=tmp_path / "ae", suite="alpaca-eval"))
    assert str(err.value).startswith("alpaca-eval needs data_dir with alpaca_eval/results/gpt4_1106_preview/"
                                     "model_outputs.json (from the alpaca_eval GitHub repo")


def test_completions_contract_served_by_the_judge_client(tmp_path, monkeypatch):
    """What alpaca_eval's annotator gets back from the harness's client: texts, tool-call
    arguments, failures with their reason, price and time per example (a stand-in clock)."""
    from alpaca_eval.decoders.openai import _get_price_per_token

    from selm_bench.evals import alpaca_eval as A

    class Client:
        def complete_many(self, requests, **params):
            self.requests, self.params = requests, params
            return [{"message": {"content": "m"}, "total_tokens": 10},
                    {"message": {"tool_calls": [{"function": {"arguments": "{\"x\": 1}"}}]}, "total_tokens": 4},
                    None]

        def failure_reason(self, messages, **params):
            return "HTTP 500 after 3 attempt(s)"

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
    assert out["completions_all"][2] == {"text": "", "total_tokens": 0, "failed": "judge call failed: HTTP 500 after "
                                                                                   "3 attempt(s)"}
    assert comp.failed == {chatml[2]: "judge call failed: HTTP 500 after 3 attempt(s)"}
    assert client.requests[2] == [{"role": "user", "content": "p3"}]  # the chatml prompt, stripped, as messages
    assert client.params == {"max_tokens": 5, "temperature": 0}  # alpaca_eval's own knobs are not sent
    assert comp.accounting() == {"calls": 3, "failure_reasons": {"HTTP 500": 1}}
    with pytest.raises(SuiteError) as err:
        comp(chatml[:1], "gpt-4-1106-preview", logit_bias={})
    assert str(err.value) == ("the annotator's completion settings are not chat-completion parameters the judge client "
                              "sends (logit_bias)")


def test_an_annotator_crash_is_one_line_without_the_key(tmp_path, monkeypatch):
    import types

    from selm_bench.evals import alpaca_eval as A

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
    assert str(err.value) == "alpaca-eval annotator failed: ValueError: endpoint said <key> is bad"
    Single.fn_completions = object()  # an annotator that does not call OpenAI chat completions
    with pytest.raises(SuiteError) as err:
        A._annotate(ctx, [{"instruction": "i"}], [{"instruction": "i"}])
    assert str(err.value) == ("alpaca-eval: annotator 'weighted_alpaca_eval_gpt4_turbo' does not use OpenAI chat "
                              "completions; the harness judges through an OpenAI-compatible endpoint only")
