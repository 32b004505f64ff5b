"""One registry for methods, eval suites, judges, rankers and generation backends.

Entries register themselves with a decorator when their module is imported. The built-in ones
are listed once, in `BUILTINS`, as lazy `"module:object"` names (lm-eval's registry style): a
name is known without importing anything, and its module is imported on first use, so commands
that only read results (leaderboard, compare, plan, list) never load torch or the engines.
Adding a plug-in means one module plus one line here.
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass
from typing import Any, Callable

KINDS = ("method", "suite", "judge", "ranker", "backend")

# The built-in plug-ins (the one place that names them): kind -> name -> "module:object".
BUILTINS: dict[str, dict[str, str]] = {
    "method": {m: f"selm_bench.trainers.methods:{o}" for m, o in (
        ("sft", "SFTMethod"), ("dpo", "DPOMethod"), ("iterative-dpo", "IterativeDPOMethod"), ("selm", "SELMMethod"))},
    "suite": {"tiny-world": "selm_bench.evals.tiny_world:run", "mt-bench": "selm_bench.evals.mt_bench:run",
              "alpaca-eval": "selm_bench.evals.alpaca_eval:run", "lm-eval": "selm_bench.evals.lm_eval_suite:run",
              "brainteaser": "selm_bench.evals.brainteaser:run"},
    "judge": {"oracle": "selm_bench.evals.judges:OracleJudge", "openai": "selm_bench.evals.openai_judge:OpenAIJudge"},
    "ranker": {"oracle": "selm_bench.trainers.rankers:OracleRanker",
               "reward-model": "selm_bench.trainers.rankers:RewardModelRanker",
               "judge": "selm_bench.trainers.rankers:JudgeRanker", "pairrm": "selm_bench.trainers.pairrm:PairRMRanker"},
    "backend": {"hf": "selm_bench.trainers.generation:HFBackend", "vllm": "selm_bench.trainers.vllm_backend:VLLMBackend"},
}


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


def _import(kind: str, name: str) -> None:
    """Import the module of a built-in entry; its decorator registers it."""
    module, _, obj = BUILTINS[kind][name].partition(":")
    mod = importlib.import_module(module)
    got = _ENTRIES[kind].get(name)
    if got is None or (obj and got.obj is not getattr(mod, obj, None)):
        raise RegistryError(f"{kind} {name!r}: {BUILTINS[kind][name]} does not register it")


def load_all() -> None:
    """Import every built-in plug-in (for `selm-bench list`, and tests that patch entries)."""
    global _loaded
    if _loaded:
        return
    for kind, table in BUILTINS.items():
        for name in table:
            if name not in _ENTRIES[kind]:
                _import(kind, name)
    _loaded = True


def base_name(kind: str, name: str) -> str:
    if kind in _PREFIX_KINDS and ":" in name:
        return name.split(":", 1)[0]
    if kind == "suite" and ":" in name:  # "lm-eval:openllm" -> suite "lm-eval" with a preset
        return name.split(":", 1)[0]
    return name


def names(kind: str) -> list[str]:
    return sorted(set(_ENTRIES[kind]) | set(BUILTINS[kind]))


def has(kind: str, name: str) -> bool:
    key = base_name(kind, name)
    return key in _ENTRIES[kind] or key in BUILTINS[kind]


def entry(kind: str, name: str) -> Entry:
    key = base_name(kind, name)
    if key not in _ENTRIES[kind] and key in BUILTINS[kind]:
        _import(kind, key)
    if key not in _ENTRIES[kind]:
        known = names(kind)
        close = difflib.get_close_matches(key, known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise RegistryError(f"unknown {kind} {name!r} (registered: {', '.join(known) or 'none'}){hint}")
    return _ENTRIES[kind][key]


def get(kind: str, name: str) -> Any:
    return entry(kind, name).obj


def suite_options(name: str) -> Any:
    """The suite's options model (a pydantic BaseModel subclass), or None for an unknown suite."""
    return entry("suite", name).options if has("suite", name) else None


def entries() -> list[Entry]:
    load_all()
    return [e for kind in KINDS for e in sorted(_ENTRIES[kind].values(), key=lambda e: e.name)]
