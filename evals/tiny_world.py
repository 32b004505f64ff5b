"""tiny-world: greedy answers on the held-out single-turn set, scored by the verifier."""

from __future__ import annotations

from evals.base import EvalContext, SuiteError, SuiteResult, mean_and_stderr
from harness.registry import register_suite
from harness.tinyworld import read_jsonl, verify
from trainers.generation import Sampling


@register_suite("tiny-world", help="held-out tiny-world tasks, greedy, graded verifier (accuracy, score)",
                options=("split", "limit", "max_new_tokens"))
def run(ctx: EvalContext) -> SuiteResult:
    if ctx.world_dir is None:
        raise SuiteError("tiny-world needs the embedded world's data (run it from train-and-eval's default config)")
    split = ctx.option("split", "eval")
    rows = read_jsonl(ctx.world_dir / f"{split}.jsonl")[: ctx.option("limit")]
    answers = ctx.generator().chat(
        [[{"role": "user", "content": r["prompt"]}] for r in rows],
        Sampling(n=1, temperature=0.0, max_new_tokens=ctx.option("max_new_tokens", 24)),
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
