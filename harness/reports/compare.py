"""Run-vs-run paired comparison: `selm-bench compare BASE NEW`.

Each side is `RUN_DIR[:checkpoint]` (a run folder, or a seed group of a sweep whose per-item
scores are averaged over its seeds). Per suite both sides' items are paired by `id`; each metric
the suite's `paired` hook computes from items gets both values, the delta and a 95% interval from
a paired bootstrap over the shared items (the same resampled ids on both sides). A verdict per
metric: improved / regressed when the interval excludes 0, else no significant change. A gated
metric that regressed by more than its threshold (the interval's upper end below -threshold)
makes the comparison fail (exit 1).

Formats: text, json, markdown (a table of the gated metrics for a pull-request comment) and
github (GitHub Actions workflow-command annotations, one `::error` per failed gate, then the
markdown table, which is also appended to `$GITHUB_STEP_SUMMARY` when that is set).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from selm_bench.harness.core import registry
from selm_bench.harness.reports.leaderboard import collect_rows, is_run_dir

SEEDS_FILE = "seeds.json"  # a sweep's seed group: {"runs": [cell run folders, relative to it]}


class CompareError(ValueError):
    """Bad input to compare (missing run, checkpoint or metric): one line, exit 2."""


@dataclass
class Side:
    label: str
    runs: list[Path]
    checkpoint: str


@dataclass
class MetricResult:
    suite: str
    metric: str
    base: float | None
    new: float | None
    delta: float | None
    low: float | None
    high: float | None
    verdict: str
    gated: bool
    threshold: float
    failed: bool


@dataclass
class SuiteComparison:
    suite: str
    shared: int
    only_base: int
    only_new: int
    metrics: list[MetricResult] = field(default_factory=list)


def side_runs(path: Path) -> list[Path]:
    """A run folder -> [it]; a seed group (seeds.json) -> its seed runs."""
    if is_run_dir(path):
        return [path]
    group = path / SEEDS_FILE
    if group.is_file():
        runs = [path / r for r in json.loads(group.read_text())["runs"]]
        missing = [str(r) for r in runs if not is_run_dir(r)]
        if missing:
            raise CompareError(f"{path}: seed runs not finished: {', '.join(missing)}")
        return runs
    raise CompareError(f"{path}: not a run folder (no manifest.json) nor a seed group ({SEEDS_FILE})")


def parse_side(arg: str) -> Side:
    """`RUN_DIR[:checkpoint]`; without a checkpoint, the run's last one (leaderboard order)."""
    path, checkpoint = Path(arg), None
    if not path.exists() and ":" in arg:
        head, _, checkpoint = arg.rpartition(":")
        path = Path(head)
    if not path.is_dir():
        raise CompareError(f"run folder not found: {path}")
    runs = side_runs(path)
    names = [r["checkpoint"] for r in collect_rows(runs[0]) if r.get("method") != "reference"]  # not imports
    if not names:
        raise CompareError(f"{path}: the run has no results yet")
    if checkpoint is None:
        checkpoint = names[-1]
    elif checkpoint not in names:
        raise CompareError(f"{path}: no checkpoint {checkpoint!r}; it has {', '.join(names)}")
    return Side(label=f"{path}:{checkpoint}", runs=runs, checkpoint=checkpoint)


def _suite_items(run: Path, checkpoint: str) -> dict[str, dict[str, dict[str, Any]]]:
    """suite -> item id -> record, for one checkpoint of one run."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    base = run / "evals" / checkpoint
    for metrics_file in sorted(base.glob("*/metrics.json")):
        suite = json.loads(metrics_file.read_text())["suite"]
        items_file = metrics_file.parent / "items.jsonl"
        if items_file.is_file():
            records = [json.loads(line) for line in items_file.read_text().splitlines() if line.strip()]
            out[suite] = {str(r["id"]): r for r in records if "id" in r}
    return out


def _average(records: list[dict[str, Any]]) -> dict[str, Any]:
    """One record from the same item in several seed runs: numbers (and booleans) averaged."""
    merged = dict(records[0])
    for key, value in records[0].items():
        values = [r.get(key) for r in records]
        if all(isinstance(v, (int, float)) for v in values):
            merged[key] = sum(float(v) for v in values) / len(values)
    if any(r.get("score") is None for r in records):
        merged["score"] = None
    return merged


def side_items(side: Side) -> dict[str, dict[str, dict[str, Any]]]:
    """suite -> item id -> record, averaged over the side's seed runs (items all seeds have)."""
    per_run = [_suite_items(r, side.checkpoint) for r in side.runs]
    suites = set(per_run[0]).intersection(*per_run[1:])
    out = {}
    for suite in suites:
        ids = set(per_run[0][suite]).intersection(*(p[suite] for p in per_run[1:]))
        out[suite] = {i: _average([p[suite][i] for p in per_run]) for i in sorted(ids)}
    return out


