"""Figure 12: the `hf` backend's batched generation vs one prompt at a time, same prompts.

Greedy (so both see the same work), the tiny world's eval prompts, `max_new_tokens` 64 as in the
default's generate stage. Throughput = prompts per second; the value is the median over rounds
of that round's ratio (both timed back to back). Bound: batch 32 >= 8x batch 1.
Prints one JSON object on stdout's last line.
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
    ap.add_argument("--prompts", help="a tiny-world jsonl with `prompt` (default: a fresh world's eval set)")
    ap.add_argument("--n", type=int, default=64, help="prompts (a multiple of 32)")
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()

    from selm_bench.harness.core.config import ModelConfig, WorldConfig
    from selm_bench.harness.world import build_base_model, build_tokenizer, build_world, read_jsonl
    from selm_bench.trainers.generation import HFBackend, Sampling

    model, prompts = a.model, a.prompts
    if model is None or prompts is None:
        tmp = Path(tempfile.mkdtemp())
        build_world(WorldConfig(n_sft=8, n_pref=8, n_prompts=8, n_dev=8, n_eval=max(a.n, 8), n_two_turn=4, n_mc=4), 0, tmp / "w")
        prompts = prompts or str(tmp / "w" / "eval.jsonl")
        if model is None:
            build_base_model(ModelConfig(), build_tokenizer(tmp / "m"), 0, tmp / "m")
            model = str(tmp / "m")
    convs = [[{"role": "user", "content": r["prompt"]}] for r in read_jsonl(Path(prompts))][: a.n]
    sampling = Sampling(temperature=0.0, max_new_tokens=a.max_new_tokens)
    backends = {bs: HFBackend(model, device="cpu", batch_size=bs) for bs in (1, 32)}
    texts, secs = {}, {1: [], 32: []}
    for bs, backend in backends.items():
        backend.chat(convs[:2], sampling)  # warm up
    for _ in range(a.rounds):  # interleaved: batch 1 then batch 32, each round
        for bs, backend in backends.items():
            t = time.perf_counter()
            texts[bs] = backend.chat(convs, sampling)
            secs[bs].append(round(time.perf_counter() - t, 3))
    same = sum(x == y for x, y in zip(texts[1], texts[32])) / len(convs)
    rate = {bs: len(convs) / statistics.median(v) for bs, v in secs.items()}
    print(json.dumps({"12_generation_batch32_vs_1": {
        "value": round(statistics.median(s1 / s32 for s1, s32 in zip(secs[1], secs[32])), 2), "bound": 8.0,
        "op": ">=", "prompts_per_s": {"batch 1": round(rate[1], 2), "batch 32": round(rate[32], 2)}, "seconds": secs,
        "prompts": len(convs), "max_new_tokens": a.max_new_tokens,
        "same_output_share": round(same, 3)}}))


if __name__ == "__main__":
    main()
