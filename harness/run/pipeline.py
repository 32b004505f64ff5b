"""train-and-eval: plan the stages (harness/run/stages.py), run each unless its key is done, then
the leaderboard.

Each stage runs from its spec alone (harness/run/run_stage.py) into a temp folder swapped in
atomically, and records its key (the hash of its spec, which names its inputs' keys); a rerun
skips stages whose key is unchanged. Under `launch.launcher: accelerate` the training stages
run under `accelerate launch`; everything else runs in this process.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from selm_bench.harness.core.config import ExperimentConfig
from selm_bench.harness.run.evaluate import relocate_task_files
from selm_bench.harness.run.stages import Stage, judge_runtime, plan
from selm_bench.harness.run.preflight import preflight
from selm_bench.harness.core.progress import say
from selm_bench.harness.run.run_stage import run_stage
from selm_bench.harness.core.specs import TRAINING_KINDS, to_json
from selm_bench.harness.core.store import RunStore, atomic_dir, atomic_write_text, read_json
from selm_bench.harness.run.tracking import Trackers, check_installed, training_env


def judge_failures(folder: Path) -> int:
    """Judgments an eval stage could not get (its suite's judge accounting in metrics.json)."""
    data = read_json(folder / "metrics.json") or {}
    judge = (data.get("info") or {}).get("judge") or {}
    return int(judge.get("failures") or 0) if isinstance(judge, dict) else 0


def rejudge(store: RunStore, stage: Stage, runtime: dict[str, Any] | None) -> bool:
    """An eval stage finished with failed judgments, or unjudged (`--no-judge`): judge its saved
    answers now (successes come from the judge cache, so only the missing ones are sent); answers
    are not regenerated. Its context is rebuilt from its spec and this run's runtime settings."""
    from selm_bench.harness.run.evaluate import eval_context, judge_hook, write_suite_result

    folder = store.root / stage.folder
    rec = read_json(folder / "stage.json")
    if not (stage.spec.kind == "eval" and rec and rec.get("key") == stage.key
            and (rec.get("judge_failures") or rec.get("unjudged")) and not store.force
            and not (runtime or {}).get("no_judge")):
        return False
    data = json.loads((folder / "metrics.json").read_text())
    t0 = time.time()
    ctx = eval_context(stage.spec, store.root, folder, runtime)
    write_suite_result(folder, data["suite"], ctx, judge_hook(data["suite"])(ctx), data.get("method"))
    left = judge_failures(folder)
    store.record(stage.folder, stage.key, "done", t0, env=rec.get("env"), judge_failures=left)
    if rec.get("judge_failures"):
        say(f"[yellow]rejudged[/yellow] {stage.name}: {rec['judge_failures']} failed judgments before, {left} now")
    else:
        say(f"[yellow]judged[/yellow] {stage.name}: the answers saved with --no-judge ({left} failed judgments)")
    return True


def execute(store: RunStore, stage: Stage, cfg: ExperimentConfig, runtime: dict[str, Any] | None = None) -> bool:
    """Run one stage unless done with this key; returns True if it ran."""
    key = stage.key
    if rejudge(store, stage, runtime):
        return True
    if store.is_done(stage.folder, key):
        say(f"[dim]skip[/dim] {stage.name} (done)")
        return False
    t0 = time.time()
    final = store.root / stage.folder
    from selm_bench.harness.run.staleness import stage_env

    cache = store.cache
    if cache is not None and cache.lookup(key, stage_env(stage.spec)) is not None:
        with atomic_dir(final) as tmp:
            cache.restore(key, tmp)
            relocate_task_files(tmp, final)
        store.record(stage.folder, key, "done", t0, env=stage_env(stage.spec), cached=True,
                     **_stage_info(final))
        say(f"[cyan]cached[/cyan] {stage.name}")
        return True
    store.record(stage.folder, key, "running", t0)
    try:
        with atomic_dir(final) as tmp, training_env(cfg.report_to, store.root, stage):  # report_to: the env of TRL's loggers
            if cfg.launch.launcher == "accelerate" and stage.spec.kind in TRAINING_KINDS:
                from selm_bench.harness.run.launch import launch_training

                launch_training(stage.spec, store.root, tmp, cfg.launch,
                                log=store.root / "logs" / f"{stage.name.replace('/', '-')}.log")
            else:
                run_stage(stage.spec, store.root, tmp, runtime)
            atomic_write_text(tmp / "spec.json", to_json(stage.spec))
            relocate_task_files(tmp, final)
    except BaseException:
        store.record(stage.folder, key, "failed", t0)
        raise
    extra = _stage_info(final)
    if stage.spec.kind == "eval" and judge_failures(final):  # a rerun judges the failed ones again
        extra["judge_failures"] = judge_failures(final)
    if stage.spec.kind == "eval" and (runtime or {}).get("no_judge"):
        from selm_bench.harness.run.evaluate import judge_hook

        if judge_hook(stage.spec.suite):  # answers only: a rerun without --no-judge judges them
            extra["unjudged"] = True
    store.record(stage.folder, key, "done", t0, env=stage_env(stage.spec), **extra)
    if cache is not None and not (extra.get("judge_failures") or extra.get("unjudged")):
        cache.publish(key, final)
    say(f"[green]done[/green] {stage.name} in {time.time() - t0:.1f}s")
    return True


def _stage_info(folder: Path) -> dict[str, Any]:
    """A stage's own counts (ranker failures, ...) that go into the manifest."""
    info = folder / "stage_info.json"
    return json.loads(info.read_text()) if info.is_file() else {}


def stale_stages(store: RunStore, stages: list[Stage]) -> list[tuple[Stage, list[str]]]:
    """Finished stages (same key) whose recorded env differs from this installation's."""
    from selm_bench.harness.run.staleness import differences, stage_env

    out = []
    for st in stages:
        rec = read_json(store.root / st.folder / "stage.json")
        if rec and rec.get("status") == "done" and rec.get("key") == st.key:
            diff = differences(rec.get("env"), stage_env(st.spec))
            if diff:
                out.append((st, diff))
    return out


def check_before_writing(cfg: ExperimentConfig, store: RunStore, stages: list[Stage], runtime: dict[str, Any],
                         keep_stale: bool = False) -> list[tuple[Stage, list[str]]]:
    """What a command checks before it writes anything (train-and-eval, eval): finished stages
    whose code or libraries changed stop it (StaleError naming the first) unless `keep_stale`
    (returned, to record) or the store's force; then everything the stages still to run will need
    (packages, files, rows, keys, cached hub artefacts): a missing ranker or key fails now, not
    after training."""
    from selm_bench.harness.run.staleness import StaleError

    stale = [] if store.force else stale_stages(store, stages)
    if stale and not keep_stale:
        (first, diff), more = stale[0], len(stale) - 1
        raise StaleError(f"stage {first.name} is stale ({'; '.join(diff)})" + (f" and {more} more" if more else "")
                         + ": rerun with --force to redo, or --keep-stale to keep the old results")
    check_installed(cfg.report_to)  # the trackers' packages
    preflight(cfg, [st for st in stages if not store.is_done(st.folder, st.key)], store.root, runtime)
    return stale


def run_evals(store: RunStore, evals: list[Stage], cfg: ExperimentConfig, runtime: dict[str, Any]) -> None:
    """Run each eval stage unless done (or judge what it left unjudged), then show its metrics."""
    trackers = Trackers(cfg.report_to, store.root)  # each eval finished here goes to report_to's trackers
    for ev in evals:
        if execute(store, ev, cfg, runtime):
            trackers.log_eval(store.root / ev.folder, ev)
        _say_metrics(store.root / ev.folder)
    trackers.close()


def train_and_eval(cfg: ExperimentConfig, out: Path, force: bool, command: list[str],
                   keep_stale: bool = False, stage_cache: Path | None = None) -> list[dict[str, Any]]:
    """Run the plan into `out`; with `stage_cache`, stages another run already computed with the
    same key (and code/library env) are taken from that content-addressed cache."""
    from selm_bench.harness.reports.leaderboard import collect_rows, write_leaderboard

    stages, evals = plan(cfg)  # a bad combination (batch vs processes) fails here, before anything is written
    store = RunStore(out, force=force)
    if stage_cache is not None and not force:
        from selm_bench.harness.run.stage_cache import StageCache

        store.cache = StageCache(stage_cache)
    runtime = judge_runtime(cfg)  # judges (evals, judge: rankers): settings that cannot change a judgment
    stale = check_before_writing(cfg, store, [*stages, *evals], runtime, keep_stale)
    store.start(cfg.to_dict(), cfg.seed, command)
    if stale:
        store.manifest["kept_stale"] = {st.folder: diff for st, diff in stale}
    for st in stages:
        execute(store, st, cfg, runtime)
    # The leaderboard shows exactly this plan's results, not leftovers of earlier plans.
    store.manifest["results"] = [ev.folder for ev in evals]
    store.save()  # on disk before any row is collected: with no evals, no older plan's rows either
    run_evals(store, evals, cfg, runtime)
    rows = collect_rows(out)
    write_leaderboard(out, rows)
    Trackers(cfg.report_to, store.root).log_leaderboard(rows)
    from selm_bench.harness.reports.modelcard import write_model_cards

    write_model_cards(out)  # checkpoints/*/model/README.md: method, data, hyperparameters, eval rows, provenance
    store.finish()
    return rows


def _say_metrics(out_dir: Path) -> None:
    data = json.loads((out_dir / "metrics.json").read_text())
    nums = {k: v for k, v in data["metrics"].items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    top = [k for k in nums if "/" not in k] or [k for k in nums if not k.endswith("_stderr")]  # lm-eval: task/metric
    shown = [f"{k}={nums[k]:.3f}" for k in top[:4]]
    say(f"      {data['checkpoint']} {data['suite']}: " + ", ".join(shown))
