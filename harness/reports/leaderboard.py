"""Leaderboard: one row per checkpoint, one `<suite>/<metric>` column per metric.

Rows come from every suite `metrics.json` in a run directory; a folder of runs gives one
table with a `run` column. Every row says where it comes from (`provenance`: run, config hash
and commit, or the source of a published number) and which of its numbers are not the
canonical benchmark (`label`: the tiny world's questions, an oracle or local judge), so a
tiny-world "mt-bench/score" cannot pass for a real MT-Bench score.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from pathlib import Path
from typing import Any

from selm_bench.harness.core import registry
from selm_bench.harness.core.store import atomic_write_text

METHOD_ORDER = ["sft", "dpo", "iterative-dpo", "selm"]
ID_COLUMNS = ["run", "checkpoint", "method", "iteration"]
INFO_COLUMNS = ["provenance", "label"]
MARK = "†"  # beside a number that is not the canonical benchmark's (its row's label says why)
REFERENCE_DIR = Path(__file__).resolve().parents[2] / "results" / "reference"


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


def suite_label(data: dict[str, Any]) -> list[str]:
    """Why a suite result is not the canonical benchmark (empty when it is)."""
    entry, info = registry.suite_entry(suite_column(data["suite"])), data.get("info") or {}
    judge = info.get("judge") if isinstance(info.get("judge"), dict) else {}
    judge_model = judge.get("model") or info.get("annotator")
    reasons = []
    tasks = info.get("tasks") or []
    if ((entry and entry.tiny) or info.get("mode") == "tiny" or judge_model == "oracle"
            or any(str(t).startswith("tinyworld") for t in tasks)):
        reasons.append("tiny world")
    # the judges the published numbers use (the suite's `canonical_judges`); anything else is labelled
    if entry and entry.canonical_judges and judge_model and judge_model not in entry.canonical_judges:
        reasons.append(f"{judge_model} judge")
    # what the suite itself says makes it not canonical: a subset, a judge at another endpoint, no LC, local tasks
    reasons += [r for r in info.get("not_canonical") or [] if r not in reasons]
    return reasons


def run_provenance(run_dir: Path, stage_record: Path | None = None) -> str:
    """`run <folder> · config <hash> · commit <sha>`: the config.yaml's hash, and the commit the
    result's own stage ran at (its stage.json; a rerun that skips the stage keeps it), else the run's."""
    import hashlib

    rec = json.loads(stage_record.read_text()) if stage_record and stage_record.is_file() else {}
    if not rec.get("git_commit") and is_run_dir(run_dir):
        rec = json.loads((run_dir / "manifest.json").read_text())
    cfg = run_dir / "config.yaml"
    parts = [f"run {run_dir.name}"]
    if cfg.is_file():
        parts.append(f"config {hashlib.sha256(cfg.read_bytes()).hexdigest()[:10]}")
    if rec.get("git_commit"):
        parts.append(f"commit {rec['git_commit'][:8]}" + ("+dirty" if rec.get("git_dirty") else ""))
    return " · ".join(parts)


def _run_rows(run_dir: Path) -> list[dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    labels: dict[str, dict[str, str]] = {}
    for f in _result_files(run_dir):
        data = json.loads(f.read_text())
        if "suite" not in data or "checkpoint" not in data:
            continue  # not a suite result (e.g. a library's own metrics file)
        ckpt = data["checkpoint"]
        method, iteration = parse_checkpoint(ckpt)
        row = rows.setdefault(ckpt, {"checkpoint": ckpt, "method": data.get("method", method),
                                     "iteration": data.get("iteration", iteration),
                                     "provenance": (data.get("info") or {}).get("source")
                                     or run_provenance(run_dir, f.parent / "stage.json")})
        for reason in suite_label(data):
            labels.setdefault(ckpt, {}).setdefault(reason, []).append(suite_column(data["suite"]))
        for k, v in data["metrics"].items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                row[f"{suite_column(data['suite'])}/{k}"] = float(v)
    for ckpt, by_reason in labels.items():  # e.g. "tiny world (mt-bench, tiny-world); oracle judge (mt-bench)"
        rows[ckpt]["label"] = "; ".join(f"{reason} ({', '.join(sorted(suites))})" for reason, suites in by_reason.items())

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


def published_rows(reference_dir: Path = REFERENCE_DIR) -> list[dict[str, Any]]:
    """The paper's published rows (`published.csv`) and, for their base models, the rows each suite
    publishes itself (its registered `published`: AlpacaEval 2.0's leaderboard in the installed
    alpaca_eval package, GPT-4 Turbo annotator)."""
    rows: list[dict[str, Any]] = []
    bases: list[str] = []
    with open(reference_dir / "published.csv", newline="") as f:
        for rec in csv.DictReader(f):
            row: dict[str, Any] = {"run": "published", "checkpoint": rec["model"], "method": rec["method"],
                                   "iteration": int(rec["iteration"]) if rec["iteration"] else None,
                                   "provenance": f"published: {rec['source'].removeprefix('https://')}"}
            for k, v in rec.items():
                if "/" in k and v:
                    row[k] = float(v)
            rows.append(row)
            bases.append(rec["base"])
    for suite in registry.suites():
        if suite.published:
            rows += suite.published(list(dict.fromkeys(bases)))
    return rows


def columns(rows: list[dict[str, Any]], lead: list[str] | None = None, files: bool = False) -> list[str]:
    """Id columns, metrics, then provenance and label: in the files (`files`) always, empty where
    canonical, so a script can rely on them; elsewhere only where some row has them."""
    lead = [c for c in (lead or []) if any(c in r for r in rows)]
    ids = [c for c in ID_COLUMNS if any(c in r for r in rows) and c not in lead]
    info = [c for c in INFO_COLUMNS if (files and rows) or any(c in r for r in rows)]
    metrics = sorted({k for r in rows for k in r if k not in ID_COLUMNS and k not in INFO_COLUMNS and k not in lead})
    return lead + ids + metrics + info


def flagged(row: dict[str, Any], metric: str) -> bool:
    """Whether the row's `metric` is a number its label names the suite of (not the canonical benchmark's)."""
    return row.get(metric) is not None and metric.split("/", 1)[0] in re.findall(r"[\w-]+", row.get("label") or "")


def _clean(v: Any) -> Any:
    return None if isinstance(v, float) and math.isnan(v) else v


# The files and the markdown are written with the standard library, not pandas: `leaderboard` answers
# in well under a second and pandas' import alone takes about half of one (DataFrame.to_csv gives the
# same CSV bytes; its JSON and markdown writers do not give these files' format).
def to_json(rows: list[dict[str, Any]]) -> str:
    cols = columns(rows, files=True)
    return json.dumps([{c: _clean(r.get(c)) for c in cols} for r in rows], indent=2)


def to_csv(rows: list[dict[str, Any]], lead: list[str] | None = None) -> str:
    buf = io.StringIO()
    cols = columns(rows, lead, files=True)
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({c: ("" if _clean(r.get(c)) is None else r.get(c)) for c in cols})
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


def collect_many(paths: list[Path], published: bool = True) -> list[dict[str, Any]]:
    """Rows of several run folders / folders of runs (each row names its run), then the published rows."""
    rows: list[dict[str, Any]] = []
    for path in paths:
        if (Path(path) / "sweep.json").is_file():
            rows += sweep_rows(Path(path))
            continue
        found = collect_rows(path)
        rows += [r if "run" in r else {"run": Path(path).name, **r} for r in found]
    return rows + (published_rows() if published else [])


def sweep_rows(sweep_dir: Path) -> list[dict[str, Any]]:
    """A sweep's rows: per grid point and checkpoint, each metric's mean over seeds with
    `<metric>_std` (its spread across seeds), from the sweep's summary.json."""
    summary = sweep_dir / "summary.json"
    if not summary.is_file():
        raise FileNotFoundError(f"{sweep_dir}: the sweep has no summary.json yet (rerun `selm-bench sweep` to finish it)")
    params = list(json.loads((sweep_dir / "sweep.json").read_text())["grid"])
    rows = []
    for r in json.loads(summary.read_text()):
        point = ",".join(f"{p}={r[p]}" for p in params)
        row = {k: v for k, v in r.items() if k not in params and k != "n_seeds"}
        row.update(run=f"{sweep_dir.name}[{point}]", provenance=f"sweep {sweep_dir.name} · {point} · "
                   f"mean of {r['n_seeds']} seed(s), ± std across seeds")
        rows.append(row)
    return rows


