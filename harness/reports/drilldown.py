"""Per-suite drill-down sections of the HTML report, read from `evals/<checkpoint>/<suite>/items.jsonl`.

Each suite renders its own section (its registered `drilldown`, in its module under evals/:
tiny-world failures per category, MT-Bench per category with the lowest-rated answers and the
judge's explanation, AlpacaEval losses, BrainTeaser groups, lm-eval per task) from its own template in
evals/templates/<suite>.html with the HTML helpers of evals/base.py (jinja2, autoescaped);
a suite without one gets `generic`. Sections come in the suites' registered `order`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

# the HTML helpers a drill-down renders with (the suites' own and `generic`), the report's too
from selm_bench.evals.base import MAX_TEXT, fmt, mean, number, read_items, render, table, templates, text  # noqa: F401
from selm_bench.harness.core import registry

Item = dict[str, Any]


# ---------------------------------------------------------------- suites
def generic(items: list[Item], folder: Path) -> str:
    scores = [number(i.get("score")) for i in items if number(i.get("score")) is not None]
    return render("drilldown/generic.html", n=len(items), mean=mean(scores))


def renderer(suite: str) -> Any:
    """The suite's registered drill-down, else `generic`."""
    entry = registry.suite_entry(suite)
    return entry.drilldown if entry and entry.drilldown else generic


def suite_section(suite: str, results: list[tuple[str, Path]], open_last: bool = True) -> str:
    """One suite's drill-down: a collapsible block per checkpoint (the last one open). A suite's
    `drilldown` returns HTML (a plug-in's may be a plain str): it goes in as it is."""
    from markupsafe import Markup

    draw = renderer(suite)
    blocks = []
    for n, (checkpoint, folder) in enumerate(results):
        items, note = read_items(folder / "items.jsonl")
        blocks.append({"checkpoint": checkpoint, "n": len(items), "open": open_last and n == len(results) - 1,
                       "note": note if items else None,
                       "body": Markup(draw(items, folder)) if items else None})
    return render("drilldown/section.html", suite=suite, base=suite.split(":", 1)[0], blocks=blocks)


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
