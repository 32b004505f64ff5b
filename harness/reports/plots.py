"""Report plots (matplotlib's Agg canvas, PNG). Each `*_plot` returns PNG bytes, or None when
the data it needs is absent; the `*_series`/`*_points` helpers hold the numbers they draw.

Inputs are leaderboard rows (`leaderboard.collect_rows`): `<suite>/<metric>` columns, with a
metric's standard error in `<metric>_stderr`, or where the suite's registered `stderr` names it
(AlpacaEval: `standard_error`, `lc_standard_error`).
"""

from __future__ import annotations

import io
import json
import math
import statistics
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from selm_bench.evals.base import number
from selm_bench.harness.core import registry
from selm_bench.harness.reports.leaderboard import METHOD_ORDER, parse_checkpoint

Row = dict[str, Any]
TRAIN_PANELS = [  # (title, log keys drawn in it)
    ("preference loss", ["loss"]),
    ("reward margin (chosen - rejected)", ["rewards/margins"]),
    ("implicit rewards: chosen (solid), rejected (dashed)", ["rewards/chosen", "rewards/rejected"]),
    ("reward accuracy", ["rewards/accuracies"]),
    ("SELM: r(y_ref) = β·log π/π_ref (y_ref); optimism term = α·r", ["rewards/ref_response"]),
]
COLORS = {"sft": "#7f7f7f", "dpo": "#222222", "iterative-dpo": "#1f77b4", "selm": "#d62728"}
EXTRA_COLORS = ["#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#bcbd22"]


# ---------------------------------------------------------------- numbers
def _own_stderr(column: str) -> str | None:
    """The column the column's suite names as its standard error (its registered `stderr`), if any."""
    suite, _, metric = column.partition("/")
    entry = registry.suite_entry(suite) if metric else None
    own = entry.stderr.get(metric) if entry else None
    return f"{suite}/{own}" if own else None


def stderr_columns(column: str) -> list[str]:
    """Where a metric's standard error may be: `<metric>_stderr`, else the suite's own name for it."""
    own = _own_stderr(column)
    return [f"{column}_stderr"] + ([own] if own else [])


def stderr_of(row: Row, column: str) -> float | None:
    return next((number(row[c]) for c in stderr_columns(column) if number(row.get(c)) is not None), None)


def _present(rows: list[Row], column: str) -> bool:
    return any(number(r.get(column)) is not None for r in rows)


def headline_columns(rows: list[Row]) -> list[str]:
    """Each suite's headline metric column present in `rows` (its registered `headline`, else its
    `fallbacks` in order, else its `fallback_columns`: tiny-world accuracy, MT-Bench score,
    AlpacaEval LC win rate (else win rate), lm-eval average (else each task's acc/acc_norm/first
    metric), BrainTeaser overall); another suite: its score/accuracy, else its first metric."""
    keys = sorted({k for r in rows for k in r if "/" in k and _present(rows, k)})
    suites = list(dict.fromkeys(k.split("/", 1)[0] for k in keys))
    out: list[str] = []
    for suite in suites:
        metrics = [k for k in keys if k.startswith(f"{suite}/") and not _is_error_column(k)]
        entry = registry.suite_entry(suite)
        preferred = [entry.headline, *entry.fallbacks] if entry else ["score", "accuracy"]
        pick = next((f"{suite}/{m}" for m in preferred if f"{suite}/{m}" in metrics), None)
        if pick:
            out.append(pick)
        elif entry and entry.fallback_columns:
            out.extend(entry.fallback_columns(metrics))
        elif metrics:
            out.append(metrics[0])
    return out


def _is_error_column(key: str) -> bool:
    suite, _, metric = key.partition("/")
    entry = registry.suite_entry(suite) if metric else None
    return key.endswith(("_stderr", "_std", "standard_error")) or bool(entry and metric in entry.stderr.values())


