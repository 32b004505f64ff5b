"""Judges: the shared interface and the `oracle` judge of the tiny world.

LLM judges (e.g. `openai:<model>`) implement `chat_many`; the oracle implements `score`.
Both report `accounting()` for metrics.json.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from selm_bench.harness.core import registry
from selm_bench.harness.core.registry import register_judge


class Judge:
    name: str = "judge"

    def chat_many(self, requests: list[list[dict[str, str]]], **sampling: Any) -> list[str | None]:
        """One completion per message list; None where the call failed after retries."""
        raise NotImplementedError(f"judge {self.name!r} does not answer chat requests")

    def score(self, item: dict[str, Any], response: str) -> float:
        """A verifiable score in [0, 1] for `response` to `item` (oracle judges only)."""
        raise NotImplementedError(f"judge {self.name!r} cannot verify answers")

    def accounting(self) -> dict[str, int]:
        return {}

    def check(self) -> None:
        """Fail fast (missing credentials, ...) before any answer is generated."""


@register_judge("oracle", help="the tiny world's verifier (graded score in [0, 1])")
class OracleJudge(Judge):
    name = "oracle"

    def __init__(self, spec: str = "oracle", cache_dir: Path | None = None, **_: Any):
        self.calls = 0

    def score(self, item: dict[str, Any], response: str) -> float:
        from selm_bench.harness.world import verify

        self.calls += 1
        return verify(item["category"], item["answer"], response)

    def accounting(self) -> dict[str, int]:
        return {"calls": self.calls, "cached": 0, "failures": 0, "prompt_tokens": 0, "completion_tokens": 0}


def make_judge(spec: str, cache_dir: Path | None = None, **options: Any) -> Judge:
    """`spec` is a registry name, optionally parameterised: "oracle", "openai:gpt-4"."""
    return registry.get("judge", spec)(spec=spec, cache_dir=cache_dir, **options)
