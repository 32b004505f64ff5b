"""AlpacaEval 2.0: the model's outputs against a reference's, annotated pairwise, through `alpaca_eval`.

Real mode: the 805 instructions and GPT-4 Turbo (gpt4_1106_preview) reference outputs from the data
mirror; alpaca_eval's own PairwiseAnnotator with `weighted_alpaca_eval_gpt4_turbo` (its prompt,
randomised output order and logprob parser); its chat requests go through the harness's `openai:` judge
client (evals/openai_judge.py: key from OPENAI_API_KEY only, endpoint from eval.judge_base_url or
OPENAI_BASE_URL, timeout, bounded retries, disk cache) instead of alpaca_eval's decoder, so a flaky endpoint
leaves failed judgments recorded with their reason (preference and score None, `judge_error`) instead of
stopping the eval; failed judgments are not cached, so a rerun (`selm-bench judge`, or train-and-eval's
rejudge) sends only those again. Metrics from `alpaca_eval.metrics`.

Items (items.jsonl): `id` is the instruction's position in the AlpacaEval set (tiny mode: the tiny-world
prompt id), stable across runs and checkpoints; `score` = preference - 1 (1 = the model's output preferred,
0 = the reference's, 0.5 a tie; None when not judged).

Tiny mode (ctx.world_dir set): the tiny world's eval prompts; the reference is the greedy output of
ctx.references["sft"]; the annotator is the oracle verifier with a graded preference
    preference = 1.5 + (s_model - s_ref) / 2   in [1, 2]   (1.5 = tie, 2 = model fully right, ref wrong)
(the verifier scores are kept in items as `verifier_score` and `ref_score`), which mirrors the weighted (probability) preference of the AE2 annotator; same metric functions.

Length-controlled win rate: alpaca_eval's GLM needs `df_gamed.csv` (hub dataset tatsu-lab/alpaca_eval)
for the per-instruction difficulty and the gamed-baseline regularisation. It is read from
<data_dir>/alpaca_eval/df_gamed.csv, never downloaded; without it, and always in tiny mode (the difficulty
is per AlpacaEval instruction), LC is None with the reason in info. A fit returning exactly 50.0 with zero
error is degenerate (all coefficients zero): it is reported as None, flagged, with the raw value in info.

Options (AlpacaEvalOptions): limit (first N instructions), max_new_tokens (2048 real, 24 tiny), temperature
(0 = greedy), top_p, annotators_config (real mode, default weighted_alpaca_eval_gpt4_turbo). Tiny mode always
uses the oracle.

`selm-bench data pull` fetches alpaca_eval's `results/gpt4_1106_preview/model_outputs.json` (the AlpacaEval
2.0 evaluation set and its reference outputs) at a pinned commit (DATA_SOURCES). `df_gamed.csv` (length-
controlled win rate) has no pinned checksum here and is not pulled: without it LC stays null, as documented.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import time
import warnings
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any, Iterator

from pydantic import BaseModel, ConfigDict, Field

from selm_bench.evals.base import (
    EvalContext, SuiteError, SuiteResult, judged_plan, not_canonical, number, render,
)
from selm_bench.harness.core.registry import Artefact, InputError, register_suite
from selm_bench.harness.core.store import atomic_write_json, atomic_write_text

ANNOTATOR = "weighted_alpaca_eval_gpt4_turbo"
SUITE = "alpaca-eval"
N_INSTRUCTIONS = 805  # AlpacaEval's instructions: fewer is a subset, labelled on the leaderboard
MAX_NEW_TOKENS = {"real": 2048, "tiny": 24}  # max_new_tokens when the option is None, per mode
REFERENCE_FILE = ("alpaca_eval", "results", "gpt4_1106_preview", "model_outputs.json")
REFERENCE_SOURCE = (
    "the alpaca_eval GitHub repo (tatsu-lab/alpaca_eval) results/gpt4_1106_preview/model_outputs.json, "
    "or the HF dataset tatsu-lab/alpaca_eval"
)
DATA_SOURCES = (  # what `selm-bench data pull` fetches: (dest under the data folder, url, SHA-256, size)
    Artefact(SUITE, "/".join(REFERENCE_FILE), "https://raw.githubusercontent.com/tatsu-lab/alpaca_eval/"
             "cd543a149df89434d8a54582c0151c0b945c3d20/results/gpt4_1106_preview/model_outputs.json",
             "83db546b872ddebee8965fd05fa48461ee3c32bc695c62fb57f2d214ff741ec4", 1899765),
)
DF_GAMED_FILE = ("alpaca_eval", "df_gamed.csv")
# Rough list-price cost of one AlpacaEval 2.0 GPT-4 Turbo annotation (alpaca_eval: "< $10" a model),
# for `selm-bench plan`.
JUDGE_USD = 0.012
METRIC_KEYS = (
    "win_rate", "standard_error", "n_wins", "n_wins_base", "n_draws", "n_total", "discrete_win_rate",
    "avg_length", "length_controlled_winrate", "lc_standard_error",
)
TINY_LC_REASON = (
    "tiny mode: alpaca_eval's LC GLM uses df_gamed.csv's per-instruction difficulty of the 805 AlpacaEval "
    "instructions, which does not exist for tiny-world prompts"
)


def _alpaca_eval():
    """Import alpaca_eval lazily: it takes seconds, and its annotators module sets the root logger to INFO."""
    root = logging.getLogger()
    level = root.level
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
        import alpaca_eval.annotators
        import alpaca_eval.decoders.openai
        import alpaca_eval.metrics
    root.setLevel(level)
    return alpaca_eval


# ---------------------------------------------------------------- metrics
def metrics_from_annotations(
    annotations: list[dict[str, Any]] | str | Path,
    data_dir: str | Path | None = None,
    *,
    length_controlled: bool = True,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """alpaca_eval's metrics for annotations in its format (preference 1 = output_1 wins, 2 = output_2 wins).

    output_2 is the evaluated model. `data_dir` supplies df_gamed.csv and the instruction order for LC.
    """
    import pandas as pd

    ae = _alpaca_eval()
    if isinstance(annotations, (str, Path)):
        path = Path(annotations)
        if not path.exists():
            raise SuiteError(f"annotations file not found: {path}")
        annotations = json.loads(path.read_text())
    df = pd.DataFrame(list(annotations))
    missing = [k for k in ("instruction", "output_1", "output_2", "preference") if k not in df.columns]
    if df.empty or missing:
        raise SuiteError(f"not alpaca_eval annotations: {len(df)} rows, missing keys {missing}")

    info: dict[str, Any] = {"n_annotations": len(df), "n_unannotated": int(df["preference"].isna().sum())}
    if "annotator" in df.columns:
        info["annotator"] = ", ".join(sorted(df["annotator"].dropna().astype(str).unique()))
    metrics: dict[str, Any] = dict(ae.metrics.get_winrate(df))
    metrics["avg_length"] = int(df["output_2"].astype(str).str.len().mean())

    metrics["length_controlled_winrate"] = metrics["lc_standard_error"] = None
    if length_controlled:
        lc, reason = _length_controlled(df, data_dir)
        if reason:
            info["lc_unavailable"] = reason
        else:
            metrics.update(lc)
            if metrics["length_controlled_winrate"] == 50.0 and metrics["lc_standard_error"] == 0.0:
                info["lc_degenerate"] = "GLM fit returned exactly 50.0 with zero error (all coefficients zero)"
                info["lc_raw"] = {k: float(lc[k]) for k in ("length_controlled_winrate", "lc_standard_error")}
                metrics["length_controlled_winrate"] = metrics["lc_standard_error"] = None
    return _plain(metrics, info), info


def import_file(file: Path, model: str | None, data_dir: Path | None) -> dict[str, tuple[dict, dict]]:
    """`selm-bench import`: alpaca_eval's annotations.json of `model` -> {model: (metrics, info)};
    `data_dir` gives df_gamed.csv for the LC win rate."""
    if not model:
        raise InputError(f"--model is required with --suite {SUITE}")
    try:
        return {model: metrics_from_annotations(file, data_dir)}
    except SuiteError as e:
        raise InputError(f"{file}: {e}") from None
    except (ValueError, KeyError, TypeError) as e:
        raise InputError(f"{file}: not an alpaca_eval annotations.json (records with instruction, "
                         f"output_1, output_2, preference): {type(e).__name__}: {e}") from None


def _plain(metrics: dict[str, Any], info: dict[str, Any]) -> dict[str, Any]:
    """numpy scalars -> Python numbers; NaN/inf -> None (named in info)."""
    out: dict[str, Any] = {}
    for k in METRIC_KEYS:
        v = metrics.get(k)
        if v is not None:
            v = int(v) if k.startswith("n_") or k == "avg_length" else float(v)
            if not math.isfinite(v):
                info.setdefault("non_finite", []).append(k)
                v = None
        out[k] = v
    return out


def _length_controlled(df, data_dir) -> tuple[dict[str, float], str | None]:
    if data_dir is None:
        return {}, "no data_dir: LC needs df_gamed.csv (HF dataset tatsu-lab/alpaca_eval), never downloaded here"
    gamed = Path(data_dir).joinpath(*DF_GAMED_FILE)
    reference = Path(data_dir).joinpath(*REFERENCE_FILE)
    for path in (gamed, reference):
        if not path.exists():
            return {}, f"{path} not found (LC needs it; source: HF dataset tatsu-lab/alpaca_eval)"
    # The GLM looks instruction difficulty up by the row's position in the 805-instruction set, so rows
    # are indexed by that position, not by their order in the annotations (limit, imported files).
    position = {r["instruction"]: i for i, r in enumerate(json.loads(reference.read_text()))}
    index = df["instruction"].map(position)
    if index.isna().any():
        return {}, f"{int(index.isna().sum())} annotated instructions are not AlpacaEval instructions"
    for col in ("generator_1", "generator_2"):
        if col not in df.columns or df[col].nunique() != 1:
            return {}, f"LC needs exactly one {col} in the annotations"
    df = df.set_index(index.astype(int).rename(None))
    with _local_hub_file("df_gamed.csv", gamed):
        out = _alpaca_eval().metrics.get_length_controlled_winrate(
            df, save_weights_dir=None, is_add_glm_preference_inplace=False  # "auto" writes into site-packages
        )
    return {k: out[k] for k in ("length_controlled_winrate", "lc_standard_error")}, None


@contextmanager
def _local_hub_file(filename: str, path: Path) -> Iterator[None]:
    """Serve alpaca_eval's hub download of `filename` from the local mirror; any other hub file is an error."""
    from alpaca_eval.metrics import glm_winrate

    def download(repo_id: str, filename: str, **_: Any) -> str:
        if filename != wanted:
            raise SuiteError(f"alpaca_eval asked the hub for {repo_id}/{filename}; only {wanted} is mirrored")
        return str(path)

    wanted, original = filename, glm_winrate.hf_hub_download
    glm_winrate.hf_hub_download = download
    try:
        yield
    finally:
        glm_winrate.hf_hub_download = original