def iteration_series(rows: list[Row], column: str, start: str | None = "dpo"
                     ) -> tuple[dict[str, list[tuple[int, float, float | None]]], dict[str, float]]:
    """(lines, references): per iterated method [(iteration, value, stderr)] in iteration order,
    led by the start checkpoint's value as iteration 0; every checkpoint without an iteration
    (sft, dpo, imported rows) is a horizontal reference {checkpoint: value}."""
    by_ckpt = {str(r["checkpoint"]): r for r in rows if number(r.get(column)) is not None}
    refs = {c: number(r[column]) for c, r in by_ckpt.items() if r.get("iteration") is None}
    lines: dict[str, list[tuple[int, float, float | None]]] = {}
    for c, r in by_ckpt.items():
        if r.get("iteration") is not None:
            lines.setdefault(str(r["method"]), []).append((int(r["iteration"]), number(r[column]), stderr_of(r, column)))
    for method, pts in lines.items():
        if start in by_ckpt and all(i != 0 for i, _, _ in pts):
            r0 = by_ckpt[start]
            pts.append((0, number(r0[column]), stderr_of(r0, column)))
        pts.sort()
    return lines, refs  # type: ignore[return-value]


def sweep_points(cells: list[dict[str, Any]], param: str, column: str
                 ) -> dict[str, list[tuple[Any, float, float | None, int]]]:
    """Per line (each method's last checkpoint, plus the other swept parameters' values): points
    (value of `param`, mean over seeds, interval, n seeds). The interval is the sample std across
    seeds with 2 or more seeds; with one seed, the metric's stderr when the rows carry one."""
    groups: dict[tuple[str, Any], list[tuple[float, float | None]]] = {}
    for cell in cells:
        params = cell.get("params", {})
        if param not in params:
            continue
        others = ",".join(f"{k}={v}" for k, v in sorted(params.items()) if k != param)
        for r in final_rows(cell.get("rows", [])):
            v = number(r.get(column))
            if v is None:
                continue
            label = str(r["checkpoint"]) + (f" ({others})" if others else "")
            groups.setdefault((label, _value(params[param])), []).append((v, stderr_of(r, column)))
    lines: dict[str, list[tuple[Any, float, float | None, int]]] = {}
    for (label, x), vals in groups.items():
        ys = [v for v, _ in vals]
        err = statistics.stdev(ys) if len(ys) > 1 else vals[0][1]
        lines.setdefault(label, []).append((x, statistics.fmean(ys), err, len(ys)))
    for pts in lines.values():
        pts.sort(key=lambda p: _sort_key(p[0]))
    return lines


def final_rows(rows: list[Row]) -> list[Row]:
    """Each method's last iteration, and every row without an iteration."""
    last: dict[str, int] = {}
    for r in rows:
        if r.get("iteration") is not None:
            last[r["method"]] = max(last.get(r["method"], -1), int(r["iteration"]))
    return [r for r in rows if r.get("iteration") is None or int(r["iteration"]) == last[r["method"]]]


def _value(x: Any) -> Any:
    """A swept value as a number where it reads as one (sweep.json keeps them as typed: "0.001")."""
    if isinstance(x, str):
        try:
            return float(x)
        except ValueError:
            return x
    return x


def _sort_key(x: Any) -> tuple:
    return (0, float(x), "") if number(x) is not None else (1, 0.0, str(x))


def training_logs(run_dir: Path) -> dict[str, dict[str, Any]]:
    """{stage name ("dpo", "selm/iter-1"): {"log": [entries with a step], "alpha": float | None}}
    from every `checkpoints/**/train_log.json` (temp folders, named with a leading dot, skipped)."""
    root = Path(run_dir) / "checkpoints"
    out: dict[str, dict[str, Any]] = {}
    for f in sorted(root.rglob("train_log.json")) if root.is_dir() else []:
        rel = f.parent.relative_to(root)
        if any(p.startswith(".") for p in rel.parts):
            continue
        name = str(rel.parent if rel.name == "model" else rel).replace("\\", "/")
        log = json.loads(f.read_text())
        entries = [e for e in log if isinstance(e, dict) and "step" in e and "loss" in e] if isinstance(log, list) else []
        spec = f.parent / "spec.json"
        alpha = number(json.loads(spec.read_text()).get("alpha")) if spec.is_file() else None
        if entries:
            out[name] = {"log": entries, "alpha": alpha}
    return out


def _order(name: str) -> tuple:
    method, it = parse_checkpoint(name)
    return (METHOD_ORDER.index(method) if method in METHOD_ORDER else len(METHOD_ORDER), method, it or 0)


