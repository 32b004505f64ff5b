"""One online iteration: generate with the current policy, rank, pair best vs worst, train.

The trained model becomes the next policy and the next reference; within an iteration
the reference (the incoming policy) is frozen. y_ref is the reference policy's own
response to each prompt (greedy by default, as in the paper).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness import registry
from harness.progress import say
from harness.tinyworld import write_jsonl
from trainers.generation import Sampling
from trainers.methods import assistant, train_preference, user


def prompt_chunk(rows: list[dict[str, Any]], iteration: int, iterations: int) -> list[dict[str, Any]]:
    """The prompt pool split into `iterations` disjoint chunks; chunk t for iteration t."""
    size = len(rows) // iterations
    return rows[(iteration - 1) * size : iteration * size]


def build_pairs(
    prompts: list[dict[str, Any]], candidates: list[list[str]], scores: list[list[float]]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(records of everything, training pairs) with chosen = best and rejected = worst."""
    records, pairs = [], []
    for p, cands, sc in zip(prompts, candidates, scores):
        best = max(range(len(cands)), key=lambda i: sc[i])
        worst = min(range(len(cands)), key=lambda i: sc[i])
        usable = sc[best] > sc[worst] and cands[best] != cands[worst]
        records.append({**p, "candidates": cands, "scores": sc, "chosen": cands[best], "rejected": cands[worst],
                        "used": usable})
        if usable:
            pairs.append(records[-1])
    return records, pairs


def run_iteration(cfg: Any, paths: Any, policy: Path, iteration: int, out: Path, selm: bool) -> None:
    o = cfg.online
    prompts = prompt_chunk(paths.world_rows("prompts"), iteration, o.iterations)
    convs = [user(p["prompt"]) for p in prompts]
    gen = registry.get("backend", o.backend)(str(policy), device=cfg.device, batch_size=cfg.eval.batch_size)
    seed = cfg.seed * 1000 + iteration
    ref_sampling = Sampling(n=1, temperature=0.0 if o.ref_response == "greedy" else o.temperature, top_p=o.top_p,
                            max_new_tokens=o.max_new_tokens, seed=seed)
    y_ref = [r[0] for r in gen.chat(convs, ref_sampling, desc=f"y_ref iter-{iteration}")]
    candidates: list[list[str]] = [[] for _ in prompts]
    if "policy" in o.candidates:
        if o.num_samples:
            samples = gen.chat(convs, Sampling(n=o.num_samples, temperature=o.temperature, top_p=o.top_p,
                                               max_new_tokens=o.max_new_tokens, seed=seed),
                               desc=f"sample iter-{iteration}")
            candidates = [c + s for c, s in zip(candidates, samples)]
        candidates = [c + [y] for c, y in zip(candidates, y_ref)]
    if "dataset" in o.candidates:
        candidates = [c + [p["chosen"], p["rejected"]] for c, p in zip(candidates, prompts)]
    del gen

    ranker = registry.get("ranker", o.ranker)()
    scores = ranker.score(prompts, candidates)
    records, pairs = build_pairs(prompts, candidates, scores)
    for r, y in zip(records, y_ref):
        r["y_ref"] = y
    write_jsonl(out / "generations.jsonl", records)
    if not pairs:
        raise RuntimeError(f"iteration {iteration}: every prompt's candidates scored the same; nothing to train on")
    rows = [{"prompt": user(r["prompt"]), "chosen": assistant(r["chosen"]), "rejected": assistant(r["rejected"]),
             "ref_response": assistant(r["y_ref"])} for r in pairs]
    say(f"  iteration {iteration}: {len(pairs)}/{len(records)} prompts gave a pair")
    train_preference(str(policy), str(policy), rows, beta=o.beta, lr=o.learning_rate, batch_size=o.batch_size,
                     epochs=o.epochs, out=out / "model", seed=cfg.seed, device=cfg.device,
                     alpha=o.alpha if selm else None, nll_weight=o.nll_weight, desc=f"{'selm' if selm else 'dpo'} iter-{iteration}")
