"""`lm-eval`: EleutherAI lm-evaluation-harness (0.4.13) through `simple_evaluate`.

What runs, first match wins:
  - a named preset, `lm-eval:openllm` (Open LLM Leaderboard v1: each task with its own
    few-shot count, one `simple_evaluate` call per few-shot group);
  - a comma list of lm-eval task names as the preset, `lm-eval:hellaswag,arc_easy`, or the
    option `tasks` (list or comma string); these use option `num_fewshot`, else each
    task's own default;
  - the embedded default when the tiny world is set: a generated local task `tinyworld_mc`
    over `<world_dir>/mc.jsonl`, the prompt rendered with the tiny world's chat template.

Options (LmEvalOptions): tasks, batch_size (default eval.batch_size), limit (per task, lm-eval's meaning),
num_fewshot, include_path (absolute dir of local task YAMLs, scanned with the built-in tasks),
apply_chat_template. lm-eval's own seeds are kept (not ctx.seed) so numbers match a plain lm-eval run.

Backends: `hf` (and any other) runs lm-eval's HFLM; `vllm` runs lm-eval's own vLLM model (what
`lm_eval --model vllm` uses) with the backend options tensor_parallel_size, gpu_memory_utilization,
dtype, max_model_len, data_parallel_size and batch_size (optional extra `vllm`).

Metric names: `<task>/<key>` for each numeric entry of lm-eval's `results[<task>]`, where
lm-eval's "<metric>,<filter>" key becomes "<metric>" for the filter "none" and
"<metric>/<filter>" otherwise ("acc,none" -> "acc", "acc_stderr,none" -> "acc_stderr",
"exact_match,strict-match" -> "exact_match/strict-match"). Values are lm-eval's, unchanged.
Only top-level tasks get columns (a group such as mmlu, not its 57 subtasks; all of them
stay in results.json). A named preset adds `average`, the mean of its headline metrics.

Items (items.jsonl, for `compare`): one per (task, document, filter pipeline), id `<task>/<doc>`,
or `<task>/<doc>/<filter>` for a task with several filters (gsm8k); `score` is the sample's first
metric. A preset's items carry `headline` (the headline metric they count towards), from which
`paired` recomputes `average` as the suite does (`preset_average`, `headline_values`): equal on
the full item set (to float rounding where per-sample values are not 0/1, e.g. truthfulqa_mc2).

Files in the suite folder: results.json (lm-eval's results dict, samples removed, merged
over the few-shot groups), samples_<task>.jsonl (lm-eval's per-sample logs), tasks/.
"""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

from selm_bench.evals.base import EvalContext, SuiteError, SuiteResult, fmt, mean, number, render
from selm_bench.harness.core.registry import register_suite
from selm_bench.harness.core.store import atomic_write_text


@dataclass(frozen=True)
class TaskSpec:
    task: str
    num_fewshot: int | None = None  # None: the task's own default (0 where it sets none)
    metric: str | None = None  # headline metric, in our naming ("acc_norm", "exact_match/strict-match")


PRESETS: dict[str, tuple[TaskSpec, ...]] = {
    # Open LLM Leaderboard v1 settings.
    "openllm": (
        TaskSpec("arc_challenge", 25, "acc_norm"),
        TaskSpec("hellaswag", 10, "acc_norm"),
        TaskSpec("truthfulqa_mc2", 0, "acc"),
        TaskSpec("mmlu", 5, "acc"),
        TaskSpec("winogrande", 5, "acc"),
        TaskSpec("gsm8k", 5, "exact_match/strict-match"),
    ),
}

TINYWORLD_TASK = "tinyworld_mc"
SUITE = "lm-eval"
HF_BATCH_SIZE = 16  # HFLM's batch size when neither the option nor the backend sets one
VLLM_BACKEND_ARGS = ("tensor_parallel_size", "gpu_memory_utilization", "dtype", "max_model_len", "data_parallel_size")
VLLM_MISSING = "backend vllm needs the optional extra: pip install 'selm-bench[vllm]' (vllm is not installed)"
_PER_TASK_KEYS = ("results", "groups", "group_subtasks", "configs", "versions", "n-shot",
                  "higher_is_better", "n-samples", "samples")


