"""Per-suite drill-down sections of the HTML report, read from `evals/<checkpoint>/<suite>/items.jsonl`.

Each suite renders its own section (its registered `drilldown`, in its module under evals/:
tiny-world failures per category, MT-Bench per category with the lowest-rated answers and the
judge's explanation, AlpacaEval losses, BrainTeaser groups, lm-eval per task) with the HTML
helpers of evals/base.py; a suite without one gets `generic`. Sections come in the suites'
registered `order`."""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any

# the HTML helpers a drill-down renders with (the suites' own and `generic`), the report's too
from selm_bench.evals.base import MAX_TEXT, fmt, mean, number, read_items, table, text  # noqa: F401
from selm_bench.harness.core import registry

Item = dict[str, Any]


# ---------------------------------------------------------------- suites
def generic(items: list[Item], folder: Path) -> str:
    scores = [number(i.get("score")) for i in items if number(i.get("score")) is not None]
    return f"<p>{len(items)} items" + (f", mean score {fmt(mean(scores))}" if scores else "") + ".</p>"


def renderer(suite: str) -> Any:
    """The suite's registered drill-down, else `generic`."""
    entry = registry.suite_entry(suite)
    return entry.drilldown if entry and entry.drilldown else generic


def suite_section(suite: str, results: list[tuple[str, Path]], open_last: bool = True) -> str:
    """One suite's drill-down: a collapsible block per checkpoint (the last one open)."""
    base = suite.split(":", 1)[0]
    render = renderer(suite)
    blocks = []
    for n, (checkpoint, folder) in enumerate(results):
        items, note = read_items(folder / "items.jsonl")
        body = render(items, folder) if items else "<p>No per-item records.</p>"
        if note and items:
            body = f'<p class="muted">{escape(note)}</p>' + body
        is_open = " open" if open_last and n == len(results) - 1 else ""
        blocks.append(f"<details{is_open}><summary>{escape(checkpoint)} · {len(items)} items</summary>{body}</details>")
    return f'<h3 id="suite-{escape(base)}">{escape(suite)}</h3>' + "".join(blocks)


def suite_order(suite: str) -> tuple:
    """Sort key: the suite's registered `order`, then its name."""
    entry = registry.suite_entry(suite)
    return (entry.order if entry else registry.DEFAULT_ORDER, suite)


def __getattr__(name: str) -> Any:
    """A suite's renderer under its name with `_` for `-` (`drilldown.mt_bench`: older callers)."""
    for suite in registry.names("suite"):
        if suite.replace("-", "_") == name and registry.entry("suite", suite).drilldown:
            return registry.entry("suite", suite).drilldown
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
