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
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Mapping, Protocol, runtime_checkable

KINDS = ("method", "suite", "judge", "ranker", "backend")
DEFAULT_ORDER = 100  # a suite's place in the report and `data pull` when it declares none (built-ins: 10-50)

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
class Artefact:
    """One file of a suite's data as `selm-bench data pull` fetches it (a suite's `data_sources`)."""

    suite: str
    dest: str  # path under the data folder, the layout `--data-dir` expects
    url: str
    sha256: str
    size: int


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
    # the run's first stage (harness/run/preflight.py), so a run fails in seconds, not after training
    preflight: Callable[[Any], None] | None = None
    # suites: the rest of what `Suite` (below) describes; every one has a default
    fallbacks: tuple[str, ...] = ()
    fallback_columns: Callable[[list[str]], list[str]] | None = None
    stderr: Mapping[str, str] = field(default_factory=dict, hash=False)
    canonical_judges: frozenset[str] = frozenset()
    tiny: bool = False
    drilldown: Callable[[list[dict[str, Any]], Any], str] | None = None
    order: int = DEFAULT_ORDER
    plan: Callable[[Any, Any], dict[str, Any]] | None = None
    artefacts: Callable[[Any], list[dict[str, Any]]] | None = None
    data_files: tuple[str, ...] = ()
    data_sources: tuple[Artefact, ...] = ()
    prepare_data: Callable[[Any], None] | None = None
    pull_by_default: bool = False
    judge: Callable[[Any], Any] | None = None
    import_file: Callable[..., dict[str, tuple[dict[str, Any], dict[str, Any]]]] | None = None
    published: Callable[[list[str]], list[dict[str, Any]]] | None = None

    @property
    def run(self) -> Any:
        """A suite's entry point: ctx -> SuiteResult (the registered object)."""
        return self.obj


@runtime_checkable
class Suite(Protocol):
    """Everything suite-specific, owned by the suite's module (`register_suite` there) and read
    by the harness through its entry: harness code loops over `suites()` and names none.

    - `name`, `help`; `run`: ctx -> SuiteResult; `options`: its pydantic options model.
    - `headline`: the metric the compact leaderboard shows and `compare` gates; `fallbacks`: the
      metrics shown in its place, in order, for a result without it (AlpacaEval: the win rate when
      LC is missing); `fallback_columns`: when none of those is there, the columns to show out of
      the suite's metric columns (lm-eval: each task's acc/acc_norm).
    - `stderr`: metric -> the metric holding its standard error, where that is not `<metric>_stderr`.
    - `paired`: items -> the metrics per-item records determine (what `compare` resamples).
    - labels: `canonical_judges`, the judges of the published numbers (another judge is labelled on
      the leaderboard); `tiny`, its results are always on the tiny world's questions.
    - `drilldown`: (items, result folder) -> the report's HTML section; `order`: where the suite
      comes in the report's drill-downs and in `data pull`'s lists.
    - `plan`: (config, EvalSpec) -> the stage's estimate for `selm-bench plan`: generations,
      judge_calls and, with a paid judge, judge and judge_usd; a detail line. `artefacts`:
      EvalSpec -> the rows it adds to the plan's artefact list (lm-eval's tasks).
    - `data_files`: the files it reads under `eval.data_dir`; `data_sources`: what `data pull`
      fetches for it (`Artefact`s), `prepare_data`: (data folder) -> None, run after the
      fetch (unpacking), `pull_by_default`: pulled by a bare `selm-bench data pull`.
    - `preflight`: ctx -> None, raising on what it will lack, before a run's first stage.
    - `judge`: ctx -> SuiteResult, judging answers saved with `--no-judge` (judge later).
    - `import_file`: (file, model, data_dir) -> {model: (metrics, info)} from published artefacts
      (`selm-bench import`), raising InputError (one line) for a file it cannot read.
    - `published`: base models -> published reference rows of the suite's own leaderboard.
    """

    name: str
    help: str
    options: Any
    headline: str | None
    fallbacks: tuple[str, ...]
    fallback_columns: Callable[[list[str]], list[str]] | None
    stderr: Mapping[str, str]
    paired: Callable[[list[dict[str, Any]]], dict[str, float | None]] | None
    canonical_judges: frozenset[str]
    tiny: bool
    drilldown: Callable[[list[dict[str, Any]], Any], str] | None
    order: int
    plan: Callable[[Any, Any], dict[str, Any]] | None
    artefacts: Callable[[Any], list[dict[str, Any]]] | None
    data_files: tuple[str, ...]
    data_sources: tuple[Artefact, ...]
    prepare_data: Callable[[Any], None] | None
    pull_by_default: bool
    preflight: Callable[[Any], None] | None
    judge: Callable[[Any], Any] | None
    import_file: Callable[..., dict[str, tuple[dict[str, Any], dict[str, Any]]]] | None
    published: Callable[[list[str]], list[dict[str, Any]]] | None

    @property
    def run(self) -> Callable[[Any], Any]: ...


class InputError(ValueError):
    """What a suite hook was given is unusable (a file `import_file` cannot read, a missing flag):
    one line, reported as bad input (exit 2)."""


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
                   preflight: Callable[[Any], None] | None = None, **hooks: Any):
    """`options`: the suite's options as a pydantic model (typed, documented, `extra="forbid"`),
    so a misspelt or mistyped `--set suite.key=...` is an error before anything runs.
    `headline`: the suite's one metric in the compact leaderboard. `paired`: the metrics that
    per-item records determine (`compare` recomputes them on bootstrap resamples of the items).
    `preflight`: checks an EvalContext before the run's first stage (what the suite will lack).
    `hooks`: the rest of the `Suite` protocol (its docstring), each optional."""
    from pydantic import BaseModel

    if not (isinstance(options, type) and issubclass(options, BaseModel)):
        raise TypeError(f"suite {name!r}: options must be a pydantic BaseModel subclass")
    if not callable(paired):
        raise TypeError(f"suite {name!r}: paired must map items to metrics")
    unknown = sorted(set(hooks) - SUITE_HOOKS)
    if unknown:
        raise TypeError(f"suite {name!r}: unknown hook(s) {', '.join(unknown)}; "
                        f"a suite has {', '.join(sorted(SUITE_HOOKS))}")
    for key in ("fallbacks", "data_files", "data_sources"):  # any iterable, kept immutable
        if key in hooks:
            hooks[key] = tuple(hooks[key])
    if "canonical_judges" in hooks:
        hooks["canonical_judges"] = frozenset(hooks["canonical_judges"])
    if "stderr" in hooks:
        hooks["stderr"] = MappingProxyType(dict(hooks["stderr"]))
    return register("suite", name, help, options, headline=headline, paired=paired, preflight=preflight, **hooks)


SUITE_HOOKS = frozenset(Suite.__annotations__) - {"name", "help", "options", "headline", "paired", "preflight"}


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


def suites() -> list[Entry]:
    """Every registered suite (built-ins imported), in their `order`, then by name."""
    return sorted((entry("suite", n) for n in names("suite")), key=lambda e: (e.order, e.name))


def suite_entry(name: str) -> Entry | None:
    """The entry of a registered suite (`lm-eval:openllm` -> lm-eval's), else None."""
    return entry("suite", name) if has("suite", name) else None


def entries() -> list[Entry]:
    load_all()
    return [e for kind in KINDS for e in sorted(_ENTRIES[kind].values(), key=lambda e: e.name)]
