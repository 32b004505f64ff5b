"""One registry for methods, eval suites, judges, rankers and generation backends.

Entries register themselves with a decorator at import time; `load_all()` imports every
module under `trainers/` and `evals/`, so adding a suite or ranker means adding one module.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from typing import Any, Callable

KINDS = ("method", "suite", "judge", "ranker", "backend")


@dataclass(frozen=True)
class Entry:
    kind: str
    name: str
    obj: Any
    help: str
    options: Any = None  # suites: their pydantic options model (extra="forbid"), declared next to the suite
    headline: str | None = None  # suites: the metric the compact leaderboard shows and `compare` gates
    # suites: items -> the metrics computable from per-item records (what `compare` bootstraps)
    paired: Callable[[list[dict[str, Any]]], dict[str, float | None]] | None = None
    # suites: ctx -> None, raising on what the suite will lack (data files, a judge's key); run before
    # the run's first stage (harness/preflight.py), so a run fails in seconds, not after training
    preflight: Callable[[Any], None] | None = None


class RegistryError(KeyError):
    def __str__(self) -> str:  # KeyError quotes its message; we want plain text
        return str(self.args[0])


_ENTRIES: dict[str, dict[str, Entry]] = {k: {} for k in KINDS}
_PREFIX_KINDS = ("judge", "ranker")  # parameterised: "openai:gpt-4" -> entry "openai", "reward-model:PATH"
_loaded = False


def register(kind: str, name: str, help: str = "", options: Any = None, **hooks: Any) -> Callable[[Any], Any]:
    if kind not in KINDS:
        raise ValueError(f"unknown registry kind {kind!r}; expected one of {KINDS}")

    def deco(obj: Any) -> Any:
        if name in _ENTRIES[kind] and _ENTRIES[kind][name].obj is not obj:
            raise ValueError(f"{kind} {name!r} is registered twice")
        doc = help or (obj.__doc__ or "").strip().splitlines()[0:1]
        _ENTRIES[kind][name] = Entry(kind, name, obj, doc if isinstance(doc, str) else "".join(doc), options, **hooks)
        return obj

    return deco


def register_method(name: str, help: str = ""):
    return register("method", name, help)


def mean_score(items: list[dict[str, Any]]) -> dict[str, float | None]:
    """The default paired metric: the mean of the items' `score` (unscored items left out)."""
    scores = [float(i["score"]) for i in items if i.get("score") is not None]
    return {"score": sum(scores) / len(scores) if scores else None}


def register_suite(name: str, help: str = "", options: Any = None, headline: str = "score",
                   paired: Callable[[list[dict[str, Any]]], dict[str, float | None]] = mean_score,
                   preflight: Callable[[Any], None] | None = None):
    """`options`: the suite's options as a pydantic model (typed, documented, `extra="forbid"`),
    so a misspelt or mistyped `--set suite.key=...` is an error before anything runs.
    `headline`: the suite's one metric in the compact leaderboard. `paired`: the metrics that
    per-item records determine (`compare` recomputes them on bootstrap resamples of the items).
    `preflight`: checks an EvalContext before the run's first stage (what the suite will lack)."""
    from pydantic import BaseModel

    if not (isinstance(options, type) and issubclass(options, BaseModel)):
        raise TypeError(f"suite {name!r}: options must be a pydantic BaseModel subclass")
    if not callable(paired):
        raise TypeError(f"suite {name!r}: paired must map items to metrics")
    return register("suite", name, help, options, headline=headline, paired=paired, preflight=preflight)


def register_judge(name: str, help: str = ""):
    return register("judge", name, help)


def register_ranker(name: str, help: str = ""):
    return register("ranker", name, help)


def register_backend(name: str, help: str = ""):
    return register("backend", name, help)


def load_all() -> None:
    """Import every module of the plug-in packages so their decorators run."""
    global _loaded
    if _loaded:
        return
    for pkg_name in ("selm_bench.trainers", "selm_bench.evals"):
        pkg = importlib.import_module(pkg_name)
        for mod in pkgutil.iter_modules(pkg.__path__):
            if not mod.name.startswith("_"):
                importlib.import_module(f"{pkg_name}.{mod.name}")
    _loaded = True


def base_name(kind: str, name: str) -> str:
    if kind in _PREFIX_KINDS and ":" in name:
        return name.split(":", 1)[0]
    if kind == "suite" and ":" in name:  # "lm-eval:openllm" -> suite "lm-eval" with a preset
        return name.split(":", 1)[0]
    return name


def names(kind: str) -> list[str]:
    load_all()
    return sorted(_ENTRIES[kind])


def has(kind: str, name: str) -> bool:
    load_all()
    return base_name(kind, name) in _ENTRIES[kind]


def entry(kind: str, name: str) -> Entry:
    load_all()
    key = base_name(kind, name)
    if key not in _ENTRIES[kind]:
        known = ", ".join(sorted(_ENTRIES[kind])) or "none"
        raise RegistryError(f"unknown {kind} {name!r} (registered: {known})")
    return _ENTRIES[kind][key]


def get(kind: str, name: str) -> Any:
    return entry(kind, name).obj


def suite_options(name: str) -> Any:
    """The suite's options model (a pydantic BaseModel subclass), or None for an unknown suite."""
    load_all()
    entry = _ENTRIES["suite"].get(base_name("suite", name))
    return entry.options if entry else None


def entries() -> list[Entry]:
    load_all()
    return [e for kind in KINDS for e in sorted(_ENTRIES[kind].values(), key=lambda e: e.name)]