def training_series(logs: dict[str, dict[str, Any]], key: str) -> dict[str, list[tuple[float, float]]]:
    """Per method: (step, value) of `key`, a method's iterations laid end to end (iteration t's
    steps follow iteration t-1's last step)."""
    out: dict[str, list[tuple[float, float]]] = {}
    offset: dict[str, float] = {}
    for name in sorted(logs, key=_order):
        method, _ = parse_checkpoint(name)
        pts = [(offset.get(method, 0.0) + e["step"], number(e.get(key))) for e in logs[name]["log"]]
        offset[method] = offset.get(method, 0.0) + max(e["step"] for e in logs[name]["log"])
        pts = [(x, y) for x, y in pts if y is not None]
        if pts:
            out.setdefault(method, []).extend(pts)
    return out


# ---------------------------------------------------------------- drawing
def color(method: str) -> str:
    if method in COLORS:
        return COLORS[method]
    return EXTRA_COLORS[sum(map(ord, method)) % len(EXTRA_COLORS)]


def _figure(n: int, ncols: int = 3, w: float = 4.6, h: float = 3.4) -> tuple[Figure, list]:
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(w * ncols, h * nrows), dpi=90, layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel().tolist()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    FigureCanvasAgg(fig).print_png(buf, metadata={"Software": None})
    return buf.getvalue()


def metric_vs_iteration_plot(rows: list[Row], start: str | None = "dpo") -> bytes | None:
    """Each suite's headline metric vs online iteration, one line per method (± stderr where the
    suite gives one); checkpoints without an iteration (sft, dpo) as horizontal references."""
    panels = [(c, *iteration_series(rows, c, start)) for c in headline_columns(rows)]
    panels = [p for p in panels if p[1] or p[2]]
    if not panels:
        return None
    fig, axes = _figure(len(panels))
    for ax, (column, lines, refs) in zip(axes, panels):
        for k, (name, v) in enumerate(refs.items()):
            ax.axhline(v, color=color(name), ls=(0, (4, 2 + k)), lw=1.2, label=name)
        for k, (method, pts) in enumerate(lines.items()):
            xs, ys, es = zip(*pts)
            errs = [e or 0.0 for e in es] if any(e is not None for e in es) else None
            dodge = 0.04 * (k - (len(lines) - 1) / 2)  # methods with equal values stay visible
            ax.errorbar([x + dodge for x in xs], ys, yerr=errs, marker="os^Dv<>"[k % 7], capsize=3,
                        color=color(method), label=method)
            ax.set_xticks(sorted({x for ln in lines.values() for x, _, _ in ln}))
        ax.set_title(column, fontsize=10)
        ax.set_xlabel(f"iteration (0 = {start})" if lines and start else "iteration")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return _png(fig)


