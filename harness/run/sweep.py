"""`selm-bench sweep`: a grid of config values × seeds, one run folder per cell, one table.

Every cell is an ordinary `train-and-eval` run under `OUT/cells/<cell>`; all cells share the
content-addressed stage cache `OUT/cache`, so a stage whose key another cell already computed
(sft and dpo under a grid over `online.alpha`) is taken from there, not retrained. Rerunning the
same command resumes. `OUT/groups/<point>/seeds.json` names a grid point's seed runs, which
`compare` accepts as one side (per-item scores averaged over seeds). With `launcher="slurm"` the
cells run as Slurm jobs through submitit: first one cell per seed (it computes the shared
stages), then the rest in parallel.
"""

from __future__ import annotations

import itertools
import json
import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from selm_bench.harness.core.config import ConfigError, ExperimentConfig, load_config
from selm_bench.harness.core.store import atomic_write_json, atomic_write_text

SWEEP_FILE = "sweep.json"


@dataclass(frozen=True)
class Cell:
    name: str
    params: dict[str, str]
    seed: int

    @property
    def dir(self) -> str:
        return f"cells/{self.name}"

    @property
    def point(self) -> str:
        return ",".join(f"{k}={v}" for k, v in self.params.items()) or "default"


@dataclass(frozen=True)
class SlurmOptions:
    partition: str | None = None
    gpus: int = 1
    time_min: int = 24 * 60
    mem_gb: int = 64
    cpus: int = 8
    executor: str = "slurm"  # "local": submitit's local executor (tests, a workstation)


def parse_grid(specs: list[str]) -> dict[str, list[str]]:
    """`["online.alpha=0,0.1", "online.beta=0.1"]` -> {"online.alpha": ["0", "0.1"], ...}."""
    grid: dict[str, list[str]] = {}
    for spec in specs:
        key, eq, values = spec.partition("=")
        key = key.strip()
        vals = [v.strip() for v in values.split(",") if v.strip()]
        if not eq or not key or not vals:
            raise ConfigError(f"--grid {spec!r}: expected KEY=V1,V2,... e.g. online.alpha=0,0.001,0.1")
        if key in grid:
            raise ConfigError(f"--grid {key}: given twice")
        if key in ("seed", "name", "output_dir"):
            raise ConfigError(f"--grid {key}: not a swept value (seeds: --seeds)")
        if len(set(vals)) != len(vals):
            raise ConfigError(f"--grid {key}: repeated value")
        grid[key] = vals
    if not grid:
        raise ConfigError("--grid: give at least one KEY=V1,V2,...")
    return grid


def cells(grid: dict[str, list[str]], seeds: list[int]) -> list[Cell]:
    out = []
    for values in itertools.product(*grid.values()):
        params = dict(zip(grid, values))
        for seed in seeds:
            name = ",".join([*(f"{k}={v}" for k, v in params.items()), f"seed={seed}"])
            if "/" in name or name.startswith("."):
                raise ConfigError(f"--grid: value makes an unusable folder name: {name!r}")
            out.append(Cell(name, params, seed))
    return out


def cell_config(config: Path | None, cell: Cell, methods: list[str] | None, suites: list[str] | None,
                sets: list[str]) -> ExperimentConfig:
    return load_config(config, overrides={"seed": cell.seed, "methods": methods, "suites": suites},
                       sets=[*sets, *(f"{k}={v}" for k, v in cell.params.items())])


def run_cell(cfg_dict: dict[str, Any], cell_dir: str, cache: str, command: list[str]) -> str:
    """One cell, in this process or as a submitit job (top-level, picklable arguments)."""
    from selm_bench.harness.run.pipeline import train_and_eval

    cfg = ExperimentConfig.model_validate(cfg_dict)
    train_and_eval(cfg, Path(cell_dir), force=False, command=command, stage_cache=Path(cache))
    return cell_dir


def sweep(config: Path | None, grid: dict[str, list[str]], seeds: list[int], out: Path,
          methods: list[str] | None = None, suites: list[str] | None = None, sets: list[str] | None = None,
          launcher: str = "local", slurm: SlurmOptions | None = None, command: list[str] | None = None,
          on_cell: Any = None, cache: Path | None = None) -> list[dict[str, Any]]:
    """Run every cell (resuming), write the sweep's tables and seed groups; the table's rows."""
    all_cells = cells(grid, seeds)
    configs = {c.name: cell_config(config, c, methods, suites, sets or []) for c in all_cells}  # all valid first
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / SWEEP_FILE, {
        "config": str(config) if config else "default", "grid": grid, "seeds": seeds, "methods": methods,
        "suites": suites, "sets": sets or [], "command": command,
        "cells": [{"name": c.name, "dir": c.dir, "params": c.params, "seed": c.seed} for c in all_cells]})
    cache_dir = str(Path(cache).resolve()) if cache else str(out / "cache")
    jobs = [(c, configs[c.name].to_dict(), str(out / c.dir), cache_dir) for c in all_cells]
    if launcher == "slurm":
        _run_slurm(jobs, out, slurm or SlurmOptions(), command or [])
    else:
        for cell, cfg, cell_dir, cache in jobs:
            if on_cell:
                on_cell(cell)
            run_cell(cfg, cell_dir, cache, command or [])
    write_groups(out, all_cells)
    return write_tables(out, all_cells)


