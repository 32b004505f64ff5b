"""`selm-bench report`: one self-contained HTML file (inline CSS, base64 PNGs, no script, nothing
fetched) for a run folder (manifest.json) or a sweep folder (sweep.json): the leaderboard, the
plots, per-suite drill-down (run) or the sweep table and metric-vs-swept-value plots (sweep),
and the provenance (config, package versions, git commit, stages)."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

import yaml

from selm_bench.harness.reports import drilldown, plots
from selm_bench.harness.reports.drilldown import fmt, render
from selm_bench.harness.reports.leaderboard import ID_COLUMNS, MARK, collect_rows, columns, flagged
from selm_bench.harness.core.store import atomic_write_text

# The page's HTML comes from the jinja2 templates in harness/reports/templates (autoescaped: text
# from result files is escaped wherever it lands); its CSS is templates/report.css, inlined.
LEAD_TEXT = ["seeds"]  # shown beside the ids
TAIL_TEXT = ["provenance"]  # last
TEXT_COLUMNS = LEAD_TEXT + TAIL_TEXT + ["label"]  # the label: a mark on the cells it applies to


# ---------------------------------------------------------------- entry point
def write_report(target: Path, output: Path | None = None) -> Path:
    """Write the report of a run or sweep folder to `output` (default `target/report.html`)."""
    target = Path(target)
    if not target.is_dir():
        raise FileNotFoundError(f"{target}: no such folder")
    out = Path(output) if output is not None else target / "report.html"
    if (target / "sweep.json").is_file():
        html = sweep_page(target, out)
    elif (target / "manifest.json").is_file():
        html = run_page(target)
    else:
        raise ValueError(f"{target}: not a run folder (no manifest.json) nor a sweep folder (no sweep.json)")
    atomic_write_text(out, html)
    return out


# ---------------------------------------------------------------- leaderboard
def _error_columns(cols: list[str]) -> dict[str, str]:
    """Metric column -> the column holding its interval (std across seeds, else standard error)."""
    present = set(cols)
    out = {}
    for c in cols:
        err = next((e for e in (f"{c}_std", *plots.stderr_columns(c)) if e in present and e != c), None)
        if err:
            out[c] = err
    return out


def leaderboard_html(rows: list[dict[str, Any]]) -> str:
    """Leaderboard rows as a `<table class="leaderboard">`: id columns, one column per metric
    grouped under its suite (value ± its interval where the row has one), then provenance. What is
    not canonical (a row's label, often long and the same on many rows) is no column: the cells it
    applies to (the suites it names, as in the terminal's table; else the checkpoint) carry a mark
    (†, or †1, †2... for several labels) and each distinct label is written once under the table."""
    if not rows:
        return render("leaderboard.html", rows=[])
    cols = columns(rows)
    ids = [c for c in cols if c in ID_COLUMNS]
    lead, tail = ([c for c in cs if any(c in r for r in rows)] for cs in (LEAD_TEXT, TAIL_TEXT))
    errs = _error_columns(cols)
    metrics = [c for c in cols if c not in ids and c not in TEXT_COLUMNS and c not in set(errs.values())]
    suites: list[tuple[str, list[str]]] = []
    for m in metrics:
        suite = m.split("/", 1)[0] if "/" in m else ""
        if suites and suites[-1][0] == suite:
            suites[-1][1].append(m.split("/", 1)[1] if "/" in m else m)
        else:
            suites.append((suite, [m.split("/", 1)[1] if "/" in m else m]))
    labels = list(dict.fromkeys(str(r["label"]) for r in rows if r.get("label")))
    marks = {t: MARK if len(labels) == 1 else f"{MARK}{k}" for k, t in enumerate(labels, 1)}

    def cell(r: dict[str, Any], c: str, mark: str) -> dict[str, Any]:
        v, e = plots.number(r.get(c)), plots.number(r.get(errs.get(c, "")))
        if v is None:
            raw = r.get(c)
            return {"text": "" if raw is None or isinstance(raw, float) else str(raw), "num": False,
                    "mark": mark if mark and flagged(r, c) else ""}
        return {"text": f"{v:.4g}" + (f" ± {e:.2g}" if e is not None else ""), "num": True,
                "mark": mark if mark and flagged(r, c) else ""}

    body = []
    for r in rows:
        mark = marks.get(str(r.get("label") or ""), "")
        values = [cell(r, m, mark) for m in metrics]
        first = [{"text": "" if r.get(c) is None else str(r[c]), "num": False, "mark": ""} for c in ids + lead]
        if mark and not any(v["mark"] for v in values):  # the label names no shown suite: the row is marked
            first[ids.index("checkpoint") if "checkpoint" in ids else 0]["mark"] = mark
        body.append(first + values + [{"text": str(r.get(c, "")), "num": False, "mark": ""} for c in tail])
    interval = "± std across seeds" if any(e.endswith("_std") for e in errs.values()) else "± standard error"
    return render("leaderboard.html", ids=ids, lead=lead, tail=tail, suites=suites, rows=body,
                  interval=interval, notes=[(m, t) for t, m in marks.items()])


def leaderboard_page(rows: list[dict[str, Any]], title: str = "selm-bench leaderboard") -> str:
    """A whole self-contained HTML document holding `leaderboard_html(rows)` (for a file of its own)."""
    return _page(title, [("leaderboard", "Leaderboard", render("headline.html", compact=leaderboard_html(rows), full=None))])


def headline_tables(rows: list[dict[str, Any]]) -> str:
    """Each suite's headline metric (compact), then every metric in a collapsible block."""
    heads = plots.headline_columns(rows)
    keep = (set(ID_COLUMNS) | set(TEXT_COLUMNS) | set(heads)
            | {e for h in heads for e in (f"{h}_std", *plots.stderr_columns(h))})
    compact = [{k: v for k, v in r.items() if k in keep} for r in rows]
    return render("headline.html", compact=leaderboard_html(compact), full=leaderboard_html(rows))


# ---------------------------------------------------------------- pieces
def _page(title: str, sections: list[tuple[str, str, str]]) -> str:
    """The document: `sections` are (id, name, HTML)."""
    return render("page.html", title=title, sections=sections)


def _macros() -> Any:
    return drilldown.templates().get_template("macros.html").module


def _figures(figures: list[tuple[bytes | None, str]]) -> str:
    """The plots that have something to draw (PNG, caption), else a line saying there are none."""
    return render("figures.html", figures=[(base64.b64encode(png).decode("ascii"), c) for png, c in figures if png])


def _kv(pairs: list[tuple[str, Any]]) -> str:
    return _macros().kv(pairs)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None


def _config(run_dir: Path) -> tuple[dict[str, Any], str]:
    f = run_dir / "config.yaml"
    if not f.is_file():
        return {}, ""
    raw = f.read_text()
    loaded = yaml.safe_load(raw)
    return (loaded if isinstance(loaded, dict) else {}), raw


def _results(run_dir: Path) -> dict[str, list[tuple[str, Path]]]:
    """{suite: [(checkpoint, suite folder)]} from the manifest's result list (else every
    metrics.json outside temp folders)."""
    listed = (_read_json(run_dir / "manifest.json") or {}).get("results")
    files = ([run_dir / r / "metrics.json" for r in listed] if listed is not None
             else sorted(run_dir.glob("evals/**/metrics.json")))
    out: dict[str, list[tuple[str, Path]]] = {}
    for f in files:
        if not f.is_file() or any(p.startswith(".") for p in f.relative_to(run_dir).parts):
            continue
        data = _read_json(f)
        if isinstance(data, dict) and "suite" in data and "checkpoint" in data:
            out.setdefault(str(data["suite"]), []).append((str(data["checkpoint"]), f.parent))
    return out


# ---------------------------------------------------------------- run
def run_page(run_dir: Path) -> str:
    manifest = _read_json(run_dir / "manifest.json") or {}
    config, config_text = _config(run_dir)
    rows = collect_rows(run_dir)
    start = (config.get("online") or {}).get("start", "dpo")
    figs = _figures([
        (plots.metric_vs_iteration_plot(rows, start), f"Headline metric per suite vs online iteration "
         f"(iteration 0 = the {start} checkpoint the online methods start from; dashed: checkpoints "
         "without iterations; bars: ± standard error where the suite gives one)"),
        (plots.win_rate_plot(rows), "AlpacaEval win rate per checkpoint ± standard error"),
        (plots.mt_bench_category_plot(rows), "MT-Bench mean rating per category"),
        (plots.training_curves_plot(run_dir), "Training curves from the trainer logs (train_log.json)"),
    ])
    results = _results(run_dir)
    drill = [drilldown.suite_section(s, results[s]) for s in sorted(results, key=drilldown.suite_order)]
    stages = manifest.get("stages") or {}
    summary = render("run.html", folder=run_dir.resolve(), done=sum(s.get("status") == "done" for s in stages.values()),
                     total=len(stages), commit=str(manifest.get("git_commit") or "?")[:12],
                     status="finished" if manifest.get("finished") else "not finished (in progress or interrupted)",
                     tables=headline_tables(rows))
    title = f"selm-bench report: {config.get('name', run_dir.name)}"
    return _page(title, [
        ("leaderboard", "Leaderboard", summary),
        ("plots", "Plots", figs),
        ("drilldown", "Per-suite drill-down", render("sections.html", sections=drill, empty="No suite results yet.")),
        ("provenance", "Provenance", provenance_html(run_dir, manifest, config_text)),
    ])


def provenance_html(run_dir: Path, manifest: dict[str, Any], config_text: str) -> str:
    """Run facts, package versions, each stage's record, each checkpoint's training setup, config.yaml."""
    dirty = manifest.get("git_dirty")
    facts = [("git commit", f"{manifest.get('git_commit')}" + (" (uncommitted changes)" if dirty else "")),
             ("seed", manifest.get("seed")), ("python", manifest.get("python")),
             ("command", " ".join(map(str, manifest.get("command") or []))),
             ("created", manifest.get("created")), ("started", manifest.get("started")),
             ("finished", manifest.get("finished"))]
    if manifest.get("kept_stale"):
        facts.append(("kept stale", ", ".join(map(str, manifest["kept_stale"]))))
    packages = [[k, v] for k, v in (manifest.get("packages") or {}).items()]
    stages = [[n, s.get("status", ""), fmt(s.get("duration_s")), s.get("key", ""), str(s.get("git_commit") or "")[:12],
               s.get("ended", "")] for n, s in (manifest.get("stages") or {}).items()]
    infos = []
    for f in sorted((run_dir / "checkpoints").glob("**/train_info.json")):
        if any(p.startswith(".") for p in f.relative_to(run_dir).parts):
            continue
        i = _read_json(f) or {}
        infos.append([f.parent.relative_to(run_dir), i.get("device", ""), i.get("mixed_precision", ""),
                      i.get("num_processes", ""), i.get("global_batch", ""), fmt(i.get("learning_rate"))])
    return render("provenance.html", facts=facts, packages=packages, stages=stages, infos=infos, config_text=config_text)


# ---------------------------------------------------------------- sweep
def read_sweep(sweep_dir: Path) -> dict[str, Any]:
    """sweep.json, checked: {"config", "grid": {key: [values]}, "seeds": [...], "cells": [{name, dir, params, seed}]}."""
    path = sweep_dir / "sweep.json"
    data = _read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("cells"), list) or not isinstance(data.get("grid", {}), dict):
        raise ValueError(f"{path}: expected an object with a 'cells' list and a 'grid' mapping")
    for n, c in enumerate(data["cells"]):
        if not isinstance(c, dict) or not isinstance(c.get("dir"), str) or not isinstance(c.get("params", {}), dict):
            raise ValueError(f"{path}: cells[{n}]: expected an object with a 'dir' path and a 'params' mapping")
    return data


def sweep_cells(sweep_dir: Path, sweep: dict[str, Any]) -> list[dict[str, Any]]:
    """Each cell with its folder, status and leaderboard rows (none while it has no manifest)."""
    cells = []
    for c in sweep["cells"]:
        folder = sweep_dir / c["dir"]
        ran = (folder / "manifest.json").is_file()
        manifest = _read_json(folder / "manifest.json") if ran else {}
        name = str(c.get("name") or c["dir"])
        rows = [{"run": name, **r} for r in collect_rows(folder)] if ran else []
        status = "not run" if not ran else "finished" if manifest.get("finished") else "not finished"
        cells.append({"name": name, "dir": folder, "params": c.get("params", {}), "seed": c.get("seed"),
                      "rows": rows, "status": status, "commit": manifest.get("git_commit")})
    return cells


def seed_means(cells: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (parameter setting, checkpoint): each metric's mean and `<metric>_std` over seeds
    (the sweep's own `summarize`), with `run` = the setting, `seeds` = how many, and the label."""
    from selm_bench.harness.run.sweep import summarize

    params = list(dict.fromkeys(k for c in cells for k in c["params"]))
    rows = [{**c["params"], "seed": c["seed"], **r} for c in cells for r in c["rows"]]
    point = lambda r: ",".join(f"{p}={r.get(p)}" for p in params) or "(defaults)"
    labels = {(point(r), r["checkpoint"]): r["label"] for r in rows if r.get("label")}
    out = []
    for s in summarize(rows, params):
        row = {"run": point(s), **{k: v for k, v in s.items() if k not in params and k != "n_seeds"},
               "seeds": str(s["n_seeds"])}
        if (point(s), s["checkpoint"]) in labels:
            row["label"] = labels[(point(s), s["checkpoint"])]
        out.append(row)
    return out


def sweep_page(sweep_dir: Path, out: Path) -> str:
    sweep = read_sweep(sweep_dir)
    cells = sweep_cells(sweep_dir, sweep)
    rows = [r for c in cells for r in c["rows"]]
    grid = sweep.get("grid") or {}
    seeds = sweep.get("seeds") or sorted({c["seed"] for c in cells if c["seed"] is not None})
    heads = plots.headline_columns(rows)
    figs = _figures([(plots.sweep_plot(cells, p, heads),
                      f"Headline metrics vs {p} (each method's last checkpoint; mean over seeds ± std across "
                      "seeds; with one seed ± the metric's standard error where it has one)") for p in grid])
    intro = _kv([("config", sweep.get("config")), ("grid", json.dumps(grid)), ("seeds", ", ".join(map(str, seeds))),
                 ("cells", f"{len(cells)} ({sum(c['status'] == 'finished' for c in cells)} finished, "
                           f"{sum(c['status'] == 'not run' for c in cells)} not run)"),
                 ("folder", str(sweep_dir.resolve()))])
    means = headline_tables(seed_means([c for c in cells if c["rows"]])) if len(seeds) > 1 else None
    table = render("sweep_table.html", means=means, cells=headline_tables(rows))
    cell_rows = []
    for c in cells:
        report = c["dir"] / "report.html"
        link = Path(os.path.relpath(report.resolve(), out.resolve().parent)).as_posix() if report.is_file() else None
        cell_rows.append({"name": c["name"], "params": json.dumps(c["params"]), "seed": c["seed"], "status": c["status"],
                          "commit": str(c["commit"] or "")[:12], "link": link})
    return _page(f"selm-bench sweep report: {sweep_dir.name}", [
        ("sweep", "Sweep", intro),
        ("leaderboard", "Sweep table", table),
        ("plots", "Plots", figs),
        ("cells", "Cells", render("sweep_cells.html", cells=cell_rows)),
    ])
