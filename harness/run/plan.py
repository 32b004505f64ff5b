"""`selm-bench plan`: what a config will run, without downloading or running anything.

Every stage in order with its inputs, outputs and hyperparameters, the generations and
ranker / judge calls it makes, rough GPU-hours and judge cost, and every hub artefact the
run would fetch with whether it is already in the local cache.

The estimates are rough on purpose and their assumptions are printed with them: training
FLOPs = 8 N per token (6 N for the policy's forward and backward, 2 N for the reference's
forward) over sequences of half `max_length` on average; generation FLOPs = 2 N per new
token, half of `max_new_tokens` on average; H100 bf16 at 989 TFLOP/s with 40% utilisation
for training and 10% for generation. N comes from the model name ("7b", "8B"); without one
no GPU-hours are given.

A rank stage's `ranker_calls` are the units of work its ranker does, counted as
trainers/rankers.py and trainers/pairrm.py do them for n candidates a prompt (`RANKER_WORK`):
the oracle verifies and a reward model scores each candidate (n), PairRM runs one forward row
per ordered pair (n(n-1), its full comparison matrix), a `judge:<model>` ranker asks its LLM
once per unordered pair (n(n-1)/2; identical requests and cached answers are not sent again, so
this is an upper bound). A judge ranker's calls are paid judge calls: they enter `judge_calls`
and `judge_usd` like the suites' judge calls.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from selm_bench.harness.core import registry
from selm_bench.harness.core.config import ExperimentConfig
from selm_bench.harness.run.stages import Stage, plan, resolve_device
from selm_bench.harness.core.store import hub_cached
from selm_bench.harness.core.specs import DataSpec, EvalSpec, GenerateSpec, PreferenceSpec, RankSpec, SFTSpec, WorldSpec

PEAK_FLOPS = 989e12
TRAIN_MFU, GEN_MFU = 0.40, 0.10
# An eval stage's generations, judge calls and judge cost are its suite's registered `plan`.
# A `judge:<model>` ranker's pairwise comparison: the prompt and two candidates (about 1k tokens
# in), a short verdict (0.3k out), priced as GPT-4 like an MT-Bench grading.
RANKER_JUDGE_USD = 0.05
# Per ranker kind: (work a prompt with n candidates, what one unit is), as the rankers' code does it.
RANKER_WORK = {
    "oracle": (lambda n: n, "verifier calls, one a candidate (local, free)"),
    "reward-model": (lambda n: n, "reward-model rows, one a candidate"),
    "pairrm": (lambda n: n * (n - 1), "PairRM forward rows, one per ordered pair: n(n-1)"),
    "judge": (lambda n: n * (n - 1) // 2, "judge calls, one per pair in one order: n(n-1)/2, at most"),
}


def params_billions(name: str) -> float | None:
    m = re.search(r"(\d+(?:\.\d+)?)\s*[bB](?![a-zA-Z])", Path(name).name)
    return float(m.group(1)) if m else None


def _rows(cfg: ExperimentConfig, ref_path: str) -> int | None:
    """Rows of a stage input, from the config alone (offline)."""
    w, d = cfg.world, cfg.data
    if ref_path.startswith("data/chunk-"):
        return d.expected_rows // d.chunks if d.expected_rows else None
    return {"world/data/sft.jsonl": w.n_sft, "world/data/pref.jsonl": w.n_pref,
            "world/data/prompts.jsonl": w.n_prompts}.get(ref_path)


def _batch(t) -> str:
    return (f"{t.per_device_batch_size * t.num_processes * t.gradient_accumulation_steps} = "
            f"{t.num_processes} x {t.per_device_batch_size} x {t.gradient_accumulation_steps}")


def _train_hours(n_b: float | None, pairs: int | None, seqs: int, t) -> float | None:
    if n_b is None or pairs is None:
        return None
    tokens = pairs * seqs * t.max_length / 2 * t.epochs
    return tokens * 8 * n_b * 1e9 / (PEAK_FLOPS * TRAIN_MFU) / 3600


def _gen_hours(n_b: float | None, generations: int | None, max_new: int) -> float | None:
    if n_b is None or generations is None:
        return None
    return generations * max_new / 2 * 2 * n_b * 1e9 / (PEAK_FLOPS * GEN_MFU) / 3600


def _hyper(t) -> dict[str, Any]:
    """Every training hyperparameter of a stage, as its spec gives it to TRL."""
    strategy = getattr(t, "strategy", None)
    return {"lr_scheduler": t.lr_scheduler, "warmup_ratio": t.warmup_ratio, "optim": t.optim or "transformers' default",
            "weight_decay": t.weight_decay, "max_steps": t.max_steps, "precision": t.precision,
            "gradient_checkpointing": t.gradient_checkpointing, "num_processes": t.num_processes,
            "strategy": strategy.model_dump(mode="json") if strategy is not None else "ddp", "seed": t.seed}


def _stage(cfg: ExperimentConfig, st: Stage, n_b: float | None, ranked: dict[str, int | None]) -> dict[str, Any]:
    s = st.spec
    row: dict[str, Any] = {"name": st.name, "kind": s.kind, "output": st.folder}
    if isinstance(s, WorldSpec):
        row.update(inputs=[], detail=f"tiny world (seed {s.seed}); base model: "
                   + ("the configured model" if s.tiny_model is None else f"tiny Llama {s.tiny_model.hidden_size}x{s.tiny_model.num_layers}"))
    elif isinstance(s, DataSpec):
        size = s.expected_rows // s.chunks if s.expected_rows else None
        split = s.split if s.split is not None else f"no split: read whole, data.split={cfg.data.split} does not apply"
        row.update(inputs=[s.source], detail=f"{s.source} [{split}]: {s.expected_rows or '?'} rows -> {s.chunks} "
                   f"chunks of {size or '?'}", split=s.split, rows=s.expected_rows, chunk_rows=size)
    elif isinstance(s, SFTSpec):
        rows = _rows(cfg, s.data.path)
        row.update(inputs=[s.base.path, s.data.path], model=s.base.path, rows=rows, learning_rate=s.train.learning_rate,
                   global_batch=_batch(s.train), epochs=s.train.epochs,
                   gpu_hours=_train_hours(n_b, rows, 1, s.train), train={**_hyper(s.train), "max_length": s.train.max_length})
    elif isinstance(s, PreferenceSpec):
        rows = ranked[s.pairs.path] if s.pairs.path in ranked else _rows(cfg, s.pairs.path)  # online: its ranking's
        row.update(inputs=[s.policy.path, s.reference.path, s.pairs.path], model=s.policy.path, reference=s.reference.path,
                   loss=s.loss, beta=s.beta, alpha=s.alpha if s.loss == "selm" else 0.0, nll_weight=s.nll_weight,
                   learning_rate=s.train.learning_rate, global_batch=_batch(s.train), epochs=s.train.epochs,
                   max_length=s.train.max_length, max_prompt_length=s.train.max_prompt_length, rows=rows,
                   gpu_hours=_train_hours(n_b, rows, 3 if s.loss == "selm" else 2, s.train),
                   train={**_hyper(s.train), "truncation": s.train.truncation,
                          "precompute_ref_log_probs": s.train.precompute_ref_log_probs})
    elif isinstance(s, GenerateSpec):
        prompts = _rows(cfg, s.prompts.path)
        if prompts is not None and s.chunks > 1:
            prompts //= s.chunks
        per = (s.num_samples + 1 if "policy" in s.candidates else 0)
        gens = prompts * per if prompts is not None else None
        cands = per + (2 if "dataset" in s.candidates else 0)
        row.update(inputs=[s.policy.path, s.prompts.path], model=s.policy.path, rows=prompts,
                   detail=f"chunk {s.chunk}/{s.chunks}; {per} policy response(s) + "
                          f"{'the dataset pair' if 'dataset' in s.candidates else 'no dataset pair'} = {cands} candidates",
                   backend=s.backend, generations=gens, gpu_hours=_gen_hours(n_b, gens, s.max_new_tokens))
        row["_candidates"] = cands
    elif isinstance(s, RankSpec):
        row.update(inputs=[s.candidates.path], ranker=s.ranker, keep_ties=s.keep_ties)
    elif isinstance(s, EvalSpec):
        row.update(inputs=[s.model.path], model=s.model.path, suite=s.suite, **_eval_counts(cfg, s))
    return row


def _eval_counts(cfg: ExperimentConfig, s: EvalSpec) -> dict[str, Any]:
    """The suite's own estimate (its registered `plan`)."""
    suite = registry.entry("suite", s.suite)
    if suite.plan is None:
        return {"generations": None, "judge_calls": None, "detail": "no estimate (the suite declares no plan)"}
    return suite.plan(cfg, s)


