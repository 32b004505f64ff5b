"""`selm-bench report`: one self-contained HTML file (inline CSS, base64 PNGs, no script, nothing
fetched) for a run folder (manifest.json) or a sweep folder (sweep.json): the leaderboard, the
plots, per-suite drill-down (run) or the sweep table and metric-vs-swept-value plots (sweep),
and the provenance (config, package versions, git commit, stages)."""

from __future__ import annotations

import base64
import json
import os
from html import escape
from pathlib import Path
from typing import Any

import yaml

from selm_bench.harness.reports import drilldown, plots
from selm_bench.harness.reports.leaderboard import ID_COLUMNS, collect_rows, columns
from selm_bench.harness.core.store import atomic_write_text

LEAD_TEXT = ["label", "seeds"]  # shown beside the ids
TEXT_COLUMNS = LEAD_TEXT + ["provenance"]  # the provenance last
CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:24px;color:#222;
 max-width:1400px}
h1{font-size:1.5em}h2{border-bottom:2px solid #ddd;padding-bottom:4px;margin-top:2em}h3{margin-top:1.4em}
nav a{margin-right:1em}.muted{color:#777;font-size:.9em}
.scroll{overflow-x:auto}table{border-collapse:collapse;font-size:.85em;margin:.5em 0}
th,td{border:1px solid #ddd;padding:3px 7px;vertical-align:top}th{background:#f3f3f3}
caption{caption-side:bottom;text-align:left;color:#777;font-size:.9em;padding-top:3px}
table.leaderboard td,table.leaderboard th{white-space:nowrap}
table.leaderboard td.num{text-align:right;font-variant-numeric:tabular-nums}
table.leaderboard tbody tr:nth-child(even){background:#fafafa}
table.items td{max-width:420px}.txt{white-space:pre-wrap;word-break:break-word;font-family:monospace;font-size:.95em}
figure{margin:1em 0}figure img{max-width:100%;border:1px solid #eee}figcaption{color:#555;font-size:.9em}
details{margin:.4em 0 .4em 1em}summary{cursor:pointer;font-weight:600}
pre{background:#f7f7f7;padding:8px;overflow-x:auto;font-size:.85em}
"""


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
    grouped under its suite (value ± its interval where the row has one), then label and provenance."""
    if not rows:
        return '<table class="leaderboard"><tbody><tr><td>no results yet</td></tr></tbody></table>'
    cols = columns(rows)
    ids = [c for c in cols if c in ID_COLUMNS]
    texts = [c for c in TEXT_COLUMNS if any(c in r for r in rows)]
    errs = _error_columns(cols)
    metrics = [c for c in cols if c not in ids and c not in texts and c not in set(errs.values())]
    suites: list[tuple[str, list[str]]] = []
    for m in metrics:
        suite = m.split("/", 1)[0] if "/" in m else ""
        if suites and suites[-1][0] == suite:
            suites[-1][1].append(m)
        else:
            suites.append((suite, [m]))
    lead, tail = [c for c in texts if c in LEAD_TEXT], [c for c in texts if c not in LEAD_TEXT]
    top = "".join(f'<th rowspan="2">{escape(c)}</th>' for c in ids + lead)
    top += "".join(f'<th colspan="{len(ms)}">{escape(s)}</th>' for s, ms in suites)
    top += "".join(f'<th rowspan="2">{escape(c)}</th>' for c in tail)
    sub = "".join(f"<th>{escape(m.split('/', 1)[1] if '/' in m else m)}</th>" for _, ms in suites for m in ms)

    def cell(r: dict[str, Any], c: str) -> str:
        v, e = plots.number(r.get(c)), plots.number(r.get(errs.get(c, "")))
        if v is None:
            raw = r.get(c)
            return f"<td>{escape('' if raw is None or isinstance(raw, float) else str(raw))}</td>"
        return f'<td class="num">{v:.4g}' + (f" ± {e:.2g}" if e is not None else "") + "</td>"

    # A label (what is not canonical) is often long and the same on many rows: its cells carry a
    # mark, and each distinct label is written once under the table.
    marks = {t: f"†{k}" for k, t in enumerate(dict.fromkeys(str(r["label"]) for r in rows if r.get("label")), 1)}

    def text_cell(r: dict[str, Any], c: str) -> str:
        v = "" if r.get(c) is None else str(r[c])
        return f"<td>{escape(marks.get(v, v) if c == 'label' else v)}</td>"

    body = ""
    for r in rows:
        body += "<tr>" + "".join(text_cell(r, c) for c in ids + lead)
        body += "".join(cell(r, m) for m in metrics)
        body += "".join(f"<td>{escape(str(r.get(c, '')))}</td>" for c in tail) + "</tr>"
    note = "± std across seeds" if any(e.endswith("_std") for e in errs.values()) else "± standard error"
    legend = "".join(f"<br><span>{m}</span> <span>{escape(t)}</span>" for t, m in marks.items())
    return (f'<table class="leaderboard"><caption>{note} where there is one{legend}</caption>'
            f"<thead><tr>{top}</tr><tr>{sub}</tr></thead><tbody>{body}</tbody></table>")


def leaderboard_page(rows: list[dict[str, Any]], title: str = "selm-bench leaderboard") -> str:
    """A whole self-contained HTML document holding `leaderboard_html(rows)` (for a file of its own)."""
    return _page(title, [("leaderboard", "Leaderboard", f'<div class="scroll">{leaderboard_html(rows)}</div>')])


def headline_tables(rows: list[dict[str, Any]]) -> str:
    """Each suite's headline metric (compact), then every metric in a collapsible block."""
    heads = plots.headline_columns(rows)
    keep = (set(ID_COLUMNS) | set(TEXT_COLUMNS) | set(heads)
            | {e for h in heads for e in (f"{h}_std", *plots.stderr_columns(h))})
    compact = [{k: v for k, v in r.items() if k in keep} for r in rows]
    return (f'<div class="scroll">{leaderboard_html(compact)}</div>'
            f'<details><summary>All metrics</summary><div class="scroll">{leaderboard_html(rows)}</div></details>')


# ---------------------------------------------------------------- pieces
def _page(title: str, sections: list[tuple[str, str, str]]) -> str:
    nav = " ".join(f'<a href="#{sid}">{escape(name)}</a>' for sid, name, _ in sections)
    body = "".join(f'<section id="{sid}"><h2>{escape(name)}</h2>{html}</section>' for sid, name, html in sections)
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{CSS}</style></head>'
            f"<body><h1>{escape(title)}</h1><nav>{nav}</nav>{body}</body></html>\n")


def _figure(png: bytes | None, caption: str) -> str:
    if png is None:
        return ""
    data = base64.b64encode(png).decode("ascii")
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{escape(caption)}">'
            f"<figcaption>{escape(caption)}</figcaption></figure>")


def _kv(pairs: list[tuple[str, Any]]) -> str:
    body = "".join(f"<tr><th>{escape(k)}</th><td>{escape('' if v is None else str(v))}</td></tr>" for k, v in pairs)
    return f'<table class="kv"><tbody>{body}</tbody></table>'


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
    figs = [
        _figure(plots.metric_vs_iteration_plot(rows, start), f"Headline metric per suite vs online iteration "
                f"(iteration 0 = the {start} checkpoint the online methods start from; dashed: checkpoints "
                "without iterations; bars: ± standard error where the suite gives one)"),
        _figure(plots.win_rate_plot(rows), "AlpacaEval win rate per checkpoint ± standard error"),
        _figure(plots.mt_bench_category_plot(rows), "MT-Bench mean rating per category"),
        _figure(plots.training_curves_plot(run_dir), "Training curves from the trainer logs (train_log.json)"),
    ]
    figs_html = "".join(figs) or "<p>No plottable results yet.</p>"
    results = _results(run_dir)
    drill = "".join(drilldown.suite_section(s, results[s]) for s in sorted(results, key=drilldown.suite_order))
    stages = manifest.get("stages") or {}
    done = sum(1 for s in stages.values() if s.get("status") == "done")
    status = "finished" if manifest.get("finished") else "not finished (in progress or interrupted)"
    summary = (f'<p class="muted">{escape(str(run_dir.resolve()))} · {status} · {done}/{len(stages)} stages done'
               f" · commit {escape(str(manifest.get('git_commit') or '?'))[:12]}</p>")
    title = f"selm-bench report: {config.get('name', run_dir.name)}"
    return _page(title, [
        ("leaderboard", "Leaderboard", summary + headline_tables(rows)),
        ("plots", "Plots", figs_html),
        ("drilldown", "Per-suite drill-down", drill or "<p>No suite results yet.</p>"),
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
    packages = [[escape(str(k)), escape(str(v))] for k, v in (manifest.get("packages") or {}).items()]
    stages = [[escape(n), escape(str(s.get("status", ""))), drilldown.fmt(s.get("duration_s")),
               escape(str(s.get("key", ""))), escape(str(s.get("git_commit") or "")[:12]), escape(str(s.get("ended", "")))]
              for n, s in (manifest.get("stages") or {}).items()]
    infos = []
    for f in sorted((run_dir / "checkpoints").glob("**/train_info.json")):
        if any(p.startswith(".") for p in f.relative_to(run_dir).parts):
            continue
        i = _read_json(f) or {}
        infos.append([escape(str(f.parent.relative_to(run_dir))), escape(str(i.get("device", ""))),
                      escape(str(i.get("mixed_precision", ""))), escape(str(i.get("num_processes", ""))),
                      escape(str(i.get("global_batch", ""))), drilldown.fmt(i.get("learning_rate"))])
    return (_kv(facts) + "<h3>Package versions</h3>" + drilldown.table(["package", "version"], packages)
            + "<h3>Stages</h3>" + drilldown.table(["stage", "status", "seconds", "key", "commit", "ended"], stages)
            + ("<h3>Training setup</h3>" + drilldown.table(
                ["checkpoint", "device", "mixed precision", "processes", "global batch", "learning rate"], infos)
               if infos else "")
            + "<h3>config.yaml</h3>" + (f"<pre>{escape(config_text)}</pre>" if config_text else "<p>none</p>"))


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
    figs = "".join(_figure(plots.sweep_plot(cells, p, heads),
                           f"Headline metrics vs {p} (each method's last checkpoint; mean over seeds ± std across "
                           "seeds; with one seed ± the metric's standard error where it has one)") for p in grid)
    intro = _kv([("config", sweep.get("config")), ("grid", json.dumps(grid)), ("seeds", ", ".join(map(str, seeds))),
                 ("cells", f"{len(cells)} ({sum(c['status'] == 'finished' for c in cells)} finished, "
                           f"{sum(c['status'] == 'not run' for c in cells)} not run)"),
                 ("folder", str(sweep_dir.resolve()))])
    table = headline_tables(rows)
    if len(seeds) > 1:
        table = (f"<h3>Mean ± std across seeds</h3>{headline_tables(seed_means([c for c in cells if c['rows']]))}"
                 f"<h3>Every cell</h3>{table}")
    cell_rows = []
    for c in cells:
        report = c["dir"] / "report.html"
        link = (f'<a href="{escape(Path(os.path.relpath(report.resolve(), out.resolve().parent)).as_posix())}">report</a>'
                if report.is_file() else "")
        cell_rows.append([escape(c["name"]), escape(json.dumps(c["params"])), escape(str(c["seed"])),
                          escape(c["status"]), escape(str(c["commit"] or "")[:12]), link])
    cells_html = drilldown.table(["cell", "params", "seed", "status", "commit", "cell report"], cell_rows)
    return _page(f"selm-bench sweep report: {sweep_dir.name}", [
        ("sweep", "Sweep", intro),
        ("leaderboard", "Sweep table", table),
        ("plots", "Plots", figs or "<p>No plottable results yet.</p>"),
        ("cells", "Cells", cells_html),
    ])
