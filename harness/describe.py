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
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from selm_bench.harness.config import ExperimentConfig
from selm_bench.harness.plan import Stage, plan, resolve_device
from selm_bench.harness.specs import DataSpec, EvalSpec, GenerateSpec, PreferenceSpec, RankSpec, SFTSpec, WorldSpec

PEAK_FLOPS = 989e12
TRAIN_MFU, GEN_MFU = 0.40, 0.10
# Rough list-price cost of one paid judge call (USD): an MT-Bench GPT-4 grading (about 1k
# tokens in, 0.3k out) and an AlpacaEval 2.0 GPT-4 Turbo annotation (alpaca_eval: "< $10" a model).
JUDGE_USD = {"mt-bench": 0.05, "alpaca-eval": 0.012}
REAL_SIZES = {"mt-bench": (80, 2), "alpaca-eval": (805, 1)}  # questions, turns


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
        row.update(inputs=[s.source], detail=f"{s.source} [{s.split}]: {s.expected_rows or '?'} rows -> {s.chunks} "
                   f"chunks of {size or '?'}", rows=s.expected_rows, chunk_rows=size)
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
    base = s.suite.split(":", 1)[0]
    tiny = s.world is not None
    if base == "tiny-world":
        return {"generations": s.options.get("limit") or cfg.world.n_eval, "judge_calls": 0}
    if base in ("lm-eval", "brainteaser"):
        return {"generations": 0, "judge_calls": 0, "detail": "log-likelihood scoring (lm-eval), no judge"}
    if tiny:
        n, turns = (cfg.world.n_two_turn, 2) if base == "mt-bench" else (cfg.world.n_eval, 1)
        return {"generations": n * turns, "judge_calls": 0, "detail": "oracle judge (free)"}
    n, turns = REAL_SIZES[base]
    limit = s.options.get("question_limit") or s.options.get("limit")
    n = min(n, limit) if limit else n
    judge = s.judge if base == "mt-bench" else s.options.get("annotators_config")
    return {"generations": n * turns, "judge_calls": n * turns, "judge": judge,
            "judge_usd": round(n * turns * JUDGE_USD[base], 2)}


def _cached(repo: str, repo_type: str = "model") -> bool | None:
    """Whether a hub repo is in the local cache (None: cannot tell)."""
    try:
        from huggingface_hub import scan_cache_dir
    except ImportError:
        return None
    try:
        return any(r.repo_id == repo and r.repo_type == repo_type for r in scan_cache_dir().repos)
    except Exception:  # noqa: BLE001 - no cache folder yet: nothing cached
        return False


def _artefact(kind: str, name: str, repo_type: str = "model") -> dict[str, Any]:
    local = name.startswith((".", "/", "~")) or name.count("/") > 1 or Path(name).expanduser().exists()
    present = Path(name).expanduser().exists() if local else _cached(name, repo_type)
    return {"kind": kind, "name": name, "where": "local" if local else "hub", "present": present}


def artefacts(cfg: ExperimentConfig) -> list[dict[str, Any]]:
    out = []
    if cfg.model.pretrained:
        out.append(_artefact("model", cfg.model.pretrained))
    if cfg.data.prompts:
        out.append(_artefact("dataset", cfg.data.prompts, "dataset"))
    r = cfg.online.ranker
    if any(m in cfg.methods for m in ("iterative-dpo", "selm")) and r != "oracle":
        ranker_repo = "llm-blender/PairRM-hf" if r == "pairrm" else r.split(":", 1)[1]
        out.append(_artefact(f"ranker ({r.split(':')[0]})", ranker_repo))
    if not cfg.data.prompts:
        return out
    mirror = Path(cfg.eval.data_dir) if cfg.eval.data_dir else None
    files = {"mt-bench": ["mt_bench/question.jsonl", "mt_bench/reference_answer/gpt-4.jsonl", "mt_bench/judge_prompts.jsonl"],
             "alpaca-eval": ["alpaca_eval/results/gpt4_1106_preview/model_outputs.json"],
             "brainteaser": ["brainteaser/SP_train.jsonl", "brainteaser/WP_train.jsonl"]}
    for suite in cfg.suites:
        base = suite.split(":", 1)[0]
        for f in files.get(base, []):
            out.append({"kind": f"{base} data", "name": f"<eval.data_dir>/{f}", "where": "local",
                        "present": bool(mirror and (mirror / f).is_file())})
        if base == "lm-eval":
            out.append({"kind": "lm-eval tasks", "name": suite.split(":", 1)[1] if ":" in suite else "tasks option",
                        "where": "hub (lm-eval fetches each task's dataset)", "present": None})
    return out


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
            row.update(rows=gen.get("rows"), ranker_calls=gen.get("rows"),
                       detail=f"{gen['_candidates']} candidates a prompt; best -> chosen, worst -> rejected")
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
        "artefacts": artefacts(cfg),
    }


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        return f"{v:.3g}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


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
    t = d["totals"]
    lines.append("totals: " + "; ".join(f"{k}={'?' if v is None else _fmt(v)}" for k, v in t.items()))
    lines.append("assumptions: " + d["assumptions"])
    lines.append("artefacts:")
    for a in d["artefacts"]:
        state = {True: "present", False: "missing", None: "unknown"}[a["present"]]
        lines.append(f"  {a['kind']}: {a['name']} ({a['where']}; {state})")
    return "\n".join(lines) + "\n"