def _rank_counts(ranker: str, prompts: int | None, candidates: int) -> dict[str, Any]:
    """A rank stage's ranker work (module docstring) and, for a judge ranker, its paid judge calls."""
    kind, _, model = ranker.partition(":")
    per, unit = RANKER_WORK.get(kind, (lambda n: None, "not counted (a ranker this plan does not know)"))
    per = per(candidates)
    calls = prompts * per if prompts is not None and per is not None else None
    out: dict[str, Any] = {"ranker_calls": calls, "ranker_calls_a_prompt": per, "ranker_unit": unit,
                           "detail": f"{candidates} candidates a prompt, {'?' if per is None else per} {unit}; "
                                     "best -> chosen, worst -> rejected"}
    if kind == "judge":  # the openai: judge client with <model> (trainers/rankers.py: JudgeRanker)
        out.update(judge=f"openai:{model}", judge_calls=calls,
                   judge_usd=None if calls is None else round(calls * RANKER_JUDGE_USD, 2))
    return out


def _artefact(kind: str, name: str, repo_type: str = "model") -> dict[str, Any]:
    local = name.startswith((".", "/", "~")) or name.count("/") > 1 or Path(name).expanduser().exists()
    present = Path(name).expanduser().exists() if local else hub_cached(name, repo_type)
    return {"kind": kind, "name": name, "where": "local" if local else "hub", "present": present}