@dataclass
class Plan:
    specs: list[TaskSpec]
    include_path: str | None = None
    embedded: bool = False  # the tiny world's generated task; its YAML is written at run time
    preset: str | None = None

    def fewshot_groups(self) -> list[tuple[int | None, list[str]]]:
        """Tasks grouped by few-shot count, in first-seen order (one simple_evaluate each)."""
        groups: dict[int | None, list[str]] = {}
        for s in self.specs:
            groups.setdefault(s.num_fewshot, []).append(s.task)
        return list(groups.items())


def _as_list(value: Any) -> list[str]:
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return [str(v) for v in value]


class LmEvalOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    tasks: str | list[str] | None = Field(
        None, description="lm-eval task names, a list or a comma string (instead of a preset; None = the preset, "
                          "else the tiny world's tinyworld_mc)")
    num_fewshot: int | None = Field(None, ge=0, description="few-shot count for `tasks` (None = each task's own; "
                                                            "presets fix their own)")
    include_path: str | None = Field(None, description="absolute directory of local task YAMLs, scanned with "
                                                       "lm-eval's built-in tasks")
    batch_size: int | None = Field(None, ge=1, description="lm-eval batch size; None = the eval's batch size "
                                                           f"(backend batch_size), else {HF_BATCH_SIZE}")
    limit: int | float | None = Field(None, gt=0, description="per task: N examples, or a fraction of them when "
                                                              "< 1.0 (lm-eval's --limit); None = all")
    apply_chat_template: bool = Field(False, description="lm-eval's apply_chat_template")

    @field_validator("include_path")
    @classmethod
    def _absolute(cls, value: str | None) -> str | None:
        if value is not None and not Path(value).is_absolute():
            raise ValueError(f"must be an absolute directory, got {value!r}")
        return value


def resolve_plan(ctx: EvalContext) -> Plan:
    """Which tasks run with which few-shot count; pure (runs and writes nothing)."""
    ctx.for_suite(SUITE)
    include_path = ctx.option("include_path")
    fewshot = ctx.option("num_fewshot")
    tasks_opt = ctx.option("tasks")
    if ctx.preset and tasks_opt:
        raise SuiteError(f"lm-eval: give either a preset ({ctx.preset!r}) or the option `tasks`, not both")
    if ctx.preset in PRESETS:
        return Plan(list(PRESETS[ctx.preset]), include_path, preset=ctx.preset)
    names = _as_list(ctx.preset or tasks_opt or [])
    if names:
        return Plan([TaskSpec(n, fewshot) for n in names], include_path)
    if ctx.world_dir is not None:
        return Plan([TaskSpec(TINYWORLD_TASK, fewshot, "acc")], embedded=True)
    raise SuiteError(
        "lm-eval has nothing to run: name a preset (lm-eval:openllm, known: "
        f"{', '.join(sorted(PRESETS))}), a task list (lm-eval:hellaswag,arc_easy), "
        "the option `tasks`, or run inside the tiny world"
    )


# ---------------------------------------------------------------- task files
def write_task_yaml(task_dir: Path, config: dict[str, Any]) -> Path:
    """One lm-eval task YAML (`<task>.yaml`) in `task_dir`; data paths must be absolute."""
    path = Path(task_dir) / f"{config['task']}.yaml"
    atomic_write_text(path, yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
    return path


def write_tinyworld_task(world_dir: Path, task_dir: Path) -> str:
    """The tiny world's multiple-choice set as a local lm-eval task; returns its name."""
    data = (Path(world_dir) / "mc.jsonl").resolve()
    if not data.exists():
        raise SuiteError(f"lm-eval: the tiny world has no {data}")
    write_task_yaml(task_dir, {
        "task": TINYWORLD_TASK,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(data)}},
        "test_split": "test",
        "output_type": "multiple_choice",
        # The tiny world's chat template for one user turn; the answer follows directly.
        "doc_to_text": "<|user|>{{prompt}}<|end|><|assistant|>",
        "target_delimiter": "",
        "doc_to_choice": "choices",
        "doc_to_target": "label",
        "metric_list": [
            {"metric": "acc", "aggregation": "mean", "higher_is_better": True},
            {"metric": "acc_norm", "aggregation": "mean", "higher_is_better": True},
        ],
        "metadata": {"version": 1.0},
    })
    return TINYWORLD_TASK