def suites_of(rows: list[dict[str, Any]]) -> list[str]:
    return list(dict.fromkeys(c.split("/", 1)[0] for c in columns(rows) if "/" in c))


def headline_columns(rows: list[dict[str, Any]]) -> list[str]:
    """One column per suite: its registered headline metric; where some rows lack it (AlpacaEval's
    LC win rate without the length model, lm-eval without a preset average) also the metric they have."""
    present = set(columns(rows))
    out = []
    for suite in suites_of(rows):
        mine = [c for c in columns(rows) if c.startswith(f"{suite}/") and not c.endswith(("_stderr", "_std"))]
        head = f"{suite}/{registry.entry('suite', suite).headline}" if registry.has("suite", suite) else None
        if head in present:
            out.append(head)
        missing = [r for r in rows if any(c.startswith(f"{suite}/") for c in r) and r.get(head) is None]
        if missing:
            fallback = next((c for c in (f"{suite}/win_rate", f"{suite}/score", f"{suite}/accuracy", *mine)
                             if c in present and c != head and any(r.get(c) is not None for r in missing)), None)
            if fallback:
                out.append(fallback)
    return out


# Formats a script reads: every metric by default (standard errors, counts, per-turn scores), the
# compact headline view being the terminal's (and markdown's, html's) default.
MACHINE_FORMATS = ("json", "csv")