def _ranker_model(ranker: str) -> str | None:
    """The model a ranker downloads (hub id or path); None for one that downloads nothing (the
    oracle; a `judge:<model>` ranker, an API) or that this plan does not know."""
    kind, _, arg = ranker.partition(":")
    if kind == "pairrm":
        return arg or "llm-blender/PairRM-hf"
    return arg if kind == "reward-model" else None


def _suite_artefacts(evals: list[Stage]) -> list[dict[str, Any]]:
    """What the eval stages' suites add to the list (their registered `artefacts`: lm-eval's tasks)."""
    out = []
    for st in evals:
        hook = registry.entry("suite", st.spec.suite).artefacts if isinstance(st.spec, EvalSpec) else None
        for row in hook(st.spec) if hook else []:
            if row not in out:
                out.append(row)
    return out


def artefacts(cfg: ExperimentConfig, stages: list[Stage] | None = None) -> list[dict[str, Any]]:
    """What the run reads from outside the run folder: hub repos (models, datasets) with whether
    they are cached, local files, and lm-eval's tasks. API judges are not artefacts."""
    if stages is None:
        stages = [st for part in plan(cfg) for st in part]
    out = []
    if cfg.model.pretrained:
        out.append(_artefact("model", cfg.model.pretrained))
    if cfg.data.prompts:
        out.append(_artefact("dataset", cfg.data.prompts, "dataset"))
    for r in dict.fromkeys(st.spec.ranker for st in stages if isinstance(st.spec, RankSpec)):
        if _ranker_model(r):
            out.append(_artefact(f"ranker ({r.split(':')[0]})", _ranker_model(r)))
    mirror = Path(cfg.eval.data_dir) if cfg.eval.data_dir else None
    for suite in cfg.suites if cfg.data.prompts else []:  # the tiny world's suites read its own data
        base = registry.base_name("suite", suite)
        entry = registry.suite_entry(suite)
        for f in entry.data_files if entry else ():
            out.append({"kind": f"{base} data", "name": f"<eval.data_dir>/{f}", "where": "local",
                        "present": bool(mirror and (mirror / f).is_file())})
    return out + _suite_artefacts([st for st in stages if isinstance(st.spec, EvalSpec)])