# ---------------------------------------------------------------- the suite
class AlpacaEvalOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    limit: int | None = Field(None, ge=1, description="first N instructions (None = all 805 / all tiny eval prompts)")
    max_new_tokens: int | None = Field(None, gt=0, description="tokens per output; None = 2048 real / 24 tiny")
    temperature: float = Field(0.0, ge=0, description="sampling temperature (0 = greedy)")
    top_p: float = Field(1.0, gt=0, le=1, description="nucleus sampling mass")
    annotators_config: str = Field(ANNOTATOR, min_length=1,
                                   description="alpaca_eval annotator config (real mode; tiny mode uses the oracle)")


def paired(items: list[dict[str, Any]]) -> dict[str, float | None]:
    """The win rate of per-item records (score = preference - 1: 1 win, 0.5 tie, 0 loss), in percent,
    as alpaca_eval computes it; the LC win rate needs the length model, so it is not resampled."""
    scored = [float(i["score"]) for i in items if i.get("score") is not None]
    return {"win_rate": 100 * sum(scored) / len(scored) if scored else None}


def _reference_path(ctx: EvalContext) -> Path:
    if ctx.data_dir is None:
        raise SuiteError(f"alpaca-eval needs data_dir with {'/'.join(REFERENCE_FILE)} (from {REFERENCE_SOURCE})")
    ref_path = Path(ctx.data_dir).joinpath(*REFERENCE_FILE)
    if not ref_path.exists():
        raise SuiteError(f"alpaca-eval reference outputs not found: {ref_path} (get it from {REFERENCE_SOURCE})")
    return ref_path