def paired_bootstrap(base_items: list[dict[str, Any]], new_items: list[dict[str, Any]], paired: Any,
                     resamples: int, seed: int) -> dict[str, tuple[float | None, float | None, float | None, float | None]]:
    """metric -> (base value, new value, 2.5th, 97.5th percentile of new - base) over resamples
    of the shared items' indices, the same indices on both sides."""
    base_values, new_values = paired(base_items), paired(new_items)
    rng = np.random.default_rng(seed)
    n = len(base_items)
    deltas: dict[str, list[float]] = {m: [] for m in base_values}
    for _ in range(resamples):
        idx = rng.integers(0, n, size=n)
        b, w = paired([base_items[i] for i in idx]), paired([new_items[i] for i in idx])
        for m in deltas:
            if b.get(m) is not None and w.get(m) is not None:
                deltas[m].append(w[m] - b[m])
    out = {}
    for m, ds in deltas.items():
        lo, hi = (float(np.percentile(ds, 2.5)), float(np.percentile(ds, 97.5))) if ds else (None, None)
        out[m] = (base_values.get(m), new_values.get(m), lo, hi)
    return out


def headline_metric(suite: str, metrics: list[str]) -> str:
    """The gated metric of a suite by default: its headline when items determine it, else the first."""
    head = registry.entry("suite", suite).headline
    return head if head in metrics else metrics[0]


def compare(base: Side, new: Side, gated: list[str] | None = None, thresholds: dict[str, float] | None = None,
            seed: int = 0, resamples: int = 1000) -> list[SuiteComparison]:
    registry.load_all()
    thresholds = dict(thresholds or {})
    base_items, new_items = side_items(base), side_items(new)
    suites = sorted(set(base_items) & set(new_items))
    if not suites:
        raise CompareError(f"no suite has per-item results on both sides ({base.label} vs {new.label})")
    results: list[SuiteComparison] = []
    known: set[str] = set()
    for suite in suites:
        entry = registry.entry("suite", suite)
        b, w = base_items[suite], new_items[suite]
        shared = [i for i in b if i in w and b[i].get("score") is not None and w[i].get("score") is not None]
        comp = SuiteComparison(suite, len(shared), len(set(b) - set(w)), len(set(w) - set(b)))
        if not shared:
            results.append(comp)
            continue
        boot = paired_bootstrap([b[i] for i in shared], [w[i] for i in shared], entry.paired, resamples, seed)
        names = [m for m in boot]
        known |= {f"{suite}/{m}" for m in names}
        default_gate = f"{suite}/{headline_metric(suite, names)}"
        for m, (bv, nv, lo, hi) in boot.items():
            key = f"{suite}/{m}"
            is_gated = key in gated if gated else key == default_gate
            thr = thresholds.get(key, 0.0)
            if lo is None or hi is None:
                verdict = "no data"
            elif lo > 0:
                verdict = "improved"
            elif hi < 0:
                verdict = "regressed"
            else:
                verdict = "no significant change"
            failed = is_gated and hi is not None and hi < -thr
            delta = None if bv is None or nv is None else nv - bv
            comp.metrics.append(MetricResult(suite, m, bv, nv, delta, lo, hi, verdict, is_gated, thr, failed))
        results.append(comp)
    unknown = [m for m in [*(gated or []), *thresholds] if m not in known]
    if unknown:
        raise CompareError(f"unknown metric {unknown[0]!r}; metrics both sides have: {', '.join(sorted(known))}")
    return results


def failed(results: list[SuiteComparison]) -> bool:
    return any(m.failed for c in results for m in c.metrics)


def to_json(base: Side, new: Side, results: list[SuiteComparison], seed: int) -> str:
    return json.dumps({"base": base.label, "new": new.label, "base_runs": [str(r) for r in base.runs],
                       "new_runs": [str(r) for r in new.runs], "seed": seed,
                       "suites": [asdict(c) for c in results], "failed": failed(results)}, indent=2)


def to_text(base: Side, new: Side, results: list[SuiteComparison]) -> str:
    def f(v: float | None) -> str:
        return "-" if v is None else f"{v:.4g}"

    lines = [f"base: {base.label}" + (f" (mean of {len(base.runs)} seeds)" if len(base.runs) > 1 else ""),
             f"new:  {new.label}" + (f" (mean of {len(new.runs)} seeds)" if len(new.runs) > 1 else "")]
    for c in results:
        lines.append(f"\n{c.suite}: {c.shared} items paired"
                     + (f"; excluded: {c.only_base} only in base, {c.only_new} only in new" if c.only_base or c.only_new else ""))
        for m in c.metrics:
            gate = f" [gate, threshold {m.threshold:g}]" if m.gated else ""
            status = "  REGRESSION" if m.failed else ""
            lines.append(f"  {m.metric:28s} {f(m.base):>9} -> {f(m.new):<9} delta {f(m.delta):>9} "
                         f"95% CI [{f(m.low)}, {f(m.high)}]  {m.verdict}{gate}{status}")
    lines.append("\nresult: " + ("REGRESSION (a gated metric regressed beyond its threshold)" if failed(results)
                                  else "ok (no gated metric regressed beyond its threshold)"))
    return "\n".join(lines) + "\n"


