"""Leaderboard: one row per checkpoint, one `<suite>/<metric>` column per metric.

Rows come from every suite `metrics.json` in a run directory; a folder of runs gives one
table with a `run` column.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from pathlib import Path
from typing import Any

from selm_bench.harness.store import atomic_write_json, atomic_write_text

METHOD_ORDER = ["sft", "dpo", "iterative-dpo", "selm"]
ID_COLUMNS = ["run", "checkpoint", "method", "iteration"]


def parse_checkpoint(name: str) -> tuple[str, int | None]:
    m = re.fullmatch(r"(.+)/iter-(\d+)", name)
    return (m.group(1), int(m.group(2))) if m else (name, None)


def is_run_dir(path: Path) -> bool:
    return (path / "manifest.json").is_file()


def _result_files(run_dir: Path) -> list[Path]:
    """The suite results of the run's current plan (its manifest lists them), else every
    finished-looking metrics.json (temp folders, named with a leading dot, are skipped)."""
    manifest = run_dir / "manifest.json"
    if manifest.is_file():
        listed = json.loads(manifest.read_text()).get("results")
        if listed is not None:
            return [run_dir / r / "metrics.json" for r in listed if (run_dir / r / "metrics.json").is_file()]
    return [f for f in sorted(run_dir.rglob("metrics.json"))
            if not any(part.startswith(".") for part in f.relative_to(run_dir).parts)]


def suite_column(suite: str) -> str:
    """Column prefix: the suite's base name (`lm-eval:openllm` -> `lm-eval`; its metrics name the task)."""
    return suite.split(":", 1)[0]


def _run_rows(run_dir: Path) -> list[dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    for f in _result_files(run_dir):
        data = json.loads(f.read_text())
        if "suite" not in data or "checkpoint" not in data:
            continue  # not a suite result (e.g. a library's own metrics file)
        ckpt = data["checkpoint"]
        method, iteration = parse_checkpoint(ckpt)
        row = rows.setdefault(ckpt, {"checkpoint": ckpt, "method": data.get("method", method),
                                     "iteration": data.get("iteration", iteration)})
        for k, v in data["metrics"].items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                row[f"{suite_column(data['suite'])}/{k}"] = float(v)

    def order(r: dict[str, Any]) -> tuple:
        m = r["method"]
        return (METHOD_ORDER.index(m) if m in METHOD_ORDER else len(METHOD_ORDER), m, r["iteration"] or 0)

    return sorted(rows.values(), key=order)


def collect_rows(results: Path) -> list[dict[str, Any]]:
    """Rows of one run directory (it has a manifest.json), or of every run directly under
    `results` with a `run` column; `results/imports` adds reference rows."""
    results = Path(results)
    if not results.is_dir():
        raise FileNotFoundError(f"results folder not found: {results}")
    if is_run_dir(results):
        rows = _run_rows(results)
        if (results / "imports").is_dir():  # reference rows added by `selm-bench import --results RUN`
            rows += _run_rows(results / "imports")
        return rows
    rows = []
    for sub in sorted(p for p in results.iterdir() if p.is_dir() and is_run_dir(p)):
        rows += [{"run": sub.name, **r} for r in _run_rows(sub)]
    if (results / "imports").is_dir():
        rows += [{"run": "imports", **r} for r in _run_rows(results / "imports")]
    return rows


def columns(rows: list[dict[str, Any]]) -> list[str]:
    ids = [c for c in ID_COLUMNS if any(c in r for r in rows)]
    metrics = sorted({k for r in rows for k in r if k not in ID_COLUMNS})
    return ids + metrics


def _clean(v: Any) -> Any:
    return None if isinstance(v, float) and math.isnan(v) else v


def to_json(rows: list[dict[str, Any]]) -> str:
    cols = columns(rows)
    return json.dumps([{c: _clean(r.get(c)) for c in cols} for r in rows], indent=2)


def to_csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns(rows), lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({c: ("" if _clean(r.get(c)) is None else r.get(c)) for c in columns(rows)})
    return buf.getvalue()


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def to_markdown(rows: list[dict[str, Any]]) -> str:
    cols = columns(rows)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_fmt(r.get(c)) for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def write_leaderboard(run_dir: Path, rows: list[dict[str, Any]]) -> None:
    atomic_write_text(Path(run_dir) / "leaderboard.csv", to_csv(rows))
    atomic_write_text(Path(run_dir) / "leaderboard.json", to_json(rows) + "\n")


def refresh(root: Path, title: str) -> list[dict[str, Any]]:
    """Collect `root`'s rows, rewrite its leaderboard.{csv,json} and show the table."""
    rows = collect_rows(root)
    write_leaderboard(root, rows)
    print_table(rows, title=title)
    return rows


def print_table(rows: list[dict[str, Any]], title: str = "leaderboard") -> None:
    """Rich table(s) on stderr: a row per checkpoint, a column per metric (a metric's stderr is
    shown as ± beside it). Too wide for the terminal, it is split into one table per suite."""
    from rich.table import Table

    from selm_bench.harness.progress import console

    if not rows:
        console.print(f"{title}: no results yet")
        return
    cols = columns(rows)
    metrics = [c for c in cols if c not in ID_COLUMNS and not c.endswith("_stderr")]
    labels = [f"{r['run']}:{r['checkpoint']}" if "run" in r else str(r["checkpoint"]) for r in rows]

    def cell(r: dict[str, Any], m: str) -> str:
        v, se = r.get(m), r.get(f"{m}_stderr")
        return _fmt(v) + (f" ±{se:.2g}" if isinstance(se, float) and v is not None else "")

    def width(ms: list[str], strip: str = "") -> int:
        first = max(len(x) for x in labels + ["checkpoint"])
        return first + 4 + sum(3 + max([len(m.removeprefix(strip))] + [len(cell(r, m)) for r in rows]) for m in ms)

    groups: dict[str, list[str]] = {}
    for m in metrics:
        groups.setdefault(m.split("/", 1)[0], []).append(m)
    if width(metrics) <= console.width:
        parts = [(title, metrics, "")]
    else:
        parts = [(f"{title} · {suite}", ms, f"{suite}/") for suite, ms in groups.items()]
    for name, ms, strip in parts:
        table = Table(title=name)
        table.add_column("checkpoint", no_wrap=True)
        for m in ms:
            table.add_column(m.removeprefix(strip), justify="right")
        for label, r in zip(labels, rows):
            table.add_row(label, *[cell(r, m) for m in ms])
        console.print(table)
