"""One online iteration's first two stages: generate the candidates of a prompt chunk with
the current policy, then rank them (best -> chosen, worst -> rejected). The third stage
trains on the ranked pairs (trainers/train.py: train_preference), and the trained model is
the next iteration's policy and reference. y_ref is the reference policy's own response to
each prompt (greedy by default, as in the paper).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from selm_bench.harness.core import registry
from selm_bench.harness.core.progress import say
from selm_bench.harness.core.specs import GenerateSpec, RankSpec
from selm_bench.harness.world import read_jsonl, write_jsonl
from selm_bench.trainers.generation import Sampling
from selm_bench.trainers.train import user


def prompt_chunk(rows: list[dict[str, Any]], iteration: int, iterations: int) -> list[dict[str, Any]]:
    """The prompt pool split into `iterations` disjoint chunks; chunk t for iteration t."""
    size = len(rows) // iterations
    return rows[(iteration - 1) * size : iteration * size]


def build_pairs(
    prompts: list[dict[str, Any]], candidates: list[list[str]], scores: list[list[float] | None],
    keep_ties: bool = False,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(records of everything, training pairs) with chosen = the best candidate and rejected =
    the worst (the first of equals). A prompt whose best and worst tie (same score or same
    text) is a pair only with `keep_ties`, as the SELM authors do; a prompt the ranker failed
    on (scores None) never is."""
    records, pairs = [], []
    for p, cands, sc in zip(prompts, candidates, scores):
        if sc is None:
            records.append({**p, "candidates": cands, "scores": None, "chosen": None, "rejected": None, "used": False})
            continue
        best = max(range(len(cands)), key=lambda i: sc[i])
        worst = min(range(len(cands)), key=lambda i: sc[i])
        usable = keep_ties or (sc[best] > sc[worst] and cands[best] != cands[worst])
        records.append({**p, "candidates": cands, "scores": sc, "chosen": cands[best], "rejected": cands[worst],
                        "used": usable})
        if usable:
            pairs.append(records[-1])
    return records, pairs


def generate(spec: GenerateSpec, root: Path, out: Path) -> None:
    """Writes `candidates.jsonl`: each prompt row with its `candidates` and `y_ref`."""
    prompts = prompt_chunk(read_jsonl(Path(spec.prompts.resolve(root))), spec.chunk, spec.chunks)
    if not prompts:
        raise RuntimeError(f"{spec.prompts.path}: chunk {spec.chunk} of {spec.chunks} has no prompts")
    convs = [user(p["prompt"]) for p in prompts]
    gen = registry.get("backend", spec.backend)(spec.policy.resolve(root), device=spec.device, **spec.backend_options)
    ref_sampling = Sampling(n=1, temperature=0.0 if spec.ref_response == "greedy" else spec.temperature,
                            top_p=spec.top_p, max_new_tokens=spec.max_new_tokens, seed=spec.seed)
    y_ref = [r[0] for r in gen.chat(convs, ref_sampling, desc=f"y_ref iter-{spec.chunk}")]
    candidates: list[list[str]] = [[] for _ in prompts]
    if "policy" in spec.candidates:
        if spec.num_samples:
            samples = gen.chat(convs, Sampling(n=spec.num_samples, temperature=spec.temperature, top_p=spec.top_p,
                                               max_new_tokens=spec.max_new_tokens, seed=spec.seed),
                               desc=f"sample iter-{spec.chunk}")
            candidates = [c + s for c, s in zip(candidates, samples)]
        candidates = [c + [y] for c, y in zip(candidates, y_ref)]
    if "dataset" in spec.candidates:
        candidates = [c + [p["chosen"], p["rejected"]] for c, p in zip(candidates, prompts)]
    write_jsonl(out / "candidates.jsonl", [{**p, "candidates": c, "y_ref": y} for p, c, y in zip(prompts, candidates, y_ref)])


def rank(spec: RankSpec, root: Path, out: Path, runtime: dict[str, Any] | None = None) -> None:
    """Writes `generations.jsonl` (candidates, scores, chosen = best, rejected = worst, y_ref, used)
    and `stage_info.json` (prompts, pairs, ranker failures; the pipeline copies it into the manifest).
    A ranker returns None for a prompt it failed on; past `max_failures` of the prompts the stage fails."""
    rows = read_jsonl(Path(spec.candidates.resolve(root)))
    prompts = [{k: v for k, v in r.items() if k not in ("candidates", "y_ref")} for r in rows]
    judge = {"base_url": spec.judge_base_url, "cache_dir": str(Path(out).parent / "judge-cache"), **(runtime or {})}
    ranker = registry.get("ranker", spec.ranker)(name=spec.ranker, device=spec.device, batch_size=spec.batch_size,
                                                 trust_remote_code=spec.trust_remote_code, **judge)
    scores = ranker.score(prompts, [r["candidates"] for r in rows])
    if len(scores) != len(rows):
        raise RuntimeError(f"ranker {spec.ranker}: {len(scores)} score lists for {len(rows)} prompts")
    failed = sum(s is None for s in scores)
    info = {"prompts": len(rows), "ranker": spec.ranker, "ranker_failures": failed,
            "ranker_calls": getattr(ranker, "accounting", dict)(),
            "ranker_failure_fraction": failed / max(1, len(rows)), "ranker_errors": getattr(ranker, "errors", [])[:5]}
    if failed / max(1, len(rows)) > spec.max_failures:
        raise RuntimeError(f"ranker {spec.ranker} failed on {failed}/{len(rows)} prompts, more than "
                           f"online.max_ranker_failures = {spec.max_failures}")
    records, pairs = build_pairs(prompts, [r["candidates"] for r in rows], scores, keep_ties=spec.keep_ties)
    for rec, r in zip(records, rows):
        rec["y_ref"] = r["y_ref"]
    write_jsonl(out / "generations.jsonl", records)
    from selm_bench.harness.core.store import atomic_write_json

    # With keep_ties, a prompt whose candidates all tie is a pair with chosen = rejected: only the
    # optimism term moves the policy on it (the SELM authors keep them too); counted, never hidden.
    ties = sum(1 for p in pairs if p["chosen"] == p["rejected"] or max(p["scores"]) == min(p["scores"]))
    atomic_write_json(out / "stage_info.json", {**info, "pairs": len(pairs), "tie_pairs": ties})
    if not pairs:
        raise RuntimeError("every prompt's candidates scored the same; nothing to train on")
    say(f"  {len(pairs)}/{len(records)} prompts gave a pair" + (f", {ties} of them ties (chosen = rejected score)" if ties else "")
        + (f" ({failed} ranker failures)" if failed else ""))
