"""The typed experiment config: YAML in, validated dataclasses out.

Every error names the offending key (`online.beta: must be > 0`) and is raised as
ConfigError, which the CLI turns into one line and exit code 2.
"""

from __future__ import annotations

import copy
import math
import re
import dataclasses
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
DEFAULT_CONFIG = CONFIG_DIR / "tiny.yaml"


class ConfigError(ValueError):
    pass


@dataclass
class WorldConfig:
    """The embedded tiny world (synthetic tasks with verifiable answers)."""

    categories: list[str] = field(default_factory=lambda: ["add", "sub", "reverse", "count", "sort", "extract"])
    n_sft: int = 6000
    n_pref: int = 1500
    n_prompts: int = 1200
    n_dev: int = 400
    n_eval: int = 1000
    n_two_turn: int = 120
    n_mc: int = 300
    sft_noise: float = 0.0  # fraction of SFT answers replaced by the category's systematic mistake
    two_turn_fraction: float = 0.15  # share of SFT conversations that are two-turn


@dataclass
class ModelConfig:
    """`pretrained` = hub id or local path; empty = the tiny Llama built from the fields below."""

    pretrained: str = ""
    hidden_size: int = 128
    num_layers: int = 2
    num_heads: int = 4
    intermediate_size: int = 341
    max_position_embeddings: int = 128


@dataclass
class SFTConfig:
    learning_rate: float = 3e-3
    batch_size: int = 64
    epochs: float = 8.0
    max_steps: int = -1
    warmup_ratio: float = 0.03
    weight_decay: float = 0.0


@dataclass
class DPOStageConfig:
    beta: float = 0.1
    learning_rate: float = 1e-4
    batch_size: int = 32
    epochs: float = 1.0


@dataclass
class OnlineConfig:
    """Shared by iterative-dpo and selm (selm adds `alpha`)."""

    iterations: int = 2
    start: str = "dpo"  # the checkpoint iteration 1 starts from: dpo (as in the paper) or sft
    beta: float = 0.1
    alpha: float = 0.001
    nll_weight: float = 0.0  # chosen-response NLL added to both losses (iterative RPO, Pang et al. 2024)
    learning_rate: float = 1e-4
    batch_size: int = 32
    epochs: float = 1.0
    num_samples: int = 4
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 24
    candidates: list[str] = field(default_factory=lambda: ["policy", "dataset"])
    ranker: str = "oracle"
    backend: str = "hf"
    ref_response: str = "greedy"  # how y_ref is decoded from the reference policy


@dataclass
class EvalConfig:
    batch_size: int = 64
    judge: str = "oracle"
    data_dir: str = ""
    backend: str = "hf"
    # `openai:<model>` judges: base URL (else OPENAI_BASE_URL; the key only ever from OPENAI_API_KEY)
    judge_base_url: str = ""
    judge_concurrency: int = 8
    judge_max_retries: int = 5
    judge_timeout: float = 60.0


