"""train-and-eval: plan the stages (harness/plan.py), run each unless its key is done, then
the leaderboard.

Each stage runs from its spec alone (harness/run_stage.py) into a temp folder swapped in
atomically, and records its key (the hash of its spec, which names its inputs' keys); a rerun
skips stages whose key is unchanged. Under `launch.launcher: accelerate` the training stages
run under `accelerate launch`; everything else runs in this process.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from evals.base import EvalContext, SuiteResult
from harness import registry
from harness.config import ExperimentConfig
from harness.plan import Stage, judge_runtime, plan
from harness.progress import say
from harness.run_stage import run_stage
from harness.specs import TRAINING_KINDS, EvalSpec, to_json
from harness.store import RunStore, atomic_dir, atomic_write_json, atomic_write_text


def execute(store: RunStore, stage: Stage, cfg: ExperimentConfig, runtime: dict[str, Any] | None = None) -> bool:
    """Run one stage unless done with this key; returns True if it ran."""
    key = stage.key
    if store.is_done(stage.folder, key):
        say(f"[dim]skip[/dim] {stage.name} (done)")
        return False
    t0 = time.time()
    store.record(stage.folder, key, "running", t0)
    final = store.root / stage.folder
    try:
        with atomic_dir(final) as tmp:
            if cfg.launch.launcher == "accelerate" and stage.spec.kind in TRAINING_KINDS:
                from harness.launch import launch_training

                launch_training(stage.spec, store.root, tmp, cfg.launch,
                                log=store.root / "logs" / f"{stage.name.replace('/', '-')}.log")
            else:
                run_stage(stage.spec, store.root, tmp, runtime)
            atomic_write_text(tmp / "spec.json", to_json(stage.spec))
            relocate_task_files(tmp, final)
    except BaseException:
        store.record(stage.folder, key, "failed", t0)
        raise
    store.record(stage.folder, key, "done", t0)
    say(f"[green]done[/green] {stage.name} in {time.time() - t0:.1f}s")
    return True


def eval_context(spec: EvalSpec, root: Path, out: Path, runtime: dict[str, Any] | None = None,
                 no_judge: bool = False) -> EvalContext:
    """A suite's context from its spec: locations resolved under `root`, judge runtime beside it."""
    judge_options = dict(runtime or {})
    if spec.judge_base_url:
        judge_options["base_url"] = spec.judge_base_url
    return EvalContext(
        model=spec.model.resolve(root), name=spec.name, suite=spec.suite, out_dir=Path(out), options=dict(spec.options),
        preset=spec.suite.split(":", 1)[1] if ":" in spec.suite else None,
        data_dir=Path(spec.data_dir) if spec.data_dir else None,
        world_dir=Path(spec.world.resolve(root)) if spec.world else None, backend=spec.backend,
        backend_options=dict(spec.backend_options), judge=spec.judge, judge_options=judge_options,
        no_judge=no_judge, device=spec.device, seed=spec.seed,
        references={k: Path(r.resolve(root)) for k, r in spec.references.items()},
    )


def context_record(ctx: EvalContext) -> dict[str, Any]:
    """What `selm-bench judge` needs to rebuild the context later (no secrets: none are in ctx)."""
    return {"model": ctx.model, "name": ctx.name, "preset": ctx.preset, "options": ctx.options,
            "data_dir": str(ctx.data_dir) if ctx.data_dir else None,
            "world_dir": str(ctx.world_dir) if ctx.world_dir else None, "backend": ctx.backend,
            "backend_options": ctx.backend_options, "judge": ctx.judge, "judge_options": ctx.judge_options,
            "device": ctx.device, "seed": ctx.seed,
            "references": {k: str(v) for k, v in ctx.references.items()}}


def context_from_record(rec: dict[str, Any], out_dir: Path) -> EvalContext:
    return EvalContext(
        model=rec["model"], name=rec["name"], out_dir=out_dir, options=rec.get("options") or {},
        preset=rec.get("preset"), data_dir=Path(rec["data_dir"]) if rec.get("data_dir") else None,
        world_dir=Path(rec["world_dir"]) if rec.get("world_dir") else None, backend=rec.get("backend", "hf"),
        backend_options=rec.get("backend_options") or {}, judge=rec.get("judge"),
        judge_options=rec.get("judge_options") or {}, device=rec.get("device", "cpu"),
        seed=rec.get("seed", 0), references={k: Path(v) for k, v in (rec.get("references") or {}).items()},
    )


def write_suite_result(out_dir: Path, suite: str, ctx: EvalContext, result: SuiteResult,
                       method: str | None = None) -> None:
    payload: dict[str, Any] = {"suite": suite, "checkpoint": ctx.name}
    if method:
        payload["method"] = method
    payload.update(metrics=result.metrics, info=result.info, context=context_record(ctx))
    atomic_write_json(out_dir / "metrics.json", payload)
    atomic_write_text(out_dir / "items.jsonl", "".join(json.dumps(i, default=str) + "\n" for i in result.items))


def run_suite(ctx: EvalContext, suite: str, method: str | None = None) -> SuiteResult:
    result = registry.get("suite", suite)(ctx)
    write_suite_result(ctx.out_dir, suite, ctx, result, method)
    return result


def relocate_task_files(tmp: Path, final: Path) -> None:
    """Generated files that hold absolute paths (lm-eval task YAMLs, the judge context in
    metrics.json) point at the temp folder; point them where the folder will live."""
    src, dst = str(Path(tmp).resolve()), str(Path(final).resolve())
    for path in [*Path(tmp).rglob("*.yaml"), *Path(tmp).glob("metrics.json")]:
        text = path.read_text()
        if src in text:
            atomic_write_text(path, text.replace(src, dst))


def train_and_eval(cfg: ExperimentConfig, out: Path, force: bool, command: list[str]) -> list[dict[str, Any]]:
    from harness.leaderboard import collect_rows, write_leaderboard

    stages, evals = plan(cfg)  # a bad combination (batch vs processes) fails here, before anything is written
    store = RunStore(out, force=force)
    store.start(cfg.to_dict(), cfg.seed, command)
    for st in stages:
        execute(store, st, cfg)
    # The leaderboard shows exactly this plan's results, not leftovers of earlier plans.
    store.manifest["results"] = [ev.folder for ev in evals]
    runtime = judge_runtime(cfg)
    for ev in evals:
        execute(store, ev, cfg, runtime)
        _say_metrics(store.root / ev.folder)
    rows = collect_rows(out)
    write_leaderboard(out, rows)
    store.finish()
    return rows


def _say_metrics(out_dir: Path) -> None:
    data = json.loads((out_dir / "metrics.json").read_text())
    nums = {k: v for k, v in data["metrics"].items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    top = [k for k in nums if "/" not in k] or [k for k in nums if not k.endswith("_stderr")]  # lm-eval: task/metric
    shown = [f"{k}={nums[k]:.3f}" for k in top[:4]]
    say(f"      {data['checkpoint']} {data['suite']}: " + ", ".join(shown))
