"""Fail fast: what a run's pending stages will need, checked before the first stage writes anything.

Each stage kind asks the component that runs it, through the registry, and names none of them:
- generation and eval backends: the backend class's `preflight(**backend_options)` (vllm: an interpreter
  that imports vllm);
- rankers: the ranker class's `preflight(name=..., base_url=...)` (a `judge:` ranker: its API key);
- suites: the suite's registered `preflight(ctx)` (data files, the judge's key, lm-eval tasks that
  are on the hub while offline);
- training: the packages its distributed strategy needs (DeepSpeed);
- the prompt data: a local file's schema and row count (`data.expected_rows`);
- artefacts (harness/run/plan.py): a local model, ranker or data path that does not exist, and a hub
  repo that is not cached while HF_HUB_OFFLINE=1.

Every problem found is collected and reported on one line, so one rerun can fix them all.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, Callable

from selm_bench.harness.core import registry
from selm_bench.harness.run.stages import Stage
from selm_bench.harness.core.store import hub_offline


class PreflightError(RuntimeError):
    pass


def _artefacts(cfg: Any, stages: list[Stage]) -> list[str]:
    from selm_bench.harness.run.plan import artefacts

    out = []
    for a in artefacts(cfg, stages):
        if a.get("present") is not False:
            continue
        if str(a.get("where", "")).startswith("local"):
            out.append(f"{a['kind']} {a['name']}: no such file or folder")
        elif a.get("where") == "hub" and hub_offline():
            out.append(f"{a['kind']} {a['name']}: not in the Hugging Face cache, and HF_HUB_OFFLINE=1 forbids the download")
    return out


def _data(spec: Any) -> list[str]:
    from selm_bench.harness.data import DataError, load_prompt_dataset

    if not Path(spec.source).expanduser().exists():  # a hub dataset: the artefact check covers it
        return []
    try:
        ds = load_prompt_dataset(spec.source, spec.split or "train")
    except DataError as e:
        return [str(e)]
    if spec.expected_rows is not None and len(ds) != spec.expected_rows:
        return [f"{spec.source}: {len(ds)} rows, the config expects {spec.expected_rows} (data.expected_rows)"]
    return []


def _training(spec: Any) -> list[str]:
    if spec.train.strategy.kind == "deepspeed" and importlib.util.find_spec("deepspeed") is None:
        return ["the accelerate config uses DeepSpeed, which is not installed (pip install 'selm-bench[deepspeed]')"]
    return []


def _backend(name: str, options: dict[str, Any]) -> list[str]:
    check = getattr(registry.get("backend", name), "preflight", None)
    return _ask(check, **options) if check else []


def _ranker(spec: Any, runtime: dict[str, Any]) -> list[str]:
    check = getattr(registry.get("ranker", spec.ranker), "preflight", None)
    return _ask(check, name=spec.ranker, base_url=spec.judge_base_url, **runtime) if check else []


def _suite(stage: Stage, root: Path, runtime: dict[str, Any]) -> list[str]:
    from selm_bench.harness.run.evaluate import eval_context

    check = registry.entry("suite", stage.spec.suite).preflight
    if check is None:
        return []
    return _ask(check, eval_context(stage.spec, root, root / stage.folder, runtime))


def _ask(check: Callable[..., None], *args: Any, **kwargs: Any) -> list[str]:
    try:
        check(*args, **kwargs)
    except Exception as e:  # noqa: BLE001 - a component's refusal, reported as one line
        return [str(e).splitlines()[0] if str(e) else type(e).__name__]
    return []


def preflight(cfg: Any, stages: list[Stage], root: Path, runtime: dict[str, Any]) -> None:
    """Raise PreflightError naming the first problem of `stages` (those still to run)."""
    if not stages:
        return
    problems = _artefacts(cfg, stages)
    seen: set[tuple[str, str]] = set()
    for st in stages:
        s = st.spec
        if s.kind == "data":
            problems += _data(s)
        elif s.kind in ("sft", "preference"):
            problems += _training(s)
        elif s.kind == "rank":
            problems += _ranker(s, runtime)
        elif s.kind == "eval":
            problems += _suite(st, root, runtime)
        if s.kind in ("generate", "eval") and (s.backend, repr(sorted(s.backend_options.items()))) not in seen:
            seen.add((s.backend, repr(sorted(s.backend_options.items()))))
            problems += _backend(s.backend, s.backend_options)
    problems = list(dict.fromkeys(problems))  # each distinct problem once, all on one line
    if len(problems) == 1:
        raise PreflightError(f"before any stage: {problems[0]}")
    if problems:
        raise PreflightError(f"before any stage, {len(problems)} problems: " + "; ".join(problems))
