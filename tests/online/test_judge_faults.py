"""Judge faults: against a loopback endpoint that answers a third of its requests with 429,
500, a hang past the timeout, a dropped connection, a body that is not JSON or a cut-off
body, every judgment is valid or recorded as failed with its reason; nothing crashes; a
rerun retries only the failed ones and reaches zero failures; calls are bounded. For the
openai judge client, MT-Bench inside train-and-eval, AlpacaEval (alpaca_eval's annotator
through the same client) and the `judge:` ranker."""

import json
import math
import time
from pathlib import Path

import pytest

from support.fixtures import FlakyOpenAI, write_alpaca_reference
from selm_bench.evals.judges import make_judge

P_PREFERRED = 1 / (1 + math.exp(-2.95))  # AlpacaEval: the preferred token's share of m/M mass (logprobs -0.05, -3)


@pytest.fixture
def flaky(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-FAULTS")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    fake = FlakyOpenAI()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()


def test_faults_are_retried_recorded_and_a_rerun_reaches_zero_failures(flaky, tmp_path):
    requests = [[{"role": "user", "content": f"q{i}"}] for i in range(24)]
    opts = dict(cache_dir=tmp_path / "cache", base_url=flaky.url, concurrency=4, timeout=0.5, backoff=0.01)
    t0 = time.time()
    judge = make_judge("openai:flaky", max_retries=0, **opts)  # no retries: a third of the requests fail
    first = judge.chat_many(requests)
    acct = judge.accounting()
    assert time.time() - t0 < 30 and acct["calls"] == 24  # bounded: 1 + max_retries attempts a request
    assert 4 <= first.count(None) <= 12
    for req, out in zip(requests, first):
        assert out is None or out == f"echo {req[0]['content']} [[5]]"  # each valid, or failed
    assert acct["failures"] == first.count(None)
    reasons = acct["failure_reasons"]
    assert {"HTTP 429", "HTTP 500", "APITimeoutError"} <= set(reasons), reasons
    assert any(r.startswith("malformed response") for r in reasons), reasons
    assert sum(reasons.values()) == acct["calls"] - (24 - acct["failures"])  # every failed attempt has a reason

    again = make_judge("openai:flaky", max_retries=5, **opts)
    second = again.chat_many(requests)
    assert None not in second and second == [f"echo q{i} [[5]]" for i in range(24)]
    done = 24 - first.count(None)
    assert again.accounting()["cached"] == done  # only the failed ones were sent again
    assert again.accounting()["calls"] - sum(again.accounting()["failure_reasons"].values()) == first.count(None)


def test_train_and_eval_judged_mt_bench_survives_faults_and_a_rerun_rejudges(flaky, tmp_path):
    """A full judged MT-Bench eval inside train-and-eval against the flaky endpoint finishes;
    the rerun judges the saved answers again (only the failed judgments are sent) and reaches zero."""
    import subprocess
    import sys

    import yaml

    from conftest import write_mt_bench_fixture

    data = write_mt_bench_fixture(tmp_path / "mirror")
    micro = {
        "name": "faults", "seed": 0, "device": "cpu", "methods": ["sft"], "suites": ["mt-bench"],
        "world": {"n_sft": 32, "n_pref": 8, "n_prompts": 8, "n_dev": 4, "n_eval": 8, "n_two_turn": 2, "n_mc": 4},
        "model": {"hidden_size": 16, "num_layers": 1, "num_heads": 2, "intermediate_size": 32},
        "sft": {"epochs": 1, "batch_size": 16},
        "eval": {"judge": "openai:flaky", "judge_base_url": flaky.url, "data_dir": str(data), "judge_max_retries": 0,
                 "judge_timeout": 0.5, "judge_concurrency": 2},
        "suite_options": {"mt-bench": {"source": "fastchat", "max_new_tokens": 4}},
    }
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(micro))
    out = tmp_path / "run"
    env = {**__import__("os").environ}

    def run(*extra):
        return subprocess.run([sys.executable, "-m", "selm_bench.harness.cli", "train-and-eval", "--config", str(cfg),
                               "--out", str(out), *extra], capture_output=True, text=True, env=env)

    first = run()
    assert first.returncode == 0, first.stderr[-2000:]
    record = json.loads((out / "evals/sft/mt-bench/stage.json").read_text())
    metrics = json.loads((out / "evals/sft/mt-bench/metrics.json").read_text())
    failed = metrics["info"]["judge"]["failures"]
    assert failed >= 1 and record["judge_failures"] == failed and metrics["metrics"]["errors"] == failed
    answers = (out / "evals/sft/mt-bench/model_answer/sft.jsonl").read_text()

    second = run("--set", "eval.judge_max_retries=6")  # runtime only: same keys
    assert second.returncode == 0, second.stderr[-2000:]
    assert "rejudged eval sft mt-bench" in second.stderr and "skip sft" in second.stderr
    metrics = json.loads((out / "evals/sft/mt-bench/metrics.json").read_text())
    assert metrics["info"]["judge"]["failures"] == 0 and metrics["metrics"]["errors"] == 0
    assert metrics["info"]["judge"]["cached"] == 6 - failed  # the successes came from the cache
    assert (out / "evals/sft/mt-bench/model_answer/sft.jsonl").read_text() == answers  # not regenerated
    assert json.loads((out / "evals/sft/mt-bench/stage.json").read_text())["judge_failures"] == 0
    rows = json.loads((out / "leaderboard.json").read_text())
    assert rows[0]["mt-bench/score"] == 5.0
    # Secrets: the key (from the environment only) is in no file written, no output, no manifest.
    key = "sk-test-FAULTS"
    written = [p for p in out.rglob("*") if p.is_file()]
    assert written and not [p for p in written if key.encode() in p.read_bytes()]
    assert key not in first.stderr + first.stdout + second.stderr + second.stdout


