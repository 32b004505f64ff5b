"""Figure 13: the `openai:` judge client at concurrency 16 vs 1 against a loopback
OpenAI-compatible endpoint that answers after 50 ms; then an identical rerun on the same
disk cache, which must send 0 requests. Bound: >= 10x faster. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from common import setup_env

setup_env()

LATENCY_S = 0.05


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        time.sleep(LATENCY_S)
        reply = {"id": "x", "object": "chat.completion", "created": 0, "model": body.get("model", "judge"),
                 "choices": [{"index": 0, "finish_reason": "stop",
                              "message": {"role": "assistant", "content": "Rating: [[7]]"}}],
                 "usage": {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13}}
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=160)
    a = ap.parse_args()
    import os

    from selm_bench.evals.openai_judge import OpenAIJudge

    os.environ.setdefault("OPENAI_API_KEY", "sk-loopback-bench")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}/v1"
    secs, acct = {}, {}
    for conc in (1, 16):
        # distinct requests per setting, so neither run reads the other's cache
        reqs = [[{"role": "user", "content": f"judge answer {i} at concurrency {conc}"}] for i in range(a.requests)]
        judge = OpenAIJudge("openai:bench-judge", cache_dir=Path(tempfile.mkdtemp()), base_url=base, concurrency=conc)
        judge.chat_many(reqs[:1])  # the client and connection are built outside the timed part
        t = time.perf_counter()
        out = judge.chat_many(reqs[1:])
        secs[conc] = time.perf_counter() - t
        assert all(o == "Rating: [[7]]" for o in out), "the judge returned something else"
        acct[conc] = judge.accounting()
        if conc == 16:  # identical rerun, same cache folder, a fresh client: must send nothing
            again = OpenAIJudge("openai:bench-judge", cache_dir=judge.cache_dir.parent, base_url=base, concurrency=conc)
            t = time.perf_counter()
            again.chat_many(reqs)
            rerun_s, rerun = time.perf_counter() - t, again.accounting()
    server.shutdown()
    n = a.requests - 1
    print(json.dumps({
        "13_judge_concurrency16_vs_1": {
            "value": round(secs[1] / secs[16], 2), "bound": 10.0, "op": ">=", "requests": n, "latency_ms": LATENCY_S * 1000,
            "seconds": {"concurrency 1": round(secs[1], 3), "concurrency 16": round(secs[16], 3)},
            "ideal_speedup": 16, "calls": {str(k): v["calls"] for k, v in acct.items()}},
        "13_judge_rerun_calls": {"value": rerun["calls"], "bound": 0, "op": "<=", "cached": rerun["cached"],
                                 "seconds": round(rerun_s, 3)},
    }))


if __name__ == "__main__":
    main()
