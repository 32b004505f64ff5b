"""No stale stages: what a stage's output depends on beyond its spec.

A spec says what a stage computes; the result also depends on the project's code that runs
it and on the installed libraries. Each finished stage records its `env`: the versions of
the libraries its kind uses and a hash of the project modules it runs: the import closure of
the module that runs its kind plus the plug-ins its spec names (read from the code, so it
cannot drift from it). The hash is
over each module's syntax tree without docstrings, so a comment, a docstring or the README
does not change it; code does. On a rerun, a finished stage whose key matches but whose env
differs is stale: train-and-eval stops before writing anything, naming the stage and what
changed, unless `--force` (redo everything) or `--keep-stale` (keep the old results, and
record that they were kept) is given.
"""

from __future__ import annotations

import ast
import hashlib
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


class StaleError(ValueError):
    """Finished stages whose code or libraries changed: one line, exit 2, nothing written."""

BASE_PACKAGES = ("torch", "transformers")
TRAIN = ("trl", "accelerate", "datasets")
SHARDED = {"deepspeed": ("deepspeed",)}  # a training stage's strategy kind -> the libraries it adds
# The libraries each stage kind runs.
KIND_PACKAGES: dict[str, tuple[str, ...]] = {
    "world": (), "data": ("datasets",), "sft": TRAIN, "preference": TRAIN, "generate": ("vllm",),
    "rank": ("openai",), "eval": ("lm_eval", "alpaca_eval", "fschat", "openai", "vllm"),
}
# The module that runs each stage kind (harness/run/run_stage.py); its code is everything it imports
# from the project, at any depth and in any function, plus the plug-ins the spec names.
KIND_ENTRY: dict[str, str] = {
    "world": "selm_bench.harness.world", "data": "selm_bench.harness.data",
    "sft": "selm_bench.trainers.train", "preference": "selm_bench.trainers.train",
    "generate": "selm_bench.trainers.online", "rank": "selm_bench.trainers.online", "eval": "selm_bench.harness.run.evaluate",
}
PACKAGES = ("harness", "trainers", "evals")  # selm_bench.<package> is the repository folder <package>


def module_file(module: str, repo: Path | None = None) -> Path | None:
    """The repository file of a project module (`selm_bench.harness.run.pipeline` -> harness/run/pipeline.py);
    None for a package or a name that is not a module (`from selm_bench.harness.core import config` is
    read as both `...core` and `...core.config`)."""
    parts = module.split(".")
    if len(parts) < 3 or parts[0] != "selm_bench" or parts[1] not in PACKAGES:
        return None
    path = (repo or REPO).joinpath(*parts[1:-1], f"{parts[-1]}.py")
    return path if path.is_file() else None


def _imports(path: Path) -> set[str]:
    """The project modules a file imports anywhere (module level or inside a function)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)  # `from pkg import module`
    return {m for m in out if m.startswith("selm_bench.")}


def closure(modules: tuple[str, ...], repo: Path | None = None) -> list[Path]:
    """Every project file `modules` import, transitively (themselves included)."""
    seen: dict[Path, None] = {}
    todo = list(modules)
    while todo:
        path = module_file(todo.pop(), repo)
        if path is None or path in seen:
            continue
        seen[path] = None
        todo.extend(_imports(path))
    return sorted(seen)


def _plugins(spec: Any) -> tuple[str, ...]:
    """The modules of the plug-ins a spec names (backend, ranker, suite, judge), from the registry's table."""
    from selm_bench.harness.core import registry

    named = [("backend", getattr(spec, "backend", None)), ("ranker", getattr(spec, "ranker", None)),
             ("suite", getattr(spec, "suite", None)), ("judge", getattr(spec, "judge", None))]
    out = []
    for kind, name in named:
        target = registry.BUILTINS[kind].get(registry.base_name(kind, name)) if name else None
        if target:
            out.append(target.split(":")[0])
    return tuple(out)


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body
                and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant)
                and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return tree


def code_hash(paths: list[Path]) -> str:
    """Hash of the modules' code: comments, docstrings and formatting do not count."""
    h = hashlib.sha256()
    for p in sorted(paths):
        h.update(p.name.encode())
        h.update(ast.dump(_strip_docstrings(ast.parse(p.read_text())), include_attributes=False).encode())
    return h.hexdigest()[:16]


@lru_cache(maxsize=None)
def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist.replace("_", "-"))
    except metadata.PackageNotFoundError:
        return None


def stage_env(spec: Any, repo: Path | None = None) -> dict[str, Any]:
    """What the stage's output depends on beyond its spec: library versions and the code hash."""
    packages = KIND_PACKAGES[spec.kind]
    strategy = getattr(getattr(spec, "train", None), "strategy", None)
    if strategy is not None:  # DeepSpeed's version only for the stages it trains (installing it stales no others)
        packages = packages + SHARDED.get(strategy.kind, ())
    modules = (KIND_ENTRY[spec.kind], *_plugins(spec))
    return {"code": _code(modules, repo), "packages": {p: _version(p) for p in (*BASE_PACKAGES, *packages)}}


@lru_cache(maxsize=None)
def _code(modules: tuple[str, ...], repo: Path | None = None) -> str:
    return code_hash(closure(modules, repo))


def differences(recorded: dict[str, Any] | None, now: dict[str, Any]) -> list[str]:
    """What changed, in words ([] = nothing); a stage without a record (older runs) is not judged."""
    if not recorded:
        return []
    out = []
    if recorded.get("code") != now["code"]:
        out.append("the project's code it runs")
    for pkg, version in now["packages"].items():
        before = recorded.get("packages", {}).get(pkg)
        if before != version:
            out.append(f"{pkg} {before or 'absent'} -> {version or 'absent'}")
    return out
