"""No stale stages: what a stage's output depends on beyond its spec.

A spec says what a stage computes; the result also depends on the project's code that runs
it and on the installed libraries. Each finished stage records its `env`: the versions of
the libraries its kind uses and a hash of the project modules its kind runs. The hash is
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

REPO = Path(__file__).resolve().parent.parent


class StaleError(ValueError):
    """Finished stages whose code or libraries changed: one line, exit 2, nothing written."""

BASE_PACKAGES = ("torch", "transformers")
TRAIN = ("trl", "accelerate", "datasets")
SHARDED = {"deepspeed": ("deepspeed",)}  # a training stage's strategy kind -> the libraries it adds
# The project modules (repo-relative) and the libraries each stage kind runs.
KIND_CODE: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "world": (("harness/tinyworld.py",), ()),
    "data": (("harness/prompt_data.py",), ("datasets",)),
    "sft": (("trainers/train.py",), TRAIN),
    "preference": (("trainers/train.py", "trainers/selm_trainer.py", "trainers/losses.py"), TRAIN),
    "generate": (("trainers/online.py", "trainers/generation.py", "trainers/vllm_backend.py", "trainers/vllm_worker.py"), ("vllm",)),
    "rank": (("trainers/online.py", "trainers/rankers.py", "harness/tinyworld.py", "evals/openai_judge.py"), ("openai",)),
    "eval": (("harness/evaluate.py", "evals/base.py", "evals/judges.py", "evals/openai_judge.py",
              "trainers/generation.py", "trainers/vllm_backend.py", "trainers/vllm_worker.py", "harness/tinyworld.py"),
             ("lm_eval", "alpaca_eval", "fschat", "openai", "vllm")),
}
SUITE_MODULES = {"tiny-world": ("evals/tiny_world.py",), "lm-eval": ("evals/lm_eval_suite.py",),
                 "mt-bench": ("evals/mt_bench.py",), "alpaca-eval": ("evals/alpaca_eval.py",),
                 "brainteaser": ("evals/brainteaser.py", "evals/lm_eval_suite.py")}


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


def stage_env(spec: Any) -> dict[str, Any]:
    """What the stage's output depends on beyond its spec: library versions and the code hash."""
    modules, packages = KIND_CODE[spec.kind]
    strategy = getattr(getattr(spec, "train", None), "strategy", None)
    if strategy is not None:  # DeepSpeed's version only for the stages it trains (installing it stales no others)
        packages = packages + SHARDED.get(strategy.kind, ())
    if spec.kind == "eval":
        modules = modules + SUITE_MODULES.get(spec.suite.split(":", 1)[0], ())
    return {"code": _code(tuple(modules)),
            "packages": {p: _version(p) for p in (*BASE_PACKAGES, *packages)}}


@lru_cache(maxsize=None)
def _code(modules: tuple[str, ...]) -> str:
    return code_hash([REPO / m for m in modules])


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
