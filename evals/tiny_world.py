"""tiny-world: greedy answers on the held-out single-turn set, scored by the verifier.

Options (TinyWorldOptions): split, limit, max_new_tokens.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from selm_bench.evals.base import (
    EvalContext, SuiteError, SuiteResult, fmt, mean, mean_and_stderr, number, render, text,
)
from selm_bench.harness.core.registry import register_suite
from selm_bench.harness.world import read_jsonl, verify
from selm_bench.trainers.generation import Sampling

SUITE = "tiny-world"


class TinyWorldOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    split: str = Field("eval", pattern=r"^[A-Za-z0-9_-]+$",
                       description="the world's split file <split>.jsonl to answer: eval (held out) or dev, "
                                   "or any split with prompt/category/answer rows")
    limit: int | None = Field(None, ge=1, description="answer only the first N rows (None = all)")
    max_new_tokens: int = Field(24, gt=0, description="tokens generated per answer (greedy)")


def paired(items: list[dict[str, Any]]) -> dict[str, float | None]:
    """Accuracy and mean verifier score of per-item records (what `compare` resamples)."""
    if not items:
        return {"accuracy": None, "score": None}
    return {"accuracy": sum(float(i["correct"]) for i in items) / len(items),
            "score": sum(float(i["score"]) for i in items) / len(items)}


def estimate(cfg: Any, spec: Any) -> dict[str, Any]:
    """`selm-bench plan`: one greedy answer a row of the split, graded by the verifier (no judge)."""
    return {"generations": spec.options.get("limit") or cfg.world.n_eval, "judge_calls": 0}


# ---------------------------------------------------------------- the report's drill-down
def drilldown(items: list[dict[str, Any]], folder: Path, k: int = 3) -> str:
    """Accuracy per category and each category's `k` lowest-scored responses."""
    by_cat: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for it in items:
        by_cat[str(it.get("category", "?"))].append(it)
    summary, examples = [], []
    for cat, its in sorted(by_cat.items()):
        wrong = [i for i in its if not i.get("correct", number(i.get("score")) == 1.0)]
        summary.append([cat, len(its), fmt(1 - len(wrong) / len(its)),
                        fmt(mean([number(i.get("score")) or 0.0 for i in its])), len(wrong)])
        for i in sorted(wrong, key=lambda i: number(i.get("score")) or 0.0)[:k]:
            examples.append([cat, text(i.get("prompt")), text(i.get("answer")), text(i.get("response")),
                             fmt(i.get("score"))])
    return render("tiny-world.html", summary=summary, examples=examples, k=k)


def run(ctx: EvalContext) -> SuiteResult:
    ctx.for_suite(SUITE)
    if ctx.world_dir is None:
        raise SuiteError("tiny-world needs the embedded world's data (run it from train-and-eval's default config)")
    split = ctx.option("split")
    rows = read_jsonl(ctx.world_dir / f"{split}.jsonl")[: ctx.option("limit")]
    answers = ctx.generator().chat(
        [[{"role": "user", "content": r["prompt"]}] for r in rows],
        Sampling(n=1, temperature=0.0, max_new_tokens=ctx.option("max_new_tokens")),
        desc=f"tiny-world {ctx.name}",
    )
    items = []
    for r, (a,) in zip(rows, answers):
        s = verify(r["category"], r["answer"], a)
        items.append({**r, "response": a, "score": s, "correct": s == 1.0})
    acc, acc_se = mean_and_stderr([float(i["correct"]) for i in items])
    score, score_se = mean_and_stderr([i["score"] for i in items])
    metrics = {"accuracy": acc, "accuracy_stderr": acc_se, "score": score, "score_stderr": score_se}
    for cat in sorted({r["category"] for r in rows}):
        metrics[f"accuracy/{cat}"] = mean_and_stderr([float(i["correct"]) for i in items if i["category"] == cat])[0]
    return SuiteResult(metrics=metrics, items=items, info={"split": split, "n": len(items)})


# ---------------------------------------------------------------- registration
# Everything the harness knows about this suite (harness/core/registry.py `Suite`).
register_suite(SUITE, help="held-out tiny-world tasks, greedy, graded verifier (accuracy, score)",
               options=TinyWorldOptions, headline="accuracy", paired=paired, tiny=True, plan=estimate,
               drilldown=drilldown, order=10)(run)