def _num(v: float | None, sign: str = "") -> str:
    return "-" if v is None else f"{v:{sign}.4g}"


def _interval(m: MetricResult) -> str:
    return f"[{_num(m.low)}, {_num(m.high)}]"


def gated_metrics(results: list[SuiteComparison]) -> list[tuple[SuiteComparison, MetricResult]]:
    return [(c, m) for c in results for m in c.metrics if m.gated]


def _side_md(side: Side) -> str:
    return f"`{side.label}`" + (f" (mean of {len(side.runs)} seeds)" if len(side.runs) > 1 else "")


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def summary_line(results: list[SuiteComparison]) -> str:
    """One line: how many gated metrics regressed beyond their threshold (the exit status's reason)."""
    def count(n: int, what: str) -> str:
        return f"{n} {what}{'' if n == 1 else 's'}"

    gated = gated_metrics(results)
    n = sum(m.failed for _, m in gated)
    line = (f"**Result: {count(n, 'regression') if n else 'no regression'}** "
            f"({n} of {count(len(gated), 'gated metric')} regressed beyond the threshold)")
    ungated = sum(m.verdict == "regressed" for c in results for m in c.metrics if not m.gated)
    if ungated:
        line += f"; {count(ungated, 'ungated metric')} regressed (`--format text` lists every metric)"
    return line + "."


def to_markdown(base: Side, new: Side, results: list[SuiteComparison]) -> str:
    """A table for a pull-request comment: a row per gated metric (paired items, base, new, delta,
    95% interval, verdict, gate), then a one-line summary. Written by hand: no table library needed."""
    lines = [f"**selm-bench compare**: base {_side_md(base)}, new {_side_md(new)}", ""]
    gated = gated_metrics(results)
    if gated:
        lines += ["| gated metric | items | base | new | delta | 95% interval | verdict | gate |",
                  "|---|--:|--:|--:|--:|---|---|---|"]
        for c, m in gated:
            gate = ("**FAIL**" if m.failed else "pass") + (f" (threshold {m.threshold:g})" if m.threshold else "")
            cells = [f"{m.suite}/{m.metric}", str(c.shared), _num(m.base), _num(m.new), _num(m.delta, "+"),
                     _interval(m), m.verdict, gate]
            lines.append("| " + " | ".join(_cell(x) for x in cells) + " |")
        lines.append("")
    else:
        lines += ["No gated metric: no suite has items scored on both sides.", ""]
    lines.append(summary_line(results))
    return "\n".join(lines) + "\n"


def escape_data(text: str) -> str:
    """A workflow command's message, escaped as GitHub's toolkit does (`%`, CR, LF)."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """A workflow command's property value: as a message, and also `:` and `,`."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def to_github(base: Side, new: Side, results: list[SuiteComparison]) -> str:
    """GitHub Actions annotations, one per gated metric: `::error` for a gate that failed,
    `::warning` for a significant regression within its threshold, `::notice` otherwise;
    then the markdown table."""
    lines = []
    for c, m in gated_metrics(results):
        key = f"{m.suite}/{m.metric}"
        if m.failed:
            level, title, what = "error", f"Regression: {key}", f"regressed beyond its threshold {m.threshold:g}"
        elif m.verdict == "regressed":
            level, title, what = "warning", f"Regressed within threshold: {key}", f"regressed within its threshold {m.threshold:g}"
        else:
            level, title, what = "notice", f"{m.verdict.capitalize()}: {key}", m.verdict
        message = (f"{key} {what}: {_num(m.base)} -> {_num(m.new)}, delta {_num(m.delta, '+')}, 95% interval "
                   f"{_interval(m)} over {c.shared} paired items (base {base.label}, new {new.label})")
        lines.append(f"::{level} title={escape_property(title)}::{escape_data(message)}")
    return "\n".join(lines) + ("\n\n" if lines else "") + to_markdown(base, new, results)


def append_step_summary(markdown: str, environ: Any = None) -> Path | None:
    """Append the markdown to the file `$GITHUB_STEP_SUMMARY` names (GitHub Actions' job summary),
    when set; returns that file."""
    import os

    target = (os.environ if environ is None else environ).get("GITHUB_STEP_SUMMARY")
    if not target:
        return None
    with open(target, "a", encoding="utf-8") as f:
        f.write(markdown + "\n")
    return Path(target)
