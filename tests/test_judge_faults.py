"""Judge faults: against a loopback endpoint that answers a third of its requests with 429,
500, a hang past the timeout, a dropped connection, a body that is not JSON or a cut-off
body, every judgment is valid or recorded as failed with its reason; nothing crashes; a
rerun retries only the failed ones and reaches zero failures; calls and time are bounded."""

import itertools
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import send_json
from selm_bench.evals.judges import make_judge

FAULTS = ["429", "500", "hang", "drop", "malformed", "truncated"]


class FlakyOpenAI:
    def __init__(self):
        self.counter = itertools.count()
        self.served = []  # request numbers answered with a valid completion
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with fake.lock:
                    i = next(fake.counter)
                fault = FAULTS[(i // 3) % len(FAULTS)] if i % 3 == 1 else None
                if fault in ("429", "500"):
                    return send_json(self, int(fault), {"error": {"message": "injected"}})
                if fault == "hang":
                    time.sleep(1.5)  # past the client's timeout
                    return
                if fault == "drop":
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                text = body["messages"][-1]["content"]
                payload = {"id": "c", "object": "chat.completion", "created": 1, "model": body["model"],
                           "choices": [{"index": 0, "finish_reason": "stop",
                                        "message": {"role": "assistant", "content": f"echo {text} [[5]]"}}],
                           "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}
                data = json.dumps(payload).encode()
                if fault == "malformed":
                    data = b"{'not': json"
                elif fault == "truncated":
                    data = data[: len(data) // 2]
                else:
                    with fake.lock:
                        fake.served.append(i)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


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