def preflight(ctx: EvalContext) -> None:
    """Real mode, before any output is generated (and, in a run, before its first stage): the
    reference outputs, and the annotator's key unless judging is left for later."""
    if ctx.for_suite(SUITE).world_dir is not None:
        return
    _reference_path(ctx)
    if not ctx.no_judge:
        try:
            _judge_client(ctx, "annotator").check()
        except SuiteError as e:
            raise SuiteError(f"alpaca-eval: {e}; or run with --no-judge and judge later") from None


def estimate(cfg: Any, spec: Any) -> dict[str, Any]:
    """`selm-bench plan`: one output an instruction, each annotated once (tiny world: by the oracle, free)."""
    return judged_plan(spec, tiny=(cfg.world.n_eval, 1), real=(N_INSTRUCTIONS, 1),
                       judge=spec.options.get("annotators_config"), usd_per_call=JUDGE_USD)


# ---------------------------------------------------------------- published rows
# Base models of the leaderboard's published.csv -> their row in alpaca_eval's own AlpacaEval 2.0 leaderboard.
PUBLISHED_BASE_ROWS = {"zephyr-7b": "zephyr-7b-beta", "llama-3-8b-instruct": "Meta-Llama-3-8B-Instruct",
                       "phi-3-mini-4k-instruct": "Phi-3-mini-4k-instruct"}