def test_alpaca_eval_survives_faults_and_a_rerun_judges_only_the_failed(flaky, tmp_path, tiny_model, monkeypatch):
    """A judged AlpacaEval eval (alpaca_eval's annotator, the harness's judge client) against the flaky
    endpoint finishes; each item is judged correctly or failed with its reason; `judge_saved` (what
    `selm-bench judge` and train-and-eval's rejudge call) sends only the failed ones and reaches zero."""
    from selm_bench.evals.alpaca_eval import judge_saved, run
    from selm_bench.evals.base import EvalContext

    monkeypatch.chdir(tmp_path)
    n = 12
    data = write_alpaca_reference(tmp_path / "data", n)
    opts = {"base_url": flaky.url, "max_retries": 0, "timeout": 0.5, "concurrency": 3, "backoff": 0.01}
    ctx = EvalContext(model=str(tiny_model), name="p", out_dir=tmp_path / "evals" / "p" / "alpaca-eval",
                      options={"limit": n, "max_new_tokens": 4}, data_dir=data, judge_options=opts)
    # Hand-computed: the reference wins (score 1 - p) where it is tagged GOOD, the model (score p) where BAD.
    expected = {str(i): P_PREFERRED if i % 2 else 1 - P_PREFERRED for i in range(n)}

    first = run(ctx)
    acct = first.info["judge"]
    failed = [i for i in first.items if i["score"] is None]
    assert len(failed) == 4 and acct["failures"] == 4 and acct["calls"] == n  # every third request; 1 attempt each
    assert first.metrics["n_total"] == n - len(failed)
    for item in first.items:
        if item["score"] is None:
            assert item["preference"] is None and item["judge_error"].startswith("judge call failed: ")
            assert item["judge_error"].split(": ", 1)[1].split(" after ")[0] in acct["failure_reasons"]
        else:
            assert item["score"] == pytest.approx(expected[item["id"]]) and "judge_error" not in item
    assert set(acct["failure_reasons"]) == {"HTTP 429", "HTTP 500", "APITimeoutError", "APIConnectionError"}
    assert sum(acct["failure_reasons"].values()) == len(failed)
    failed_ins = {i["instruction"] for i in failed}

    sent_before = len(flaky.prompts)
    ctx.judge_options = {**opts, "max_retries": 5}
    second = judge_saved(ctx)
    resent = flaky.prompts[sent_before:]
    assert {next(s for s in failed_ins if s in p) for p in resent} == failed_ins  # only the failed ones...
    assert all(any(s in p for s in failed_ins) for p in resent)  # ...and nothing else
    acct = second.info["judge"]
    assert acct["failures"] == 0 and acct["cached"] == n - len(failed) and acct["calls"] <= 6 * len(failed)
    assert {i["id"]: i["score"] for i in second.items} == pytest.approx(expected)
    assert second.metrics["n_total"] == n and second.metrics["n_wins"] == n // 2

    third = judge_saved(ctx)  # nothing left to send
    assert third.info["judge"]["calls"] == 0 and third.info["judge"]["failures"] == 0


def test_judge_ranker_survives_faults_and_a_rerun_reaches_zero_failures(flaky, tmp_path):
    """The `judge:` ranker against the flaky endpoint: failed comparisons leave their prompt unscored
    (None, with one reason line per prompt), the others score by hand; a second ranker on the same cache
    sends only the failed comparisons and scores every prompt."""
    from selm_bench.harness.core import registry

    prompts = [{"prompt": f"prompt {i}"} for i in range(16)]
    # 12 prompts with 2 candidates (1 comparison each), 4 with 3 (3 comparisons): 24 requests.
    candidates = [[f"a{i}+++", f"b{i}+", f"c{i}"] if i < 4 else [f"d{i}+", f"e{i}+" + "+" * (i % 2)] for i in range(16)]
    # Hand-computed wins (a tie is a half): plus-signs 3, 1, 0 -> 2, 1, 0; 1, 2 -> 0, 1; 1, 1 -> 0.5, 0.5.
    expected = [[2.0, 1.0, 0.0] if i < 4 else [0.0, 1.0] if i % 2 else [0.5, 0.5] for i in range(16)]
    opts = dict(cache_dir=str(tmp_path / "cache"), base_url=flaky.url, concurrency=3, timeout=0.5)
    ranker = registry.get("ranker", "judge:flaky")(name="judge:flaky", max_retries=0, **opts)
    ranker.judge.backoff = 0.01
    first = ranker.score(prompts, candidates)
    unscored = [i for i, s in enumerate(first) if s is None]
    assert ranker.accounting()["calls"] == 24 and ranker.accounting()["failures"] == 8  # every third request
    assert 1 <= len(unscored) <= 8
    assert all(first[i] == expected[i] for i in range(16) if i not in unscored)
    # One error line per unscored prompt (a prompt hit by two failed comparisons still has one line).
    assert sorted(int(e.split(":")[0].split()[1]) for e in ranker.errors) == unscored
    assert all("call failed" in e for e in ranker.errors)

    again = registry.get("ranker", "judge:flaky")(name="judge:flaky", max_retries=5, **opts)
    again.judge.backoff = 0.01
    assert again.score(prompts, candidates) == expected and again.errors == []
    acct = again.accounting()
    assert acct["cached"] == 24 - ranker.accounting()["failures"] and acct["failures"] == 0