def _run_slurm(jobs: list[tuple[Cell, dict, str, str]], out: Path, opts: SlurmOptions, command: list[str]) -> None:
    try:
        import submitit
    except ImportError:
        raise ConfigError("--launcher slurm needs the optional extra: pip install 'selm-bench[slurm]' "
                          "(submitit is not installed)") from None
    executor = submitit.AutoExecutor(folder=out / "slurm" / "%j", cluster=opts.executor)
    params: dict[str, Any] = {"timeout_min": opts.time_min, "mem_gb": opts.mem_gb, "gpus_per_node": opts.gpus,
                              "cpus_per_task": opts.cpus, "name": "selm-bench-sweep"}
    if opts.partition:
        params["slurm_partition"] = opts.partition
    executor.update_parameters(**params)
    first_per_seed: dict[int, tuple] = {}
    for job in jobs:
        first_per_seed.setdefault(job[0].seed, job)
    rest = [j for j in jobs if j not in first_per_seed.values()]
    for wave in (list(first_per_seed.values()), rest):  # the first wave computes the stages cells share
        submitted = [executor.submit(run_cell, cfg, cell_dir, cache, command) for _, cfg, cell_dir, cache in wave]
        for (cell, *_), job in zip(wave, submitted):
            try:
                job.result()
            except Exception as e:  # noqa: BLE001 - submitit wraps the job's exception
                raise RuntimeError(f"sweep cell {cell.name} failed (job {job.job_id}): "
                                   f"{str(e).strip().splitlines()[-1]}") from None


def write_groups(out: Path, all_cells: list[Cell]) -> None:
    by_point: dict[str, list[Cell]] = {}
    for c in all_cells:
        by_point.setdefault(c.point, []).append(c)
    for point, cs in by_point.items():
        atomic_write_json(out / "groups" / point / "seeds.json",
                          {"params": cs[0].params, "seeds": [c.seed for c in cs],
                           "runs": [f"../../{c.dir}" for c in cs]})


def write_tables(out: Path, all_cells: list[Cell]) -> list[dict[str, Any]]:
    """`table.{csv,json}`: every cell's rows; `summary.{csv,json}`: mean and std over seeds."""
    from selm_bench.harness.reports.leaderboard import collect_rows, to_csv

    rows = []
    for c in all_cells:
        for r in collect_rows(out / c.dir):
            rows.append({"cell": c.name, **c.params, "seed": c.seed, **r})
    atomic_write_text(out / "table.csv", to_csv(rows, lead=["cell", *all_cells[0].params, "seed"]))
    atomic_write_json(out / "table.json", rows)
    summary = summarize(rows, list(all_cells[0].params))
    atomic_write_text(out / "summary.csv", to_csv(summary, lead=[*all_cells[0].params, "n_seeds"]))
    atomic_write_json(out / "summary.json", summary)
    return summary


def summarize(rows: list[dict[str, Any]], params: list[str]) -> list[dict[str, Any]]:
    """One row per grid point and checkpoint (in first-seen order): each metric's mean over seeds and
    `<metric>_std` (the sample standard deviation; None from one seed), by a pandas group-by."""
    import pandas as pd

    if not rows:
        return []
    frame = pd.DataFrame(rows).astype(object)  # keeps each cell's Python type (ints stay ints)
    keys = [*params, "checkpoint"]
    skip = {"cell", "seed", "run", "checkpoint", "method", "iteration", "provenance", "label", *params}
    metrics = sorted(c for c in frame.columns if c not in skip and not c.endswith("_stderr"))
    # only numbers count: a text cell or a missing one is left out of its metric's mean
    values = frame[metrics].apply(lambda col: col.map(lambda v: v if isinstance(v, (int, float)) else math.nan)).astype(float)
    by_point = values.groupby([frame[k] for k in keys], sort=False, dropna=False)
    mean, std = by_point.mean(), by_point.std(ddof=1)
    out = []
    for point, index in by_point.indices.items():
        head = rows[index[0]]
        row: dict[str, Any] = {**{p: head[p] for p in params}, "checkpoint": head["checkpoint"],
                               "method": head.get("method"), "iteration": head.get("iteration"), "n_seeds": len(index)}
        if head.get("label"):
            row["label"] = head["label"]
        for m in metrics:
            if not math.isnan(mean.at[point, m]):
                row[m] = float(mean.at[point, m])
                row[f"{m}_std"] = None if math.isnan(std.at[point, m]) else float(std.at[point, m])
        out.append(row)
    return out


def print_summary(summary: list[dict[str, Any]], out: Path) -> None:
    """The sweep's table on stderr: a row per grid point and checkpoint, headline metrics as mean ± std."""
    from rich.markup import escape
    from rich.table import Table

    from selm_bench.harness.reports.leaderboard import headline_columns
    from selm_bench.harness.core.progress import console

    params = list(json.loads((out / SWEEP_FILE).read_text())["grid"])
    metrics = headline_columns(summary)
    table = Table(title=escape(f"sweep: {out} (mean ± std over seeds)"))
    for c in [*params, "checkpoint", "seeds", *metrics]:
        table.add_column(c, justify="right" if c in metrics else "left")
    for r in summary:
        cells = [str(r.get(p)) for p in params] + [str(r["checkpoint"]), str(r["n_seeds"])]
        for m in metrics:
            v, sd = r.get(m), r.get(f"{m}_std")
            cells.append("" if v is None else f"{v:.4g}" + (f" ± {sd:.2g}" if sd is not None else ""))
        table.add_row(*(escape(c) for c in cells))
    console.print(table)
