"""Test helpers shared by several test files (conftest.py holds the session fixtures)."""

from __future__ import annotations

import itertools
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from conftest import send_json

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
BACKEND = "fixed-answers"


class FixedAnswers:
    """A generation backend whose "checkpoint" is a folder holding answers.json ({prompt: reply}):
    two such folders are two checkpoints with known, different outputs."""

    def __init__(self, model: str, device: str = "cpu", **_: Any):
        self.answers = json.loads((Path(model) / "answers.json").read_text())

    def chat(self, conversations: list[list[dict[str, str]]], sampling: Any, desc: str = "") -> list[list[str]]:
        return [[self.answers.get(conv[-1]["content"], "")] * sampling.n for conv in conversations]


def use_fixed_answers(monkeypatch) -> str:
    """Register FixedAnswers as a backend for this test only; returns its name."""
    from selm_bench.harness.core import registry

    registry.load_all()
    entry = registry.Entry("backend", BACKEND, FixedAnswers, "test backend")
    monkeypatch.setitem(registry._ENTRIES["backend"], BACKEND, entry)
    return BACKEND


def answers_checkpoint(folder: Path, answers: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "answers.json").write_text(json.dumps(answers))
    return folder


def openhermes_annotations(tmp_path: Path) -> Path:
    """OpenHermes-2.5-Mistral-7B's AlpacaEval 2.0 annotations: the full file from ../shared/data when
    present, else the committed fixture (the same 805 preferences, texts of the outputs left out)."""
    import gzip

    from conftest import SHARED_DATA

    full = SHARED_DATA / "alpaca_eval/results/OpenHermes-2.5-Mistral-7B/weighted_alpaca_eval_gpt4_turbo/annotations.json"
    if full.is_file():
        return full
    out = tmp_path / "openhermes-annotations.json"
    out.write_bytes(gzip.decompress((FIXTURES / "alpaca_eval" / "openhermes_annotations.json.gz").read_bytes()))
    return out


def fastchat_mt_bench_site(tmp_path: Path) -> Path:
    """A folder laid out like the data mirror holding FastChat's three real MT-Bench files (the
    committed gzip copies, byte-identical to the pinned upstream files)."""
    import gzip

    for gz in (FIXTURES / "mt_bench").glob("*.gz"):
        dest = tmp_path / "mt_bench" / gz.name[:-3].replace("__", "/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(gzip.decompress(gz.read_bytes()))
    return tmp_path


class Recorder:
    """A generation backend that records every conversation and Sampling it is asked for and replies
    `reply(conversation, sampling)` (default: "reply to <last user turn>")."""

    calls: list[tuple[list[list[dict[str, str]]], Any]] = []
    reply = staticmethod(lambda conv, sampling: "reply to " + conv[-1]["content"])

    def __init__(self, model: str, device: str = "cpu", **_: Any):
        self.model = model

    def chat(self, conversations: list[list[dict[str, str]]], sampling: Any, desc: str = "") -> list[list[str]]:
        Recorder.calls.append((conversations, sampling))
        return [[Recorder.reply(c, sampling)] * sampling.n for c in conversations]


def use_recorder(monkeypatch, reply: Any = None) -> type[Recorder]:
    """Register Recorder as the backend "recorder" for this test only, with an empty call log and
    `reply(conversation, sampling)` (None: the default)."""
    from selm_bench.harness.core import registry

    registry.load_all()
    monkeypatch.setattr(Recorder, "calls", [])
    monkeypatch.setattr(Recorder, "reply", staticmethod(reply or (lambda conv, s: "reply to " + conv[-1]["content"])))
    monkeypatch.setitem(registry._ENTRIES["backend"], "recorder", registry.Entry("backend", "recorder", Recorder, "test"))
    return Recorder


FAULTS = ["429", "500", "hang", "drop", "malformed", "truncated"]


def answer(body: dict, text: str) -> dict:
    """The fake judge's choice. AlpacaEval (logprobs asked): prefer an output tagged GOOD, or the other
    one of a pair tagged BAD ("m" = the first shown, "M" = the second). The `judge:` ranker: the response with more
    "+" signs wins, equal counts tie. Otherwise (MT-Bench): echo the question, rating 5."""
    if body.get("logprobs"):
        first, second = text.split('"model_identifier": "M"')
        first = first.split('"model_identifier": "m"')[1]
        token = "m" if "GOOD" in first or "BAD" in second else "M"
        other = "M" if token == "m" else "m"
        top = [{"token": t, "bytes": list(t.encode()), "logprob": lp} for t, lp in ((token, -0.05), (other, -3.0))]
        return {"index": 0, "finish_reason": "length", "message": {"role": "assistant", "content": token},
                "logprobs": {"content": [{**top[0], "top_logprobs": top}]}}
    if "[Response A]" in text:
        a = text.split("[Response A]")[1].split("[End of response A]")[0].count("+")
        b = text.split("[Response B]")[1].split("[End of response B]")[0].count("+")
        content = "[[A]]" if a > b else "[[B]]" if b > a else "[[C]]"
    else:
        content = f"echo {text} [[5]]"
    return {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}


class FlakyOpenAI:
    """A loopback OpenAI chat endpoint answering as `answer` does. With `faults` (the default), every
    third request fails in turn with one of FAULTS; without, every request is answered."""

    def __init__(self, faults: bool = True):
        self.counter = itertools.count()
        self.served = []  # request numbers answered with a valid completion
        self.prompts = []  # the last message of every request that reached a reply body
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
                fault = FAULTS[(i // 3) % len(FAULTS)] if faults and i % 3 == 1 else None
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
                with fake.lock:
                    fake.prompts.append(text)
                choice = answer(body, text)
                payload = {"id": "c", "object": "chat.completion", "created": 1, "model": body["model"],
                           "choices": [choice],
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


def write_alpaca_reference(data: Path, n: int) -> Path:
    """An AlpacaEval-layout reference (results/gpt4_1106_preview/model_outputs.json): even rows tagged
    GOOD, odd rows BAD."""
    ref = data / "alpaca_eval" / "results" / "gpt4_1106_preview" / "model_outputs.json"
    ref.parent.mkdir(parents=True, exist_ok=True)
    ref.write_text(json.dumps([{"dataset": "fixture", "instruction": f"Task {i}: name a colour.", "generator": "gpt4_1106_preview",
                                "output": ("BAD" if i % 2 else "GOOD") + f" reference answer {i}"} for i in range(n)]))
    return data
