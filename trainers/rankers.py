"""Rankers score each prompt's candidate responses; the online loop keeps best vs worst.

`oracle` is the tiny world's verifier. PairRM and reward-model rankers plug in here with
the same `score` signature.
"""

from __future__ import annotations

from typing import Any

from harness.registry import register_ranker


@register_ranker("oracle", help="the tiny world's graded verifier (needs gold answers)")
class OracleRanker:
    def __init__(self, **_: Any):
        pass

    def score(self, prompts: list[dict[str, Any]], candidates: list[list[str]]) -> list[list[float]]:
        from harness.tinyworld import verify

        return [[verify(p["category"], p["answer"], c) for c in cands] for p, cands in zip(prompts, candidates)]