@dataclass
class ExperimentConfig:
    name: str = "tiny"
    seed: int = 0
    output_dir: str = "results"
    device: str = "cpu"
    methods: list[str] = field(default_factory=lambda: ["sft", "dpo", "iterative-dpo", "selm"])
    suites: list[str] = field(default_factory=lambda: ["tiny-world", "lm-eval", "mt-bench", "alpaca-eval"])
    world: WorldConfig = field(default_factory=WorldConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    sft: SFTConfig = field(default_factory=SFTConfig)
    dpo: DPOStageConfig = field(default_factory=DPOStageConfig)
    online: OnlineConfig = field(default_factory=OnlineConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    suite_options: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _type_ok(value: Any, tp: Any) -> bool:
    origin = typing.get_origin(tp)
    if tp is Any:
        return True
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp in (str, bool):
        return isinstance(value, tp)
    if origin is list:
        (inner,) = typing.get_args(tp)
        return isinstance(value, list) and all(_type_ok(v, inner) for v in value)
    if origin is dict:
        k, v = typing.get_args(tp)
        return isinstance(value, dict) and all(_type_ok(a, k) and _type_ok(b, v) for a, b in value.items())
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, a) for a in typing.get_args(tp))
    return isinstance(value, tp)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _build(cls: type, data: Any, prefix: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    for key in data:
        if key not in known:
            where = f"{prefix}.{key}" if prefix else str(key)
            raise ConfigError(f"{where}: unknown key (known: {', '.join(sorted(known))})")
    kwargs = {}
    for f in fields(cls):
        if f.name not in data:
            continue
        where = f"{prefix}.{f.name}" if prefix else f.name
        tp, value = hints[f.name], data[f.name]
        if dataclasses.is_dataclass(tp):
            kwargs[f.name] = _build(tp, value, where)
            continue
        if tp is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if tp is float and isinstance(value, str):  # PyYAML reads "3e-4" (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if not _type_ok(value, tp):
            raise ConfigError(f"{where}: expected {_type_name(tp)}, got {type(value).__name__} ({value!r})")
        kwargs[f.name] = value
    return cls(**kwargs)


def _check(cfg: ExperimentConfig) -> None:
    from harness import registry

    def need(cond: bool, key: str, msg: str) -> None:
        if not cond:
            raise ConfigError(f"{key}: {msg}")

    for key in ("online.beta", "dpo.beta", "online.alpha", "online.nll_weight", "online.temperature",
                "sft.learning_rate", "dpo.learning_rate", "online.learning_rate", "world.sft_noise"):
        sec, name = key.split(".")
        need(math.isfinite(getattr(getattr(cfg, sec), name)), key, "must be a finite number")
    need(re.fullmatch(r"cpu|mps|cuda(:\d+)?", cfg.device) is not None, "device", f"must be cpu, mps, cuda or cuda:N, got {cfg.device!r}")
    for key in ("hidden_size", "num_layers", "num_heads", "intermediate_size", "max_position_embeddings"):
        need(getattr(cfg.model, key) >= 1, f"model.{key}", f"must be >= 1, got {getattr(cfg.model, key)}")
    p = cfg.model.pretrained
    if p and (p.startswith((".", "/", "~")) or p.count("/") > 1):
        need(Path(p).expanduser().exists(), "model.pretrained", f"no such local model: {p}")
    for sec in ("sft", "dpo", "online"):
        need(getattr(cfg, sec).epochs > 0, f"{sec}.epochs", f"must be > 0, got {getattr(cfg, sec).epochs}")
    need(cfg.online.max_new_tokens >= 1, "online.max_new_tokens", "must be >= 1")
    need(cfg.eval.batch_size >= 1, "eval.batch_size", "must be >= 1")
    need(bool(cfg.world.categories), "world.categories", "at least one category is needed")
    need(cfg.online.start in ("sft", "dpo"), "online.start", f"must be 'sft' or 'dpo', got {cfg.online.start!r}")
    need(cfg.online.beta > 0, "online.beta", f"must be > 0, got {cfg.online.beta}")
    need(cfg.dpo.beta > 0, "dpo.beta", f"must be > 0, got {cfg.dpo.beta}")
    need(cfg.online.alpha >= 0, "online.alpha", f"must be >= 0, got {cfg.online.alpha}")
    need(cfg.online.nll_weight >= 0, "online.nll_weight", f"must be >= 0, got {cfg.online.nll_weight}")
    need(cfg.online.iterations >= 1, "online.iterations", f"must be >= 1, got {cfg.online.iterations}")
    need(cfg.online.num_samples >= 0, "online.num_samples", "must be >= 0")
    need(0 < cfg.online.top_p <= 1, "online.top_p", f"must be in (0, 1], got {cfg.online.top_p}")
    need(cfg.online.temperature >= 0, "online.temperature", "must be >= 0")
    need(cfg.online.ref_response in ("greedy", "sample"), "online.ref_response", "must be 'greedy' or 'sample'")
    for sec in ("sft", "dpo", "online"):
        lr = getattr(cfg, sec).learning_rate
        need(lr > 0, f"{sec}.learning_rate", f"must be > 0, got {lr}")
        need(getattr(cfg, sec).batch_size >= 1, f"{sec}.batch_size", "must be >= 1")
    need(0 <= cfg.world.sft_noise < 1, "world.sft_noise", "must be in [0, 1)")
    for key in ("n_sft", "n_pref", "n_prompts", "n_eval", "n_mc", "n_two_turn", "n_dev"):
        need(getattr(cfg.world, key) >= 1, f"world.{key}", "must be >= 1")
    need(cfg.model.hidden_size % cfg.model.num_heads == 0, "model.hidden_size", "must be divisible by model.num_heads")
    need(bool(cfg.methods), "methods", "at least one method is needed")
    for i, m in enumerate(cfg.methods):
        need(registry.has("method", m), f"methods[{i}]", f"unknown method {m!r} (known: {', '.join(registry.names('method'))})")
    for i, s in enumerate(cfg.suites):
        need(registry.has("suite", s), f"suites[{i}]", f"unknown suite {s!r} (known: {', '.join(registry.names('suite'))})")
    for key, value in (("online.ranker", cfg.online.ranker),):
        need(registry.has("ranker", value), key, f"unknown ranker {value!r} (known: {', '.join(registry.names('ranker'))})")
    for key, value in (("online.backend", cfg.online.backend), ("eval.backend", cfg.eval.backend)):
        need(registry.has("backend", value), key, f"unknown backend {value!r} (known: {', '.join(registry.names('backend'))})")
    need(registry.has("judge", cfg.eval.judge), "eval.judge", f"unknown judge {cfg.eval.judge!r} (known: {', '.join(registry.names('judge'))})")
    need(cfg.eval.judge_concurrency >= 1, "eval.judge_concurrency", "must be >= 1")
    need(cfg.eval.judge_max_retries >= 0, "eval.judge_max_retries", "must be >= 0")
    need(cfg.eval.judge_timeout > 0, "eval.judge_timeout", "must be > 0")
    for c in cfg.online.candidates:
        need(c in ("policy", "dataset"), "online.candidates", f"unknown candidate source {c!r} (known: policy, dataset)")
    need(bool(cfg.online.candidates), "online.candidates", "at least one of: policy, dataset")
    need(cfg.online.num_samples >= 1 or "dataset" in cfg.online.candidates, "online.num_samples", "no candidates: num_samples is 0 and 'dataset' is not in online.candidates")
    need(cfg.world.n_prompts >= cfg.online.iterations, "online.iterations",
         f"{cfg.online.iterations} iterations need at least as many prompts (world.n_prompts = {cfg.world.n_prompts})")
    for key, opts in cfg.suite_options.items():
        need(registry.has("suite", key), f"suite_options.{key}",
             f"not a config section or a registered suite (suites: {', '.join(registry.names('suite'))})")
        known = registry.suite_options(key)
        need(isinstance(opts, dict), f"suite_options.{key}", "must be a mapping of option: value")
        for opt in opts if known is not None else ():
            need(opt in known, f"{key}.{opt}", f"unknown option of suite {key} (known: {', '.join(sorted(known))})")
    for c in cfg.world.categories:
        from harness.tinyworld import CATEGORIES

        need(c in CATEGORIES, "world.categories", f"unknown category {c!r} (known: {', '.join(CATEGORIES)})")


def parse_value(text: str) -> Any:
    """A --set value: YAML scalars and lists (`64`, `true`, `[a, b]`), else the raw string."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """`KEY=VALUE` with dotted keys. A first part naming a suite goes to `suite_options`."""
    data = copy.deepcopy(data)
    top = {f.name for f in fields(ExperimentConfig)}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item}: expected KEY=VALUE")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        if parts[0] not in top:
            if len(parts) < 2:
                raise ConfigError(f"--set {key}: unknown key")
            parts = ["suite_options", parts[0], ".".join(parts[1:])]
        node = data
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {key}: {p} is not a section")
        node[parts[-1]] = parse_value(raw)
    return data


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None, sets: list[str] | None = None) -> ExperimentConfig:
    path = Path(path) if path else DEFAULT_CONFIG
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}: invalid YAML{where}") from None
    for key, value in (overrides or {}).items():
        if value is not None:
            data[key] = value
    data = apply_overrides(data, sets or [])
    cfg = _build(ExperimentConfig, data, "")
    _check(cfg)
    return cfg