def _package() -> tuple[Path, str]:
    """alpaca_eval's package folder and version, without importing it (it loads scipy: seconds)
    unless it is already imported."""
    import importlib.metadata
    import importlib.util
    import sys

    if "alpaca_eval" in sys.modules:
        mod = sys.modules["alpaca_eval"]
        return Path(mod.__file__).parent, getattr(mod, "__version__", "?")
    spec = importlib.util.find_spec("alpaca_eval")
    if spec is None or not spec.origin:
        return Path("/nonexistent"), "?"
    return Path(spec.origin).parent, importlib.metadata.version("alpaca-eval")


def published(bases: list[str]) -> list[dict[str, Any]]:
    """Leaderboard rows for the base models `bases` (published.csv's `base`) from the installed
    alpaca_eval package's own AlpacaEval 2.0 leaderboard (GPT-4 Turbo annotator)."""
    import csv

    folder, version = _package()
    board = folder / "leaderboards" / "data_AlpacaEval_2" / f"{ANNOTATOR}_leaderboard.csv"
    if not board.is_file():
        return []
    with open(board, newline="") as f:
        by_name = {r[""]: r for r in csv.DictReader(f)}
    rows = []
    for base in bases:
        rec = by_name.get(PUBLISHED_BASE_ROWS.get(base, ""))
        if rec is None:
            continue
        row: dict[str, Any] = {"run": "published", "checkpoint": PUBLISHED_BASE_ROWS[base], "method": "base",
                               "iteration": None,
                               "provenance": f"alpaca_eval {version} leaderboard (data_AlpacaEval_2, {ANNOTATOR})"}
        for src, dst in (("length_controlled_winrate", "length_controlled_winrate"),
                         ("lc_standard_error", "length_controlled_winrate_stderr"), ("win_rate", "win_rate"),
                         ("standard_error", "win_rate_stderr")):
            if rec.get(src):
                row[f"{SUITE}/{dst}"] = float(rec[src])
        rows.append(row)
    return rows


# ---------------------------------------------------------------- the report's drill-down
def drilldown(items: list[dict[str, Any]], folder: Path, k: int = 10) -> str:
    """Wins, losses and ties (preference 1 = reference preferred, 2 = model preferred, 1.5 = tie)
    and the `k` clearest losses."""
    prefs = [(number(i.get("preference")), i) for i in items]
    losses = sorted([(p, i) for p, i in prefs if p is not None and p < 1.5], key=lambda t: t[0])
    wins = sum(p is not None and p > 1.5 for p, _ in prefs)
    ties = sum(p == 1.5 for p, _ in prefs)
    unjudged = sum(p is None for p, _ in prefs)
    errors = [str(i["judge_error"]) for i in items if i.get("judge_error")]
    cats: dict[str, int] = defaultdict(int)
    for _, i in losses:
        if "category" in i:
            cats[str(i["category"])] += 1
    return render("alpaca-eval.html", wins=wins, n_losses=len(losses), ties=ties, unjudged=unjudged,
                  n=len(items), errors=errors, categories=sorted(cats.items()), losses=losses[:k])


def run(ctx: EvalContext) -> SuiteResult:
    ctx.for_suite(SUITE)
    limit = ctx.option("limit")
    ctx.out_dir.mkdir(parents=True, exist_ok=True)
    return _run_tiny(ctx, limit) if ctx.world_dir is not None else _run_real(ctx, limit)


