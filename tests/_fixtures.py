"""Test helpers shared by several test files (conftest.py holds the session fixtures)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parent / "fixtures"
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
    from selm_bench.harness import registry

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
    from selm_bench.harness import registry

    registry.load_all()
    monkeypatch.setattr(Recorder, "calls", [])
    monkeypatch.setattr(Recorder, "reply", staticmethod(reply or (lambda conv, s: "reply to " + conv[-1]["content"])))
    monkeypatch.setitem(registry._ENTRIES["backend"], "recorder", registry.Entry("backend", "recorder", Recorder, "test"))
    return Recorder
