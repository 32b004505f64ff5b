"""train-and-eval: world -> methods' stages -> every suite on every checkpoint -> leaderboard.

Each stage runs into a temp folder swapped in atomically, and records its key (a hash of
its config and its inputs' keys); a rerun skips stages whose key is unchanged.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

from evals.base import EvalContext, SuiteResult
from harness import registry
from harness.config import ExperimentConfig
from harness.progress import say
from harness.store import RunStore, atomic_dir, atomic_write_json, atomic_write_text, stable_hash
from harness.tinyworld import build_base_model, build_tokenizer, build_world, read_jsonl


class RunPaths:
    def __init__(self, root: Path, pretrained: str = ""):
        self.root = Path(root)
        self.world_dir = self.root / "world" / "data"
        # `model.pretrained` (hub id or path) replaces the tiny Llama as SFT's starting point.
        self.base_model = pretrained or self.root / "world" / "base-model"
        self._rows: dict[str, list[dict[str, Any]]] = {}

    def model(self, name: str) -> Path:
        return self.root / "checkpoints" / name / "model"

    def stage_dir(self, name: str) -> Path:
        return self.root / ("world" if name == "world" else f"checkpoints/{name}")

    def eval_dir(self, checkpoint: str) -> Path:
        return self.root / "evals" / checkpoint

    def world_rows(self, split: str) -> list[dict[str, Any]]:
        if split not in self._rows:
            self._rows[split] = read_jsonl(self.world_dir / f"{split}.jsonl")
        return self._rows[split]


def plan_methods(cfg: ExperimentConfig, paths: RunPaths) -> list[Any]:
    """The configured methods plus what they start from, in dependency order."""
    order: list[str] = []

    def add(name: str) -> None:
        method = registry.get("method", name)()
        for dep in method.needs(cfg) if hasattr(method, "needs") else method.requires:
            add(dep)
        if name not in order:
            order.append(name)

    for m in cfg.methods:
        add(m)
    return [s for m in order for s in registry.get("method", m)().plan(cfg, paths)]


def _run_stage(store: RunStore, name: str, stage_dir: Path, key: str, fn) -> bool:
    """Run `fn(tmp_dir)` unless done with this key; returns True if it ran."""
    rec_name = str(stage_dir.relative_to(store.root))
    if store.is_done(rec_name, key):
        say(f"[dim]skip[/dim] {name} (done)")
        return False
    t0 = time.time()
    store.record(rec_name, key, "running", t0)
    try:
        with atomic_dir(stage_dir) as tmp:
            fn(tmp)
    except BaseException:
        store.record(rec_name, key, "failed", t0)
        raise
    store.record(rec_name, key, "done", t0)
    say(f"[green]done[/green] {name} in {time.time() - t0:.1f}s")
    return True


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
    """Generated lm-eval task YAMLs hold absolute data paths; point them where the folder will live."""
    src, dst = str(Path(tmp).resolve()), str(Path(final).resolve())
    for path in Path(tmp).rglob("*.yaml"):
        text = path.read_text()
        if src in text:
            atomic_write_text(path, text.replace(src, dst))


def suite_options(cfg: ExperimentConfig, suite: str) -> dict[str, Any]:
    base = registry.base_name("suite", suite)
    return {**cfg.suite_options.get(base, {}), **cfg.suite_options.get(suite, {})}


def eval_context(cfg: ExperimentConfig, model: Path | str, name: str, out_dir: Path, suite: str,
                 world_dir: Path | None, references: dict[str, Path], no_judge: bool = False) -> EvalContext:
    preset = suite.split(":", 1)[1] if ":" in suite else None
    return EvalContext(
        model=str(model), name=name, out_dir=out_dir, options=suite_options(cfg, suite), preset=preset,
        data_dir=Path(cfg.eval.data_dir) if cfg.eval.data_dir else None, world_dir=world_dir,
        backend=cfg.eval.backend, backend_options={"batch_size": cfg.eval.batch_size}, judge=cfg.eval.judge,
        judge_options=judge_options(cfg),
        no_judge=no_judge, device=cfg.device, seed=cfg.seed, references=references,
    )


def judge_options(cfg: ExperimentConfig) -> dict[str, Any]:
    e = cfg.eval
    opts = {"concurrency": e.judge_concurrency, "max_retries": e.judge_max_retries, "timeout": e.judge_timeout}
    return {**opts, "base_url": e.judge_base_url} if e.judge_base_url else opts


def eval_key(cfg: ExperimentConfig) -> dict[str, Any]:
    """The eval settings that can change results (a judge's concurrency, retries and timeout cannot)."""
    out = dataclasses.asdict(cfg.eval)
    for k in ("judge_concurrency", "judge_max_retries", "judge_timeout"):
        out.pop(k)
    if not out["judge_base_url"]:
        out.pop("judge_base_url")
    return out


def train_and_eval(cfg: ExperimentConfig, out: Path, force: bool, command: list[str]) -> list[dict[str, Any]]:
    from harness.leaderboard import collect_rows, write_leaderboard

    paths = RunPaths(out, cfg.model.pretrained)
    store = RunStore(out, force=force)
    store.start(cfg.to_dict(), cfg.seed, command)
    keys: dict[str, str] = {}

    world_cfg = {"world": dataclasses.asdict(cfg.world), "model": dataclasses.asdict(cfg.model), "seed": cfg.seed}
    keys["world"] = stable_hash(world_cfg)

    def build(tmp: Path) -> None:
        counts = build_world(cfg.world, seed=cfg.seed, out=tmp / "data")
        if not cfg.model.pretrained:
            tok = build_tokenizer(tmp / "base-model")
            build_base_model(cfg.model, tok, cfg.seed, tmp / "base-model")
        atomic_write_json(tmp / "counts.json", counts)

    _run_stage(store, "world", paths.stage_dir("world"), keys["world"], build)

    stages = plan_methods(cfg, paths)
    for st in stages:
        keys[st.name] = stable_hash({"config": st.config, "inputs": [keys[i] for i in st.inputs],
                                     "device": cfg.device})
        _run_stage(store, st.name, paths.stage_dir(st.name), keys[st.name], st.run)

    refs = {"sft": paths.model("sft")}
    # The leaderboard shows exactly this plan's results, not leftovers of earlier plans.
    store.manifest["results"] = [str(paths.eval_dir(st.name).relative_to(out) / s) for st in stages for s in cfg.suites]
    for st in stages:
        for suite in cfg.suites:
            eval_cfg = {"eval": eval_key(cfg), "options": suite_options(cfg, suite),
                        "model": keys[st.name], "ref": keys.get("sft"), "world": keys["world"],
                        "seed": cfg.seed, "device": cfg.device}
            out_dir = paths.eval_dir(st.name) / suite

            def run(tmp: Path, st=st, suite=suite, out_dir=out_dir) -> None:
                ctx = eval_context(cfg, paths.model(st.name), st.name, tmp, suite, paths.world_dir, refs)
                run_suite(ctx, suite)
                relocate_task_files(tmp, out_dir)

            _run_stage(store, f"eval {st.name} {suite}", out_dir, stable_hash(eval_cfg), run)
            _say_metrics(out_dir)

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