def training_curves_plot(run_dir: Path) -> bytes | None:
    """Trainer logs: SFT loss, preference loss, reward margin, chosen/rejected implicit rewards,
    reward accuracy and SELM's y_ref reward (its optimism term is alpha times it), per method."""
    logs = training_logs(run_dir)
    if not logs:
        return None
    sft = {n: v for n, v in logs.items() if not any("rewards/chosen" in e for e in v["log"])}
    pref = {n: v for n, v in logs.items() if n not in sft}
    panels: list[tuple[str, list[tuple[str, dict[str, list[tuple[float, float]]], Any]]]] = []
    if sft:
        panels.append(("SFT loss", [("loss", training_series(sft, "loss"), "-")]))
    for title, keys in TRAIN_PANELS:
        series = [(k, training_series(pref, k), "--" if k.endswith("rejected") else "-") for k in keys]
        if any(s for _, s, _ in series):
            panels.append((title, series))
    if not panels:
        return None
    alphas = {parse_checkpoint(n)[0]: v["alpha"] for n, v in pref.items() if v["alpha"] is not None}
    fig, axes = _figure(len(panels))
    for ax, (title, series) in zip(axes, panels):
        for key, per_method, ls in series:
            for k, (method, pts) in enumerate(per_method.items()):
                xs, ys = zip(*pts)
                label = method + (f" (α={alphas[method]:g})" if key == "rewards/ref_response" and method in alphas else "")
                ax.plot(xs, ys, ls=ls, color=color(method), lw=max(1.2, 2.6 - 0.7 * k),  # overlaps stay visible
                        label=label if ls == "-" else None)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("step (a method's iterations end to end)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return _png(fig)


def win_rate_plot(rows: list[Row]) -> bytes | None:
    """AlpacaEval win rate (and LC win rate when present) per checkpoint, ± standard error."""
    kinds = [c for c in ("alpaca-eval/win_rate", "alpaca-eval/length_controlled_winrate") if _present(rows, c)]
    rs = [r for r in rows if any(number(r.get(c)) is not None for c in kinds)]
    if not rs:
        return None
    fig, (ax,) = _figure(1, w=7.5, h=0.35 * len(rs) + 1.6)
    for k, c in enumerate(kinds):
        pts = [(i + 0.15 * k, number(r.get(c)), stderr_of(r, c) or 0.0) for i, r in enumerate(rs)]
        pts = [p for p in pts if p[1] is not None]
        ys, vals, errs = zip(*pts)
        ax.errorbar(vals, ys, xerr=errs, fmt="os"[k], capsize=4, color=["#1f77b4", "#ff7f0e"][k],
                    label=c.split("/", 1)[1] + " ± standard error")
    ax.set_yticks(range(len(rs)), [str(r["checkpoint"]) for r in rs])
    ax.set_ylim(len(rs) - 0.5, -0.5)
    ax.grid(alpha=0.3)
    ax.axvline(50, color="k", lw=0.8, ls=":")
    ax.set_xlabel("win rate vs the reference outputs (%)")
    ax.set_title("AlpacaEval", fontsize=10)
    ax.legend(fontsize=7)
    return _png(fig)


def mt_bench_category_plot(rows: list[Row]) -> bytes | None:
    """MT-Bench mean rating per question category, one bar per checkpoint."""
    cats = sorted({k.split("/", 2)[2] for r in rows for k in r
                   if k.startswith("mt-bench/category/") and number(r.get(k)) is not None})
    rs = [r for r in rows if any(number(r.get(f"mt-bench/category/{c}")) is not None for c in cats)]
    if not cats:
        return None
    fig, (ax,) = _figure(1, w=min(12.0, max(7.0, 0.25 * len(cats) * len(rs) + 2)), h=3.8)
    width = 0.8 / len(rs)
    for k, r in enumerate(rs):
        method, _ = parse_checkpoint(str(r["checkpoint"]))
        vals = [number(r.get(f"mt-bench/category/{c}")) or 0.0 for c in cats]
        ax.bar([i + k * width for i in range(len(cats))], vals, width=width, label=str(r["checkpoint"]),
               color=color(method), alpha=0.45 + 0.55 * (k + 1) / len(rs), edgecolor="white")
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(cats))], cats, rotation=20)
    ax.set_ylim(0, 10)
    ax.set_ylabel("mean rating (1-10)")
    ax.set_title("MT-Bench per category", fontsize=10)
    ax.legend(fontsize=7, ncols=2)
    return _png(fig)


def sweep_plot(cells: list[dict[str, Any]], param: str, columns: list[str]) -> bytes | None:
    """Each headline metric vs the swept `param` (mean over seeds ± std across seeds; one seed:
    ± the metric's stderr where it has one), one line per method's final checkpoint."""
    panels = [(c, sweep_points(cells, param, c)) for c in columns]
    panels = [(c, p) for c, p in panels if p]
    if not panels:
        return None
    xs_all = list(dict.fromkeys(x for _, p in panels for pts in p.values() for x, *_ in pts))
    numeric = all(number(x) is not None for x in xs_all)
    fig, axes = _figure(len(panels))
    for ax, (column, lines) in zip(axes, panels):
        for label, pts in lines.items():
            xs = [float(x) if numeric else sorted(xs_all, key=_sort_key).index(x) for x, *_ in pts]
            ys, errs = [p[1] for p in pts], [p[2] or 0.0 for p in pts]
            ax.errorbar(xs, ys, yerr=errs, marker="o", capsize=3, label=label,
                        color=color(parse_checkpoint(label.split(" ")[0])[0]))
        if numeric:
            nz = sorted(abs(float(x)) for x in xs_all if float(x) != 0)
            if nz and nz[-1] / nz[0] >= 100:
                ax.set_xscale("symlog", linthresh=nz[0])
            ax.set_xticks(sorted(float(x) for x in xs_all), [f"{float(x):g}" for x in sorted(xs_all, key=_sort_key)])
        else:
            ax.set_xticks(range(len(xs_all)), [str(x) for x in sorted(xs_all, key=_sort_key)])
        ax.set_title(column, fontsize=10)
        ax.set_xlabel(param)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    return _png(fig)