# ---------------------------------------------------------------- running lm-eval
def lm_batch_size(ctx: EvalContext) -> int | None:
    """The option batch_size, else the backend's (eval.batch_size); None when neither is set."""
    value = ctx.option("batch_size")
    return ctx.backend_options.get("batch_size") if value is None else value


def vllm_model_args(ctx: EvalContext) -> dict[str, Any]:
    """Keyword arguments of lm-eval's VLLM model: the checkpoint, the backend options it knows
    (only those set), and the batch size (lm-eval's own "auto" when none is set)."""
    args: dict[str, Any] = {"pretrained": str(ctx.model), **({"trust_remote_code": True} if ctx.backend_options.get("trust_remote_code") else {})}
    args.update({k: ctx.backend_options[k] for k in VLLM_BACKEND_ARGS if ctx.backend_options.get(k) is not None})
    batch_size = lm_batch_size(ctx)
    if batch_size is not None:
        args["batch_size"] = batch_size
    return args


def without_bars(cls: type) -> type:
    """An lm-eval model class whose request loops show no tqdm bar (lm-eval passes `disable=` itself,
    so TQDM_DISABLE does not reach them): the harness's own progress display is the only one."""

    class Quiet(cls):
        def loglikelihood(self, requests, disable_tqdm: bool = False):
            return super().loglikelihood(requests, disable_tqdm=True)

        def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
            return super().loglikelihood_rolling(requests, disable_tqdm=True)

        def generate_until(self, requests, disable_tqdm: bool = False):
            return super().generate_until(requests, disable_tqdm=True)

    Quiet.__name__ = Quiet.__qualname__ = cls.__name__
    return Quiet


def make_lm(ctx: EvalContext):
    if ctx.backend == "vllm":
        from importlib.util import find_spec

        if find_spec("vllm") is None:
            raise SuiteError(VLLM_MISSING)
        from lm_eval.models.vllm_causallms import VLLM

        return without_bars(VLLM)(**vllm_model_args(ctx))
    from lm_eval.models.huggingface import HFLM

    batch_size = lm_batch_size(ctx)
    return without_bars(HFLM)(pretrained=str(ctx.model), device=ctx.device,
                              trust_remote_code=bool(ctx.backend_options.get("trust_remote_code")),
                              batch_size=int(HF_BATCH_SIZE if batch_size is None else batch_size))


def make_task_manager(include_path: str | Path | None, task_names: list[str]):
    """Local-only index when every task is local (scanning lm-eval's ~15k built-ins takes seconds)."""
    from lm_eval.tasks import TaskManager

    if include_path is not None:
        local = TaskManager(include_path=str(include_path), include_defaults=False)
        if all(n in local.all_tasks for n in task_names):
            return local
    tm = TaskManager(include_path=str(include_path) if include_path else None)
    unknown = [n for n in task_names if n not in tm.all_tasks]
    if unknown:
        raise SuiteError(f"lm-eval: unknown task(s) {', '.join(unknown)} (see `lm-eval ls tasks`, or option include_path)")
    return tm


def _hub_datasets(tm: Any, name: str, depth: int = 0) -> set[str]:
    """The hub datasets a task, group or tag of `tm` reads (`dataset_path` of each leaf task); builder
    names (json, csv, parquet...) and local folders are not hub datasets."""
    entry = tm.task_index.get(name)
    if entry is None or depth > 8:
        return set()
    cfg = entry.cfg or {}
    if "dataset_path" in cfg:
        path = str(cfg["dataset_path"])
        return set() if "/" not in path or Path(path).expanduser().exists() else {path}
    members = cfg.get("task") if isinstance(cfg.get("task"), list) else [
        e.name for e in tm.task_index.values() if name in (e.tags or ())]
    out: set[str] = set()
    for m in members or []:
        out |= _hub_datasets(tm, m["task"] if isinstance(m, dict) else str(m), depth + 1)
    return out


