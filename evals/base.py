"""The suite interface: an EvalContext in, a SuiteResult out (simple-evals style).

Three kinds of suite fit it: generation + judge (mt-bench), pairwise against reference
outputs (alpaca-eval), and log-likelihood multiple choice (lm-eval, brainteaser).

Options: each suite declares a pydantic model next to its function (`register_suite(...,
options=Model)`); the model is the one place that holds option names, types and defaults.
Suites read `ctx.option(key)`, never with a default of their own.

The rest of what a suite owns (harness/core/registry.py `Suite`) it registers with its function;
helpers for those hooks live here: `judged_plan` (a judged suite's `plan` estimate) and the
HTML helpers a `drilldown` renders with (`render`, `table`, `text`, `fmt`, `number`, `read_items`).
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from selm_bench.harness.core import registry


class SuiteError(RuntimeError):
    """A suite cannot run as configured (missing data, bad option): one clear line."""


OPENAI_API = "https://api.openai.com"  # where the published numbers' GPT-4 judges were reached


def not_canonical(*, n: int | None = None, of: int | None = None, what: str = "items",
                  judge_base_url: str | None = None) -> list[str]:
    """Reasons a result is not the canonical benchmark, for a suite's `info["not_canonical"]` (the
    leaderboard's label): a subset of the canonical items ("3/80 questions"), or a judge reached at
    another endpoint than OpenAI's API (its base URL is named; a key never is)."""
    reasons = []
    if n is not None and of is not None and n < of:
        reasons.append(f"{n}/{of} {what}")
    if judge_base_url and not judge_base_url.rstrip("/").startswith(OPENAI_API):
        reasons.append(f"judge at {judge_base_url}")
    return reasons


def check_items(suite: str, items: list[dict[str, Any]]) -> None:
    """The contract `compare` pairs runs on: every record of items.jsonl has a stable `id`, unique
    within the suite's result, and a numeric `score` (higher is better; None when not scored yet)."""
    seen: set[str] = set()
    for i, item in enumerate(items):
        if "id" not in item or "score" not in item:
            raise SuiteError(f"{suite}: item {i} lacks {'id' if 'id' not in item else 'score'}")
        key = str(item["id"])
        if key in seen:
            raise SuiteError(f"{suite}: item id {key!r} is not unique")
        seen.add(key)
        score = item["score"]
        if score is not None and (isinstance(score, bool) or not isinstance(score, (int, float))):
            raise SuiteError(f"{suite}: item {key!r} has a non-numeric score {score!r}")


def validated_options(suite: str, raw: dict[str, Any] | None) -> dict[str, Any]:
    """`raw` checked against the suite's options model, every option present with defaults filled
    in, as plain JSON values (what metrics.json records). Raises pydantic's ValidationError on an
    unknown key or a bad value, SuiteError for a suite without an options model."""
    model = registry.suite_options(suite)
    if model is None:
        raise SuiteError(f"unknown suite {suite!r}: it has no options model")
    return model.model_validate(raw or {}).model_dump(mode="json")


def validation_message(suite: str, err: Any) -> str:
    """A pydantic ValidationError as `<suite>.<option>: <message>` lines (one per error)."""
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e.get("loc", ()))
        lines.append(f"{suite}.{loc}: {e.get('msg', 'invalid')}" if loc else f"{suite}: {e.get('msg', 'invalid')}")
    return "; ".join(lines)


@dataclass
class EvalContext:
    model: str  # local checkpoint path or hub id
    name: str  # row label in the leaderboard (checkpoint name)
    out_dir: Path  # this suite's folder: <eval dir>/<suite>/
    options: dict[str, Any] = field(default_factory=dict)  # suite options, after --set overrides
    preset: str | None = None  # "openllm" in "lm-eval:openllm"
    data_dir: Path | None = None  # local mirror of the canonical data (see docs/suites.md)
    world_dir: Path | None = None  # the tiny world's data, when running the embedded default
    backend: str = "hf"
    backend_options: dict[str, Any] = field(default_factory=dict)
    judge: str | None = None
    judge_options: dict[str, Any] = field(default_factory=dict)
    no_judge: bool = False  # generate and save answers only
    device: str = "cpu"
    seed: int = 0
    references: dict[str, Path] = field(default_factory=dict)  # e.g. {"sft": <sft checkpoint path>}
    suite: str | None = None  # the registered suite whose options model gives the defaults; set by its entry points
    _generator: Any = None

    def generator(self):
        """The generation backend for `model`, built once per context."""
        if self._generator is None:
            backend_cls = registry.get("backend", self.backend)
            self._generator = backend_cls(self.model, device=self.device, **self.backend_options)
        return self._generator

    def make_judge(self):
        from selm_bench.evals.judges import make_judge

        if not self.judge:
            raise SuiteError("this suite needs a judge: pass --judge NAME or set `judge` in the config")
        return make_judge(self.judge, cache_dir=self.out_dir.parent / "judge-cache", **self.judge_options)

    def for_suite(self, suite: str) -> "EvalContext":
        """Name the suite whose options these are (a suite's entry points call this; keeps an
        already-set name: lm-eval's helpers run with brainteaser's context and options)."""
        if self.suite is None:
            self.suite = suite
        return self

    def option(self, key: str) -> Any:
        """The option's value, validated by the suite's options model; the model's default when
        `options` lacks it (contexts built from a partial dict). A key the model does not declare
        is a programming error (KeyError); a bad value is a SuiteError naming `<suite>.<option>`."""
        if self.suite is None:
            raise SuiteError(f"option {key!r} read from a context that names no suite (EvalContext.suite)")
        from pydantic import ValidationError

        try:
            values = validated_options(self.suite, self.options)
        except ValidationError as e:
            raise SuiteError(f"bad option: {validation_message(registry.base_name('suite', self.suite), e)}") from None
        if key not in values:
            raise KeyError(f"suite {self.suite!r} declares no option {key!r}")
        return values[key]