def max_new_tokens(ctx: EvalContext) -> int:
    """The option, else the mode's default (MAX_NEW_TOKENS): the one place that resolves it."""
    value = ctx.option("max_new_tokens")
    return MAX_NEW_TOKENS["tiny" if ctx.world_dir is not None else "real"] if value is None else value


def _sampling(ctx: EvalContext):
    from selm_bench.trainers.generation import Sampling

    return Sampling(
        temperature=float(ctx.option("temperature")), top_p=float(ctx.option("top_p")),
        max_new_tokens=int(max_new_tokens(ctx)), seed=ctx.seed,
    )


def _generate(generator: Any, prompts: list[str], sampling: Any) -> list[str]:
    return [o[0] for o in generator.chat([[{"role": "user", "content": p}] for p in prompts], sampling)]


def _run_real(ctx: EvalContext, limit: int | None) -> SuiteResult:
    preflight(ctx)  # a missing file or key fails before hours of generation, not after
    ref_path = _reference_path(ctx)
    reference = json.loads(ref_path.read_text())[:limit]
    outputs = _generate(ctx.generator(), [r["instruction"] for r in reference], _sampling(ctx))
    model_outputs = [
        {"dataset": r.get("dataset"), "instruction": r["instruction"], "output": o, "generator": ctx.name}
        for r, o in zip(reference, outputs)
    ]
    atomic_write_json(ctx.out_dir / "model_outputs.json", model_outputs)
    items = [
        {"id": str(i), "index": i, "dataset": r.get("dataset"), "instruction": r["instruction"], "output": o,
         "reference_output": r["output"], "score": None}
        for i, (r, o) in enumerate(zip(reference, outputs))
    ]
    if ctx.no_judge:
        return _unjudged(items)
    return _judge_real(ctx, reference, model_outputs, items, ref_path)


def _judge_real(ctx: EvalContext, reference: list[dict], model_outputs: list[dict], items: list[dict],
                ref_path: Path) -> SuiteResult:
    annotations, accounting, errors = _annotate(ctx, reference, model_outputs)
    _write_annotations(ctx.out_dir / "annotations.json", annotations)
    metrics, info = metrics_from_annotations(annotations, ctx.data_dir)
    preference = {a["instruction"]: a.get("preference") for a in annotations}
    for item in items:
        item["preference"] = _number(preference.get(item["instruction"]))
        item["score"] = None if item["preference"] is None else item["preference"] - 1.0
        if item["preference"] is None:
            item["judge_error"] = errors.get(item["instruction"], "the judge's reply gave no preference")
    base_url = _judge_base_url(ctx)
    info.update(reference=str(ref_path), n_instructions=len(reference),
                judge={**accounting, **({"base_url": base_url} if base_url else {})})
    info["not_canonical"] = not_canonical(n=len(reference), of=N_INSTRUCTIONS, what="instructions",
                                          judge_base_url=base_url)
    if metrics.get("length_controlled_winrate") is None:
        info["not_canonical"].append("no LC win rate")
    return SuiteResult(metrics, items, info)


def judge_saved(ctx: EvalContext) -> SuiteResult:
    """Annotate outputs saved by an earlier `--no-judge` run (`selm-bench judge`)."""
    ctx.for_suite(SUITE)
    if ctx.world_dir is not None:
        return run(ctx)  # tiny mode: greedy and seconds long, so regenerate and judge in one go
    saved = ctx.out_dir / "model_outputs.json"
    if not saved.is_file():
        raise SuiteError(f"alpaca-eval: no saved outputs at {saved}; run `selm-bench eval ... --no-judge` first")
    model_outputs = json.loads(saved.read_text())
    if ctx.data_dir is None:
        raise SuiteError(f"alpaca-eval needs data_dir with {'/'.join(REFERENCE_FILE)} (from {REFERENCE_SOURCE})")
    ref_path = Path(ctx.data_dir).joinpath(*REFERENCE_FILE)
    if not ref_path.exists():
        raise SuiteError(f"alpaca-eval reference outputs not found: {ref_path} (get it from {REFERENCE_SOURCE})")
    by_instruction = {r["instruction"]: r for r in json.loads(ref_path.read_text())}
    missing = [o["instruction"] for o in model_outputs if o["instruction"] not in by_instruction]
    if missing:
        raise SuiteError(f"alpaca-eval: {len(missing)} saved instruction(s) are not in {ref_path}, e.g. "
                         f"{missing[0][:60]!r}; were the outputs made with another reference?")
    reference = [by_instruction[o["instruction"]] for o in model_outputs]
    position = {ins: i for i, ins in enumerate(by_instruction)}
    items = [{"id": str(position[r["instruction"]]), "index": i, "dataset": r.get("dataset"),
              "instruction": r["instruction"], "output": o["output"], "reference_output": r["output"], "score": None}
             for i, (r, o) in enumerate(zip(reference, model_outputs))]
    return _judge_real(ctx, reference, model_outputs, items, ref_path)