def preflight(ctx: EvalContext) -> None:
    """Before a run's first stage: the tasks resolve (local YAMLs or lm-eval's registry) and, offline
    (HF_HUB_OFFLINE=1), every hub dataset they read is cached."""
    from selm_bench.harness.core.store import hub_cached, hub_offline

    plan = resolve_plan(ctx)
    if plan.embedded:
        return
    if plan.include_path and not Path(plan.include_path).expanduser().is_dir():
        raise SuiteError(f"lm-eval: include_path {plan.include_path}: no such folder")
    tm = make_task_manager(plan.include_path, [t.task for t in plan.specs])
    if not hub_offline():
        return
    missing = sorted({d for t in plan.specs for d in _hub_datasets(tm, t.task) if not hub_cached(d, "dataset")})
    if missing:
        raise SuiteError(f"lm-eval: {len(missing)} hub dataset(s) the tasks read are not cached and HF_HUB_OFFLINE=1 "
                         f"forbids the download: {', '.join(missing[:4])}{' ...' if len(missing) > 4 else ''}")


def evaluate(ctx: EvalContext, lm: Any, task_manager: Any, tasks: list[str], num_fewshot: int | None,
             limit: int | float | None = None, predict_only: bool = False) -> dict[str, Any]:
    """One `simple_evaluate` call with the harness's settings; lm-eval's results dict."""
    import lm_eval
    import lm_eval.evaluator

    from selm_bench.harness.core.store import git_state

    # lm-eval records the git commit of the working folder with a bare `git describe`, which prints
    # "fatal: not a git repository" outside one; its `git_hash` is this project's commit instead.
    own, lm_eval.evaluator.get_git_commit_hash = lm_eval.evaluator.get_git_commit_hash, lambda: git_state()["git_commit"]
    try:
        results = lm_eval.simple_evaluate(
            model=lm, tasks=tasks, num_fewshot=num_fewshot, limit=limit, task_manager=task_manager,
            log_samples=True, predict_only=predict_only,
            apply_chat_template=bool(ctx.option("apply_chat_template")),
        )
    finally:
        lm_eval.evaluator.get_git_commit_hash = own
    if results is None:  # only non-zero ranks get None; this harness runs one process
        raise SuiteError("lm-eval returned no results (not rank 0?)")
    return results