def describe(cfg: ExperimentConfig) -> dict[str, Any]:
    stages, evals = plan(cfg)
    n_b = params_billions(cfg.model.pretrained) if cfg.model.pretrained else None
    rows: list[dict[str, Any]] = []
    by_folder: dict[str, dict[str, Any]] = {}
    ranked: dict[str, int | None] = {}  # a ranking's output file -> its prompts
    for st in [*stages, *evals]:
        row = _stage(cfg, st, n_b, ranked)
        if row["kind"] == "rank":  # a ranking's size is its generation's
            gen = by_folder[row["inputs"][0].rsplit("/", 1)[0]]
            row.update(rows=gen.get("rows"), **_rank_counts(row["ranker"], gen.get("rows"), gen["_candidates"]))
            ranked[f"{st.folder}/generations.jsonl"] = row["rows"]
        by_folder[st.folder] = row
        rows.append(row)
    for r in rows:
        r.pop("_candidates", None)

    def total(key: str) -> float | None:
        vals = [r.get(key) for r in rows if key in r]
        return None if any(v is None for v in vals) else round(sum(vals), 2)

    return {
        "name": cfg.name, "device": resolve_device(cfg.device), "stages": rows,
        "totals": {"stages": len(rows), "generations": total("generations"), "ranker_calls": total("ranker_calls"),
                   "judge_calls": total("judge_calls"), "judge_usd": total("judge_usd"), "gpu_hours": total("gpu_hours")},
        "assumptions": __doc__.split("\n\n")[2].replace("\n", " ").strip(),
        "artefacts": artefacts(cfg, [*stages, *evals]),
    }


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.3g}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def _train_line(t: dict[str, Any]) -> str:
    """A training stage's hyperparameters (its JSON `train`), compactly."""
    st = t["strategy"]
    if isinstance(st, dict):
        offload = [f"{k.removeprefix('offload_')} {st[k]}" for k in ("offload_optimizer", "offload_param")
                   if st.get(k) not in (None, "none")]
        st = {"deepspeed": f"deepspeed zero-{st['zero_stage']}", "fsdp": f"fsdp {st.get('sharding')}"}.get(
            st["kind"], st["kind"]) + (f" (offload {', '.join(offload)})" if offload else "")
    shown = {"scheduler": t["lr_scheduler"], "warmup": t["warmup_ratio"], "optim": t["optim"],
             "weight_decay": t["weight_decay"], "max_steps": t["max_steps"] if t["max_steps"] > 0 else None,
             "precision": t["precision"], "grad_ckpt": t["gradient_checkpointing"], "strategy": st,
             "processes": t["num_processes"], "seed": t["seed"], "truncation": t.get("truncation"),
             "precompute_ref": t.get("precompute_ref_log_probs")}
    return "train: " + "; ".join(f"{k}={_fmt(v)}" for k, v in shown.items() if v is not None)


def to_text(d: dict[str, Any]) -> str:
    keys = ("model", "reference", "rows", "loss", "beta", "alpha", "learning_rate", "global_batch", "epochs",
            "max_length", "max_prompt_length", "backend", "ranker", "keep_ties", "generations", "ranker_calls",
            "judge", "judge_calls", "judge_usd", "gpu_hours", "detail")
    lines = [f"plan: {d['name']} ({len(d['stages'])} stages)"]
    for i, r in enumerate(d["stages"], 1):
        lines.append(f"{i:3d}. {r['name']} [{r['kind']}] -> {r['output']}")
        if r.get("inputs"):
            lines.append(f"       inputs: {', '.join(r['inputs'])}")
        shown = [f"{k}={_fmt(r[k])}" for k in keys if r.get(k) not in (None, "")]
        if shown:
            lines.append("       " + "; ".join(shown))
        if r.get("train"):
            lines.append("       " + _train_line(r["train"]))
    t = d["totals"]
    lines.append("totals: " + "; ".join(f"{k}={'?' if v is None else _fmt(v)}" for k, v in t.items()))
    lines.append("assumptions: " + d["assumptions"])
    lines.append("artefacts:")
    for a in d["artefacts"]:
        state = {True: "present", False: "missing", None: "unknown"}[a["present"]]
        lines.append(f"  {a['kind']}: {a['name']} ({a['where']}; {state})")
    return "\n".join(lines) + "\n"
