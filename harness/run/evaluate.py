"""A suite's run from its spec: the EvalContext a suite gets (`eval_context`, also how a later
judging rebuilds it: `selm-bench judge` and a rerun's rejudge, from the stage's spec.json), and the
files it leaves (`metrics.json`, `items.jsonl`; what it ran with is the stage's spec.json beside them)."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any, Callable

from selm_bench.evals.base import EvalContext, SuiteResult, check_items
from selm_bench.harness.core import registry
from selm_bench.harness.core.specs import EvalSpec
from selm_bench.harness.core.store import atomic_write_json, atomic_write_text

# An eval stage's runtime settings that are not its judge's (they travel beside the spec, as the
# judge's concurrency does, and change no judgment): `no_judge` (answers only, judged later) and
# `method`, the method its leaderboard row shows (`selm-bench eval`: "external").
STAGE_SETTINGS = ("no_judge", "method")


def eval_context(spec: EvalSpec, root: Path, out: Path, runtime: dict[str, Any] | None = None,
                 no_judge: bool = False) -> EvalContext:
    """A suite's context from its spec: locations resolved under `root`, runtime settings beside it."""
    settings = dict(runtime or {})
    judge_options = {k: v for k, v in settings.items() if k not in STAGE_SETTINGS}
    if spec.judge_base_url:
        judge_options["base_url"] = spec.judge_base_url
    ctx = EvalContext(
        model=spec.model.resolve(root), name=spec.name, suite=spec.suite, out_dir=Path(out), options=dict(spec.options),
        preset=spec.suite.split(":", 1)[1] if ":" in spec.suite else None,
        data_dir=Path(spec.data_dir) if spec.data_dir else None,
        world_dir=Path(spec.world.resolve(root)) if spec.world else None, backend=spec.backend,
        backend_options=dict(spec.backend_options), judge=spec.judge, judge_options=judge_options,
        no_judge=no_judge or bool(settings.get("no_judge")), device=spec.device, seed=spec.seed,
        references={k: Path(r.resolve(root)) for k, r in spec.references.items()},
    )
    ctx.method = settings.get("method")  # type: ignore[attr-defined]  # the row's, for run_suite; no suite reads it
    return ctx


def judge_hook(suite: str) -> Callable[[EvalContext], SuiteResult] | None:
    """How the suite judges answers saved earlier (`--no-judge`, failed judgments): its registered
    `judge`, else its module's `judge_saved(ctx)`; None for a suite without a judge."""
    entry = registry.entry("suite", suite)
    hook = getattr(entry, "judge", None)
    return hook or getattr(importlib.import_module(entry.obj.__module__), "judge_saved", None)


def write_suite_result(out_dir: Path, suite: str, ctx: EvalContext, result: SuiteResult,
                       method: str | None = None) -> None:
    check_items(suite, result.items)
    payload: dict[str, Any] = {"suite": suite, "checkpoint": ctx.name}
    if method:
        payload["method"] = method
    payload.update(metrics=result.metrics, info=result.info)  # what it ran with: the stage's spec.json beside it
    atomic_write_json(out_dir / "metrics.json", payload)
    atomic_write_text(out_dir / "items.jsonl", "".join(json.dumps(i, default=str) + "\n" for i in result.items))


def run_suite(ctx: EvalContext, suite: str, method: str | None = None) -> SuiteResult:
    result = registry.get("suite", suite)(ctx)
    write_suite_result(ctx.out_dir, suite, ctx, result, method or getattr(ctx, "method", None))
    return result


def relocate_task_files(tmp: Path, final: Path, src: Path | None = None) -> None:
    """lm-eval's task YAMLs that a suite writes into its stage folder name their data files by
    absolute path (lm-eval reads `data_files` as given, not relative to the YAML), so they point at
    the folder they were made in (`src`, default `tmp`); point them where the folder will live.
    Rewritten files get new inodes: hard links to them elsewhere keep theirs."""
    src, dst = str(Path(src or tmp).resolve()), str(Path(final).resolve())
    for path in Path(tmp).rglob("*.yaml"):
        text = path.read_text()
        if src in text:
            atomic_write_text(path, text.replace(src, dst))