@dataclass
class SuiteResult:
    metrics: dict[str, Any]  # flat: metric name -> number (None if unavailable, with reason in `info`)
    items: list[dict[str, Any]] = field(default_factory=list)  # per-item records -> items.jsonl
    info: dict[str, Any] = field(default_factory=dict)  # non-numeric details kept in metrics.json

    def leaderboard_metrics(self) -> dict[str, float]:
        """Numeric metrics only; these become `<suite>/<metric>` columns."""
        out = {}
        for k, v in self.metrics.items():
            if isinstance(v, bool) or v is None:
                continue
            if isinstance(v, (int, float)):
                out[k] = float(v)
        return out


Suite = Callable[[EvalContext], SuiteResult]


def mean_and_stderr(values: list[float]) -> tuple[float, float]:
    """Sample mean and its standard error (n-1 denominator)."""
    n = len(values)
    if n == 0:
        return float("nan"), float("nan")
    mean = sum(values) / n
    if n == 1:
        return mean, 0.0
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(var / n)


def judged_plan(spec: Any, *, tiny: tuple[int, int], real: tuple[int, int], judge: str | None,
                usd_per_call: float) -> dict[str, Any]:
    """`selm-bench plan`'s estimate for a generate-then-judge suite's stage (an EvalSpec): on the
    tiny world (`spec.world`), `tiny` = (questions, turns) answers graded by the oracle judge, free;
    else the first `question_limit` / `limit` of `real` = (questions, turns), each answer one paid
    judge call at a rough list price of `usd_per_call`."""
    if spec.world is not None:
        n, turns = tiny
        return {"generations": n * turns, "judge_calls": 0, "detail": "oracle judge (free)"}
    n, turns = real
    limit = spec.options.get("question_limit") or spec.options.get("limit")
    n = min(n, limit) if limit else n
    return {"generations": n * turns, "judge_calls": n * turns, "judge": judge,
            "judge_usd": round(n * turns * usd_per_call, 2)}


# ---------------------------------------------------------------- a drill-down's HTML
# What a suite's `drilldown` (the report's section of it) renders with; the report's too: jinja2
# templates with autoescape on (each suite's own in evals/templates/<suite>.html, the report's and the
# shared macros in harness/reports/templates), so every value is escaped unless it is
# HTML made by a template (`render`, `text`, `table`: markupsafe's Markup). jinja2 is imported on
# first use: the commands that only read results (leaderboard, plan, list) import this module.
MAX_TEXT = 1500  # characters of a shown answer or judgment


@functools.cache
def templates() -> Any:
    """The jinja2 environment of the suites' templates (evals/templates) and the report's
    (harness/reports/templates): autoescaped; `fmt` as a filter, `text` global."""
    import jinja2

    loader = jinja2.ChoiceLoader([jinja2.PackageLoader("selm_bench.evals", "templates"),
                                  jinja2.PackageLoader("selm_bench.harness.reports", "templates")])
    env = jinja2.Environment(loader=loader,
                             autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True,
                             lstrip_blocks=True, keep_trailing_newline=True)
    env.filters["fmt"] = fmt
    env.globals["text"] = text
    return env


def render(template: str, **context: Any) -> Any:
    """HTML (Markup) of one template by name: a suite's (`tiny-world.html`) or the report's (`page.html`)."""
    from markupsafe import Markup

    return Markup(templates().get_template(template).render(**context))


def _macros() -> Any:
    return templates().get_template("macros.html").module


def number(v: Any) -> float | None:
    """A finite float, else None (missing, null, NaN, text)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v) if math.isfinite(v) else None


def mean(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def read_items(path: Path) -> tuple[list[dict[str, Any]], str | None]:
    """The records of an items.jsonl and a note about what could not be read (None if all was)."""
    if not path.is_file():
        return [], "no items.jsonl"
    items, bad = [], []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            bad.append(n)
            continue
        if isinstance(rec, dict):
            items.append(rec)
    note = f"{path.name}: line(s) {', '.join(map(str, bad[:5]))} not valid JSON, skipped" if bad else None
    return items, note


def text(v: Any, limit: int = MAX_TEXT) -> Any:
    """A value (JSON unless text) in a pre-wrapped block, cut at `limit` characters (the cut is marked)."""
    s = "" if v is None else (v if isinstance(v, str) else json.dumps(v))
    return _macros().text_block(s[:limit], len(s) > limit)


def fmt(v: Any) -> str:
    """A number to 4 significant digits; anything else as its text, None as nothing."""
    x = number(v)
    return str(v if v is not None else "") if x is None else f"{x:.4g}"


def table(header: list[str], rows: list[list[Any]], cls: str = "items") -> Any:
    """A table (nothing without rows): each cell escaped unless it is HTML (Markup, e.g. `text`'s)."""
    return _macros().table(header, rows, cls)
