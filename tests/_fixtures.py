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