def select_columns(rows: list[dict[str, Any]], suite: str | None = None, metrics: list[str] | None = None,
                   show_all: bool = False, fmt: str | None = None) -> list[str]:
    """The metric columns to show: named ones, a suite's all, everything (`show_all`, or a machine
    format `fmt`), or the compact headlines."""
    cols = [c for c in columns(rows) if "/" in c and not c.endswith(("_stderr", "_std"))]
    if metrics:
        unknown = [m for m in metrics if m not in cols]
        if unknown:
            raise ValueError(f"--metric {unknown[0]}: no such column; columns: {', '.join(cols)}")
        return list(metrics)
    if suite:
        mine = [c for c in cols if c.split("/", 1)[0] == suite_column(suite)]
        if not mine:
            raise ValueError(f"--suite {suite}: no results; suites: {', '.join(suites_of(rows))}")
        return mine
    return cols if show_all or fmt in MACHINE_FORMATS else headline_columns(rows)


def sort_rows(rows: list[dict[str, Any]], metric: str) -> list[dict[str, Any]]:
    """Best first on `metric` (higher is better); rows without it last."""
    if not any(metric in r for r in rows):
        raise ValueError(f"--sort {metric}: no such column")
    return sorted(rows, key=lambda r: (r.get(metric) is None, -(r.get(metric) or 0.0)))


def restrict(rows: list[dict[str, Any]], metric_cols: list[str]) -> list[dict[str, Any]]:
    """Rows cut to their ids, info and the chosen metrics with their standard errors (machine formats)."""
    keep = (set(ID_COLUMNS) | set(INFO_COLUMNS) | set(metric_cols) | {f"{m}_stderr" for m in metric_cols}
            | {f"{m}_std" for m in metric_cols})
    return [{k: v for k, v in r.items() if k in keep} for r in rows if any(r.get(m) is not None for m in metric_cols)]


def print_table(rows: list[dict[str, Any]], title: str = "leaderboard", metric_cols: list[str] | None = None) -> None:
    """One rich table on stderr: a row per checkpoint, the chosen metric columns (default: each
    suite's headline) with ± a 95% interval (1.96 standard errors) where the suite gives one,
    and the row's label (what is not canonical) and provenance."""
    from rich.markup import escape
    from rich.table import Table

    from selm_bench.harness.core.progress import console

    if not rows:
        console.print(f"{title}: no results yet")
        return
    metric_cols = metric_cols if metric_cols is not None else headline_columns(rows)
    shown = [r for r in rows if any(r.get(m) is not None for m in metric_cols)]
    labels = [f"{r['run']}:{r['checkpoint']}" if "run" in r else str(r["checkpoint"]) for r in shown]

    def cell(r: dict[str, Any], m: str) -> str:
        v, se, sd = r.get(m), r.get(f"{m}_stderr"), r.get(f"{m}_std")
        if isinstance(sd, float) and v is not None:  # a sweep row: the spread across seeds
            text = _fmt(v) + f" ±{sd:.2g} sd"
        else:
            text = _fmt(v) + (f" ±{1.96 * se:.2g}" if isinstance(se, float) and v is not None and se > 0 else "")
        return text + (f" {MARK}" if flagged(r, m) else "")

    table = Table(title=escape(title), caption="±: 95% interval (1.96 × the suite's standard error); ± sd: std across seeds   "
                                       f"{MARK}: not the canonical benchmark (see 'not canonical')")
    table.add_column("checkpoint", no_wrap=True)
    for m in metric_cols:
        table.add_column(m, justify="right")
    table.add_column("not canonical", overflow="fold")
    table.add_column("provenance", overflow="fold")
    for label, r in zip(labels, shown):
        short = re.sub(r" \([^)]*\)", "", r.get("label") or "")  # the suites it applies to carry the †
        table.add_row(*(escape(x) for x in (label, *[cell(r, m) for m in metric_cols], short, r.get("provenance") or "")))
    console.print(table)