def _judge_base_url(ctx: EvalContext) -> str | None:
    return (ctx.judge_options.get("base_url") or os.environ.get("OPENAI_BASE_URL")
            or os.environ.get("OPENAI_API_BASE") or None)


def _judge_client(ctx: EvalContext, model: str):
    """The harness's `openai:` judge client for the annotator's model: key from OPENAI_API_KEY only,
    endpoint from eval.judge_base_url / OPENAI_BASE_URL (or alpaca_eval's OPENAI_API_BASE), the run's
    concurrency, retries and timeout, and a disk cache beside the other judges' (failures not cached)."""
    from selm_bench.evals.openai_judge import OpenAIJudge

    opts = dict(ctx.judge_options)
    opts["base_url"] = _judge_base_url(ctx)
    try:
        return OpenAIJudge(spec=f"openai:{model}", cache_dir=ctx.out_dir.parent / "judge-cache", **opts)
    except SuiteError as e:
        raise SuiteError(f"alpaca-eval: {e}") from None


def _cached_rows(path: Path) -> int:
    return len(json.loads(path.read_text())) if path.is_file() else 0


def _redact(text: str) -> str:
    key = os.environ.get("OPENAI_API_KEY")
    text = text.replace(key, "<OPENAI_API_KEY>") if key else text
    return re.sub(r"sk-[A-Za-z0-9_*.-]{4,}", "<key>", text)


# OpenAI chat parameters alpaca_eval's annotator configs pass through `completions_kwargs`.
CHAT_PARAMS = ("max_tokens", "temperature", "top_p", "logprobs", "top_logprobs", "stop", "seed", "presence_penalty",
               "frequency_penalty", "response_format", "tools", "tool_choice", "functions", "function_call")
IGNORED = ("num_procs", "batch_size", "is_strip", "price_per_token", "requires_chatml", "is_chat")


class _Completions:
    """alpaca_eval's `fn_completions` contract (what its `openai_completions` returns) served by the
    harness's judge client. A failed request gives a completion without logprobs or text, which
    alpaca_eval's parser turns into a missing preference; `failed` maps its prompt to the reason."""

    def __init__(self, ctx: EvalContext):
        self.ctx = ctx
        self.judges: dict[str, Any] = {}
        self.failed: dict[str, str] = {}  # prompt -> reason

    def __call__(self, prompts: list[str], model_name: str, **kwargs: Any) -> dict[str, list]:
        from alpaca_eval.decoders.openai import _get_price_per_token, _requires_chatml
        from alpaca_eval.utils import prompt_to_chatml

        unknown = sorted(set(kwargs) - set(CHAT_PARAMS) - set(IGNORED))
        if unknown or not kwargs.get("requires_chatml", _requires_chatml(model_name)):
            raise SuiteError(f"the annotator's completion settings are not chat-completion parameters "
                             f"the judge client sends ({', '.join(unknown) or 'a completions-API model'})")
        params = {k: v for k, v in kwargs.items() if k in CHAT_PARAMS}
        judge = self.judges.setdefault(model_name, _judge_client(self.ctx, model_name))
        requests = [prompt_to_chatml(p.strip()) for p in prompts]
        t0 = time.time()
        choices = judge.complete_many(requests, **params)
        price = _get_price_per_token(model_name, kwargs.get("price_per_token"))
        out = []
        for prompt, msgs, choice in zip(prompts, requests, choices):
            if choice is None:
                self.failed[prompt] = "judge call failed: " + (judge.failure_reason(msgs, **params) or "unknown")
                out.append({"text": "", "total_tokens": 0, "failed": self.failed[prompt]})
            else:
                message = choice.get("message") or {}
                calls = message.get("tool_calls") or []
                text = calls[0]["function"]["arguments"] if calls else (message.get("content") or " ")
                out.append({**choice, "text": text})
        seconds = (time.time() - t0) / max(1, len(prompts))
        return {"completions": [c["text"] for c in out], "completions_all": out,
                "price_per_example": [c["total_tokens"] * price for c in out],
                "time_per_example": [seconds] * len(out)}

    def accounting(self) -> dict[str, Any]:
        total: dict[str, Any] = {}
        for judge in self.judges.values():
            for k, v in judge.accounting().items():
                if isinstance(v, dict):
                    merged = total.setdefault(k, {})
                    for r, n in v.items():
                        merged[r] = merged.get(r, 0) + n
                else:
                    total[k] = total.get(k, 0) + v
        return total