def merge_results(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Several simple_evaluate results as one dict: per-task tables merged, the rest from the last run."""
    merged: dict[str, Any] = {}
    for r in runs:
        for k, v in r.items():
            if k in _PER_TASK_KEYS:
                merged.setdefault(k, {}).update(v)
            else:
                merged[k] = v
    return merged


def _dumps(obj: Any, **kw: Any) -> str:
    from lm_eval.utils import handle_non_serializable

    return json.dumps(obj, default=handle_non_serializable, ensure_ascii=False, **kw)


def save_outputs(out_dir: Path, results: dict[str, Any]) -> None:
    """results.json (without samples) and samples_<task>.jsonl, as lm-eval's own writer would."""
    body = {k: v for k, v in results.items() if k != "samples"}
    atomic_write_text(Path(out_dir) / "results.json", _dumps(body, indent=2) + "\n")
    for task, rows in results.get("samples", {}).items():
        atomic_write_text(Path(out_dir) / f"samples_{task}.jsonl", "".join(_dumps(r) + "\n" for r in rows))


def run_local_task(ctx: EvalContext, task_dir: Path, task_names: list[str], num_fewshot: int | None = None,
                   *, limit: int | float | None = None, predict_only: bool = False, lm: Any = None) -> dict[str, Any]:
    """Run generated local tasks (YAMLs in `task_dir`) and save the outputs in ctx.out_dir."""
    tm = make_task_manager(Path(task_dir).resolve(), task_names)
    results = evaluate(ctx, lm or make_lm(ctx), tm, task_names, num_fewshot, limit, predict_only)
    save_outputs(ctx.out_dir, results)
    return results


# ---------------------------------------------------------------- results -> metrics, items
def metric_name(lm_eval_key: str) -> str:
    """"acc,none" -> "acc"; "exact_match,strict-match" -> "exact_match/strict-match"."""
    metric, _, flt = lm_eval_key.partition(",")
    return metric if flt in ("", "none") else f"{metric}/{flt}"


def top_level_tasks(results: dict[str, Any]) -> list[str]:
    children = {c for subs in results.get("group_subtasks", {}).values() for c in subs}
    return [t for t in results["results"] if t not in children]


def metrics_from_results(results: dict[str, Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    for task in top_level_tasks(results):
        for key, value in results["results"][task].items():
            if "," in key and isinstance(value, (int, float)) and not isinstance(value, bool):
                out[f"{task}/{metric_name(key)}"] = value
    return out


def _prediction(output_type: str, filtered_resps: list[Any]) -> Any:
    if output_type == "multiple_choice":  # filtered_resps: one (loglikelihood, is_greedy) per choice
        lls = [r[0] for r in filtered_resps]
        return max(range(len(lls)), key=lls.__getitem__)
    return filtered_resps[0] if len(filtered_resps) == 1 else filtered_resps


def split_metric_name(name: str) -> tuple[str, str]:
    """Our metric name back to lm-eval's (metric, filter): "acc" -> ("acc", "none"),
    "exact_match/strict-match" -> ("exact_match", "strict-match"); the inverse of metric_name."""
    metric, _, flt = name.partition("/")
    return metric, flt or "none"


def top_level_of(results: dict[str, Any]) -> dict[str, str]:
    """Every task and group named in group_subtasks -> its top-level group (mmlu_anatomy -> mmlu)."""
    parent = {c: g for g, subs in results.get("group_subtasks", {}).items() for c in subs}

    def top(name: str) -> str:
        seen = set()
        while name in parent and name not in seen:
            seen.add(name)
            name = parent[name]
        return name

    return {name: top(name) for name in parent}


def items_from_samples(results: dict[str, Any], headline: list[str] | None = None) -> list[dict[str, Any]]:
    """Per-sample records, one per (task, document, filter); `pred` is the argmax-loglikelihood
    choice for multiple choice (lm-eval's `acc` choice), the filtered response otherwise.

    `id`: `<task>/<doc>` (the document's own `id`, else lm-eval's doc_id) for a task with one
    filter pipeline (almost every task: ids stay what they always were), `<task>/<doc>/<filter>`
    for a task with several (gsm8k: strict-match, flexible-extract), where each document has one
    sample per filter. `headline` (a preset's headline metrics, our naming, e.g.
    "mmlu/acc", "gsm8k/exact_match/strict-match"): a sample of such a task (or of a leaf of such
    a group) under that metric's filter gets `headline: <that name>`, which `paired` averages."""
    tops = top_level_of(results)
    heads: dict[tuple[str, str], str] = {}
    for h in headline or []:
        top, _, name = h.partition("/")
        heads[(top, split_metric_name(name)[1])] = h
    items = []
    for task, rows in results.get("samples", {}).items():
        output_type = results["configs"][task].get("output_type", "")
        several = len({r["filter"] for r in rows}) > 1
        top = tops.get(task, task)
        for r in rows:
            item = {"task": task, "doc_id": r["doc_id"], "filter": r["filter"], "target": r["target"],
                    "pred": _prediction(output_type, r["filtered_resps"])}
            doc_id = r["doc"].get("id") if isinstance(r["doc"], dict) else None
            item["id"] = f"{task}/{doc_id if doc_id is not None else r['doc_id']}" + (f"/{r['filter']}" if several else "")
            item.update({m: r[m] for m in r["metrics"]})
            # the per-sample score a paired comparison uses: lm-eval's own first metric (acc for
            # multiple choice, exact_match for generation), higher is better
            item["score"] = r[r["metrics"][0]] if r["metrics"] else None
            if (top, r["filter"]) in heads:
                item["headline"] = heads[(top, r["filter"])]
            items.append(json.loads(_dumps(item)))  # tuples/numpy values -> plain json types
    return items


def preset_average(values: dict[str, float | None]) -> float | None:
    """A preset's `average`: the plain mean of its headline metrics' values (None when any is
    missing). The one place it is computed: the suite's metrics (from lm-eval's results) and
    `paired` (from per-item records, for compare) both call it. fsum: order does not matter."""
    if not values or any(v is None for v in values.values()):
        return None
    return math.fsum(float(v) for v in values.values()) / len(values)


def headline_values(items: list[dict[str, Any]]) -> dict[str, float]:
    """Each headline metric (items marked `headline`) from per-item records, as lm-eval aggregates
    it: a task's mean of the per-sample value; a group's (mmlu) aggregate over its leaf tasks,
    weighted by their sample counts (lm-eval's `weight_by_size`, its default and mmlu's setting),
    i.e. the mean over all the group's samples, not the mean of its subtasks' means."""
    per_headline: dict[str, list[float]] = {}
    for i in items:
        h = i.get("headline")
        metric = split_metric_name(h.partition("/")[2])[0] if h else None
        if h and i.get(metric) is not None:
            per_headline.setdefault(h, []).append(float(i[metric]))
    # sum over leaves of (leaf mean x leaf size) / total size == the sum over all samples / their count
    return {h: math.fsum(values) / len(values) for h, values in per_headline.items()}


def paired(items: list[dict[str, Any]]) -> dict[str, float | None]:
    """Per task and filter, the mean per-sample score (lm-eval's first metric; named as the suite
    names it: `<task>/acc`, `<task>/exact_match/strict-match`); for a preset's items, `average`:
    preset_average of the headline metrics computed from the items (the leaderboard's average
    on the same items). A task list or the tiny world has no average (the suite reports none)."""
    by_key: dict[str, list[float]] = {}
    for i in items:
        if i.get("score") is not None:
            metric = next((m for m in ("acc", "exact_match", "acc_norm") if m in i), "score")
            key = f"{i['task']}/{metric_name(metric + ',' + (i.get('filter') or 'none'))}"
            by_key.setdefault(key, []).append(float(i["score"]))
    out: dict[str, float | None] = {k: sum(v) / len(v) for k, v in by_key.items()}
    if any("headline" in i for i in items):
        out["average"] = preset_average(headline_values(items))
    return out


def fallback_columns(columns: list[str]) -> list[str]:
    """Without a preset's `average`: per task (`lm-eval/<task>/<metric>` columns), its acc, else
    acc_norm, else its first metric column."""
    out = []
    for task in dict.fromkeys(c.split("/")[1] for c in columns):
        own = [c for c in columns if c.split("/")[1] == task]
        out.append(next((f"{SUITE}/{task}/{m}" for m in ("acc", "acc_norm") if f"{SUITE}/{task}/{m}" in own), own[0]))
    return out


# ---------------------------------------------------------------- `selm-bench plan`
def estimate(cfg: Any, spec: Any) -> dict[str, Any]:
    """`selm-bench plan`: log-likelihood scoring, no generation and no judge (brainteaser's too)."""
    return {"generations": 0, "judge_calls": 0, "detail": "log-likelihood scoring (lm-eval), no judge"}


def plan_tasks(spec: Any) -> list[str]:
    """The task names a stage (an EvalSpec) runs, as `resolve_plan` picks them."""
    preset = spec.suite.split(":", 1)[1] if ":" in spec.suite else ""
    if preset in PRESETS:
        return [t.task for t in PRESETS[preset]]
    tasks = preset or spec.options.get("tasks") or []
    return [t.strip() for t in tasks.split(",") if t.strip()] if isinstance(tasks, str) else [str(t) for t in tasks]


_TASK_LINE = re.compile(r"""^(task|group):[ \t]*["']?([^"'\s#\[]+)""", re.M)


def local_task_names(include_path: str | None) -> set[str]:
    """Task and group names the YAMLs under an include_path define (read as text: lm-eval's
    YAMLs carry `!function` tags that a safe YAML load refuses)."""
    folder = Path(include_path).expanduser() if include_path else None
    names: set[str] = set()
    for f in sorted(folder.rglob("*.y*ml")) if folder and folder.is_dir() else []:
        try:
            names.update(m.group(2) for m in _TASK_LINE.finditer(f.read_text()))
        except (OSError, UnicodeDecodeError):
            continue
    return names


def artefacts(spec: Any) -> list[dict[str, Any]]:
    """A stage's tasks for the plan's artefact list: a local task (a YAML file or folder path, or
    defined under include_path) is local; a task of lm-eval's registry fetches its own dataset at
    run time, which the plan does not resolve (it would index lm-eval's task YAMLs), so it is not
    listed as a hub repo."""
    local = local_task_names(spec.options.get("include_path"))
    out = []
    for task in plan_tasks(spec):
        path = Path(task).expanduser()
        if task.startswith((".", "/", "~")) or task.endswith((".yaml", ".yml")) or path.exists():
            where, present = "local", path.exists()
        elif task in local:
            where, present = f"local ({spec.options['include_path']})", True
        else:
            where, present = "lm-eval registry (its dataset is fetched at run time)", None
        out.append({"kind": "lm-eval task", "name": task, "where": where, "present": present})
    return out


# ---------------------------------------------------------------- the report's drill-down
def drilldown(items: list[dict[str, Any]], folder: Path) -> str:
    """Per task: samples and their mean per-sample score."""
    by_task: dict[str, list[float]] = defaultdict(list)
    for i in items:
        by_task[str(i.get("task", "?"))].append(number(i.get("score", i.get("acc"))) or 0.0)
    return render("lm-eval.html", rows=[[t, len(v), fmt(mean(v))] for t, v in sorted(by_task.items())])


def run(ctx: EvalContext) -> SuiteResult:
    ctx.for_suite(SUITE)
    plan = resolve_plan(ctx)
    include_path = plan.include_path
    if plan.embedded:
        include_path = str((ctx.out_dir / "tasks").resolve())
        write_tinyworld_task(ctx.world_dir, Path(include_path))
    tm = make_task_manager(include_path, [s.task for s in plan.specs])
    lm = make_lm(ctx)
    runs = [evaluate(ctx, lm, tm, tasks, fewshot, ctx.option("limit")) for fewshot, tasks in plan.fewshot_groups()]
    results = merge_results(runs)
    save_outputs(ctx.out_dir, results)

    metrics: dict[str, Any] = metrics_from_results(results)
    info: dict[str, Any] = {"tasks": [s.task for s in plan.specs], "n-shot": results.get("n-shot", {}),
                            "n-samples": results.get("n-samples", {}), "limit": ctx.option("limit")}
    info["not_canonical"] = ((["local tasks"] if plan.include_path and not plan.embedded else [])
                             + ([f"limit {ctx.option('limit')} per task"] if ctx.option("limit") else []))
    headline = [f"{s.task}/{s.metric}" for s in plan.specs if s.metric] if plan.preset else None
    if headline:
        info["headline"] = headline
        missing = [h for h in headline if h not in metrics]
        if missing:
            info["average"] = f"not computed: missing {', '.join(missing)}"
        metrics["average"] = preset_average({h: metrics.get(h) for h in headline})
    return SuiteResult(metrics=metrics, items=items_from_samples(results, headline), info=info)


# ---------------------------------------------------------------- registration
# Everything the harness knows about this suite (harness/core/registry.py `Suite`).
register_suite(SUITE, help="EleutherAI lm-evaluation-harness: presets (openllm), task lists, local YAML tasks",
               options=LmEvalOptions, headline="average", fallback_columns=fallback_columns, paired=paired,
               preflight=preflight, plan=estimate, artefacts=artefacts, drilldown=drilldown, order=50)(run)
