"""Figure 14: the harness's lm-eval suite (`run_suite`: task file, HFLM, simple_evaluate, results,
items and metrics written) vs `lm_eval.simple_evaluate` called directly with HFLM on the same
model, task and batch size. Model loading counts on both sides. Interleaved, direct then harness
each round; the value is the median over rounds of that round's ratio (a busy spell on a shared
machine slows both sides alike), the ratio of the fastest runs beside it. Bound: <= 1.05x.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from common import setup_env

setup_env()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", help="a checkpoint (default: a fresh tiny base model)")
    ap.add_argument("--world", help="a tiny world's data folder with mc.jsonl (default: a fresh world)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=64, help="the default's eval.batch_size")
    a = ap.parse_args()

    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    from selm_bench.evals.base import EvalContext
    from selm_bench.evals.lm_eval_suite import TINYWORLD_TASK, write_tinyworld_task
    from selm_bench.harness.core.config import ModelConfig, WorldConfig
    from selm_bench.harness.run.evaluate import run_suite
    from selm_bench.harness.world import build_base_model, build_tokenizer, build_world

    tmp = Path(tempfile.mkdtemp())
    model, world = a.model, a.world
    if world is None:
        build_world(WorldConfig(n_sft=8, n_pref=8, n_prompts=8, n_dev=8, n_eval=8, n_two_turn=4), 0, tmp / "w")
        world = str(tmp / "w")
    if model is None:
        build_base_model(ModelConfig(), build_tokenizer(tmp / "m"), 0, tmp / "m")
        model = str(tmp / "m")
    task_dir = tmp / "direct-tasks"
    write_tinyworld_task(Path(world), task_dir)

    def harness(i: int) -> dict:
        ctx = EvalContext(model=model, name="bench", out_dir=tmp / f"h{i}", world_dir=Path(world), suite="lm-eval",
                          backend_options={"batch_size": a.batch_size}, device="cpu")
        return run_suite(ctx, "lm-eval").metrics

    def direct(i: int) -> dict:
        lm = HFLM(pretrained=model, device="cpu", batch_size=a.batch_size)
        tm = TaskManager(include_path=str(task_dir), include_defaults=False)
        res = lm_eval.simple_evaluate(model=lm, tasks=[TINYWORLD_TASK], task_manager=tm, log_samples=True)
        return {f"{TINYWORLD_TASK}/acc": res["results"][TINYWORLD_TASK]["acc,none"]}

    secs: dict[str, list[float]] = {"harness": [], "direct": []}
    got: dict[str, dict] = {}
    direct(-1)  # warm both code paths (imports, lm-eval's first task index) outside the timing
    harness(-1)
    for i in range(a.repeats):
        for name, fn in (("direct", direct), ("harness", harness)):
            t = time.perf_counter()
            got[name] = fn(i)
            secs[name].append(round(time.perf_counter() - t, 3))
    key = f"{TINYWORLD_TASK}/acc"
    assert got["harness"][key] == got["direct"][key], f"different accuracy: {got}"
    print(json.dumps({"14_lm_eval_suite_vs_direct": {
        "value": round(statistics.median(h / d for h, d in zip(secs["harness"], secs["direct"])), 3),
        "bound": 1.05, "op": "<=", "seconds": secs,
        "from_fastest_runs": round(min(secs["harness"]) / min(secs["direct"]), 3),
        "task": TINYWORLD_TASK, "accuracy": got["harness"][key]}}))


if __name__ == "__main__":
    main()