def _annotate(ctx: EvalContext, reference: list[dict], model_outputs: list[dict]
              ) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, str]]:
    """alpaca_eval's annotations, the judge accounting (requests sent with retries, cache hits,
    failures with reasons, tokens) and, per instruction, why its judgment failed."""
    ae = _alpaca_eval()
    cache = ctx.out_dir / "annotator_cache.json"  # "auto" caches inside site-packages
    before = _cached_rows(cache)
    # Failed annotations are not stored in alpaca_eval's cache, so a rerun annotates them again.
    annotator = ae.annotators.PairwiseAnnotator(
        annotators_config=ctx.option("annotators_config"), caching_path=cache, seed=0,
        is_store_missing_annotations=False,
    )
    if annotator.df_annotations is None:  # no cache yet; alpaca_eval then queries None in this mode
        import pandas as pd

        annotator.df_annotations = pd.DataFrame(columns=[*annotator.all_keys, annotator.annotation_key])
    completions = _Completions(ctx)
    for single in annotator.annotators.values():
        if single.fn_completions is ae.decoders.openai.openai_completions:
            single.fn_completions = completions
        else:
            raise SuiteError(f"alpaca-eval: annotator {ctx.option('annotators_config')!r} does not use OpenAI "
                             f"chat completions; the harness judges through an OpenAI-compatible endpoint only")
    quiet = logging.getLogger(), logging.getLogger("alpaca_eval")  # alpaca_eval logs through the root logger
    levels = [q.level for q in quiet]
    for q in quiet:  # alpaca_eval logs unparsable replies with full tracebacks; items record the reason
        q.setLevel(logging.CRITICAL)
    try:
        annotations = annotator.annotate_head2head(outputs_1=reference, outputs_2=model_outputs)
    except SuiteError as e:
        raise SuiteError(f"alpaca-eval annotator failed: {e}") from None
    except Exception as e:  # noqa: BLE001 - any other annotator failure becomes one line, without the key
        first = (str(e).splitlines() or [""])[0]
        raise SuiteError(f"alpaca-eval annotator failed: {type(e).__name__}: {_redact(first)}") from None
    finally:
        for q, lvl in zip(quiet, levels):
            q.setLevel(lvl)
    stored = _cached_rows(cache) - before
    acct = completions.accounting()
    failed = [a for a in annotations if _number(a.get("preference")) is None]
    errors = {}
    for a in failed:
        reasons = [r for p, r in completions.failed.items() if a["instruction"] in p and str(a["output_2"]) in p]
        errors[a["instruction"]] = reasons[0] if reasons else "the judge's reply gave no preference"
    raw = [a.get("preference_raw_completion", a.get("raw_completion")) for a in annotations]  # 0.6.6 / older
    tokens = [r.get("total_tokens") for r in raw if isinstance(r, dict)]
    return annotations, {
        "annotator": ctx.option("annotators_config"), "calls": int(acct.get("calls", 0)),
        "cached": len(annotations) - stored - len(failed) + int(acct.get("cached", 0)),
        "failures": len(failed), "retries": int(acct.get("retries", 0)),
        "failure_reasons": acct.get("failure_reasons", {}),
        "total_tokens": sum(float(t) for t in tokens if t is not None),  # alpaca_eval records totals only
    }, errors


def _write_annotations(path: Path, annotations: list[dict[str, Any]]) -> None:
    import pandas as pd

    # alpaca_eval's own serialisation (main.evaluate), written atomically.
    atomic_write_text(path, pd.DataFrame(annotations).to_json(orient="records", indent=2))


def _unjudged(items: list[dict[str, Any]]) -> SuiteResult:
    metrics: dict[str, Any] = {k: None for k in METRIC_KEYS}
    metrics["avg_length"] = int(sum(len(i["output"]) for i in items) / max(1, len(items)))
    return SuiteResult(metrics, items, {"no_judge": "outputs saved to model_outputs.json, not annotated"})


def _number(v: Any) -> float | None:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


# ---------------------------------------------------------------- tiny mode
def _run_tiny(ctx: EvalContext, limit: int | None) -> SuiteResult:
    from selm_bench.evals.judges import make_judge
    from selm_bench.harness.world import read_jsonl

    ref_model = ctx.references.get("sft")
    if ref_model is None:
        raise SuiteError("alpaca-eval (tiny mode) compares against the SFT checkpoint; references['sft'] is not set")
    rows = read_jsonl(Path(ctx.world_dir) / "eval.jsonl")[:limit]
    prompts = [r["prompt"] for r in rows]
    sampling = _sampling(ctx)
    outputs = _generate(ctx.generator(), prompts, sampling)
    ref_outputs, cache = _reference_outputs(ctx, Path(ref_model), prompts, sampling)
    atomic_write_json(
        ctx.out_dir / "model_outputs.json",
        [{"dataset": "tiny-world", "instruction": p, "output": o, "generator": ctx.name}
         for p, o in zip(prompts, outputs)],
    )
    items = [
        {"index": i, "id": r["id"], "category": r["category"], "instruction": r["prompt"], "output": o,
         "reference_output": ro, "score": None}
        for i, (r, o, ro) in enumerate(zip(rows, outputs, ref_outputs))
    ]
    info: dict[str, Any] = {"reference": str(ref_model), "reference_cache": str(cache)}
    if ctx.no_judge:
        result = _unjudged(items)
        result.info.update(info)
        return result

    judge = make_judge("oracle")
    annotations = []
    for row, item in zip(rows, items):
        s1, s2 = judge.score(row, item["reference_output"]), judge.score(row, item["output"])
        preference = 1.5 + (s2 - s1) / 2
        item.update(verifier_score=s2, ref_score=s1, preference=preference, score=preference - 1.0)
        annotations.append({
            "instruction": row["prompt"], "output_1": item["reference_output"], "generator_1": "sft-reference",
            "dataset": "tiny-world", "output_2": item["output"], "generator_2": ctx.name,
            "annotator": "oracle", "preference": item["preference"],
        })
    _write_annotations(ctx.out_dir / "annotations.json", annotations)
    metrics, more = metrics_from_annotations(annotations, length_controlled=False)
    info.update(more, lc_unavailable=TINY_LC_REASON, judge=judge.accounting(),
                preference_rule="1.5 + (score_model - score_reference) / 2")
    return SuiteResult(metrics, items, info)


def _reference_outputs(ctx: EvalContext, model: Path, prompts: list[str], sampling: Any) -> tuple[list[str], Path]:
    """Greedy outputs of the reference checkpoint, cached per (checkpoint, its files, prompts, sampling)."""
    files = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in model.iterdir()
                   if p.name != "README.md") if model.is_dir() else None  # the model card is not the model
    spec = {"model": str(model.resolve()), "files": files, "prompts": prompts, "sampling": asdict(sampling),
            "backend": ctx.backend}
    key = hashlib.sha256(json.dumps(spec).encode()).hexdigest()[:16]
    # Beside the reference checkpoint: one cache per reference model, shared by every evaluated checkpoint.
    path = model.parent / "eval-cache" / f"alpaca-eval-outputs-{key}.json"
    if path.exists():
        return json.loads(path.read_text())["outputs"], path
    from selm_bench.harness.core import registry

    backend = registry.get("backend", ctx.backend)(str(model), device=ctx.device, **ctx.backend_options)
    outputs = _generate(backend, prompts, sampling)
    atomic_write_json(path, {"reference": str(model), "outputs": outputs})
    return outputs, path


# ---------------------------------------------------------------- registration
# Everything the harness knows about this suite (harness/core/registry.py `Suite`).
register_suite(SUITE, help="AlpacaEval 2.0 (LC) win rate against a reference, via alpaca_eval",
               options=AlpacaEvalOptions, headline="length_controlled_winrate", fallbacks=("win_rate",),
               stderr={"win_rate": "standard_error", "length_controlled_winrate": "lc_standard_error"},
               paired=paired, preflight=preflight, canonical_judges={ANNOTATOR}, plan=estimate,
               data_files=("/".join(REFERENCE_FILE),), data_sources=DATA_SOURCES, pull_by_default=True,
               judge=judge_saved, import_file=import_file, published=published, drilldown=drilldown, order=30)(run)
