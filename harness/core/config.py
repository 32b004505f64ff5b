"""The typed experiment config: YAML in, validated pydantic models out.

Every field is typed, constrained and documented next to its definition. Fields marked
`runtime` (where results go, how many judge calls run at once, which trackers log, ...) cannot change any
stage's output and are kept out of every stage key; every other field reaches the specs
(harness/core/specs.py) and so the keys (tested by walking the fields).

Every error names the offending key (`online.beta: ...`) and is raised as ConfigError,
which the CLI turns into one line and exit code 2.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"
DEFAULT_CONFIG = CONFIG_DIR / "tiny.yaml"
RUNTIME = {"runtime": True}  # json_schema_extra of fields that cannot change a stage's output


class ConfigError(ValueError):
    pass


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


def _registered(kind: str):
    def check(name: str) -> str:
        from selm_bench.harness.core import registry

        if not registry.has(kind, name):
            raise ValueError(f"unknown {kind} {name!r} (known: {', '.join(registry.names(kind))})")
        return name

    return AfterValidator(check)


def _category(name: str) -> str:
    from selm_bench.harness.world import CATEGORIES

    if name not in CATEGORIES:
        raise ValueError(f"unknown category {name!r} (known: {', '.join(CATEGORIES)})")
    return name


TRACKERS = ("tensorboard", "wandb", "mlflow", "trackio")  # `report_to`: the trackers TRL and harness/run/tracking.py know


def _tracker(name: str) -> str:
    if name not in TRACKERS:
        raise ValueError(f"unknown tracker {name!r} (known: {', '.join(TRACKERS)})")
    return name


class WorldConfig(Section):
    """The embedded tiny world (synthetic tasks with verifiable answers)."""

    categories: list[Annotated[str, AfterValidator(_category)]] = Field(
        default_factory=lambda: ["add", "sub", "reverse", "count", "sort", "extract"], min_length=1,
        description="Task categories to generate.")
    n_sft: int = Field(6000, ge=1, description="SFT conversations.")
    n_pref: int = Field(1500, ge=1, description="Offline preference pairs (DPO).")
    n_prompts: int = Field(1200, ge=1, description="Online prompt pool, split into one chunk per iteration.")
    n_dev: int = Field(400, ge=1, description="Dev prompts (for choosing settings).")
    n_eval: int = Field(1000, ge=1, description="Held-out single-turn eval prompts.")
    n_two_turn: int = Field(120, ge=1, description="Held-out two-turn conversations (tiny MT-Bench).")
    n_mc: int = Field(300, ge=1, description="Held-out multiple-choice items (lm-eval task).")
    sft_noise: float = Field(0.0, ge=0, lt=1, description="Fraction of SFT answers replaced by the category's systematic mistake.")
    two_turn_fraction: float = Field(0.15, ge=0, le=1, description="Share of SFT conversations that are two-turn.")


def needs_remote_code(model: str | Path) -> bool:
    """A local checkpoint whose config.json maps classes to its own Python files (transformers' auto_map)."""
    config = Path(model).expanduser() / "config.json"
    try:
        return config.is_file() and "auto_map" in json.loads(config.read_text())
    except (OSError, json.JSONDecodeError):
        return False  # an unreadable config fails where the model loads, with its own message


class ModelConfig(Section):
    """`pretrained` = hub id or local path; empty = the tiny Llama built from the fields below."""

    pretrained: str = Field("", description="Hub id or local path of SFT's starting model; empty = the tiny Llama.")
    hidden_size: int = Field(128, ge=1, description="Tiny Llama hidden size.")
    num_layers: int = Field(2, ge=1, description="Tiny Llama layers.")
    num_heads: int = Field(4, ge=1, description="Tiny Llama attention heads.")
    intermediate_size: int = Field(341, ge=1, description="Tiny Llama MLP width.")
    max_position_embeddings: int = Field(128, ge=1, description="Tiny Llama context length.")
    trust_remote_code: list[str] = Field(
        default_factory=list,
        description="Models allowed to run their own Python code (transformers' trust_remote_code), each named exactly "
                    "as this config names it: `model.pretrained` (then also every checkpoint trained from it) or a "
                    "`reward-model:<id>` ranker's <id>. Empty (the default): no model's code runs.")

    @field_validator("pretrained")
    @classmethod
    def _local_path_exists(cls, p: str) -> str:
        if p and (p.startswith((".", "/", "~")) or p.count("/") > 1) and not Path(p).expanduser().exists():
            raise ValueError(f"no such local model: {p}")
        return p

    @field_validator("trust_remote_code")
    @classmethod
    def _named_models(cls, names: list[str]) -> list[str]:
        if any(not n.strip() for n in names):
            raise ValueError("an empty model name")
        return names

    def trusts(self, model: str) -> bool:
        """Whether `model` (a hub id or path as the config names it) may run its own code."""
        return bool(model) and model in self.trust_remote_code

    @model_validator(mode="after")
    def _foreign_code_allowed(self) -> "ModelConfig":
        if self.pretrained and needs_remote_code(self.pretrained) and not self.trusts(self.pretrained):
            raise ValueError(f"{self.pretrained} ships its own code (auto_map in config.json); to run it, name it "
                             f"in model.trust_remote_code")
        return self

    @model_validator(mode="after")
    def _heads_divide(self) -> "ModelConfig":
        if self.hidden_size % self.num_heads:
            raise ValueError("hidden_size must be divisible by num_heads")
        return self


class TrainConfig(Section):
    """What every training stage shares (sft, dpo, each online iteration)."""

    learning_rate: float = Field(1e-4, gt=0, description="Peak learning rate (cosine schedule).")
    batch_size: int = Field(32, ge=1, description="Global batch: per-device batch x processes x gradient_accumulation_steps.")
    gradient_accumulation_steps: int = Field(1, ge=1, description="Micro-batches accumulated per optimizer step.")
    epochs: float = Field(1.0, gt=0, description="Passes over the stage's data.")
    warmup_ratio: float = Field(0.1, ge=0, lt=1, description="Share of steps spent warming up.")
    max_length: int = Field(256, ge=8, description="Tokens kept per prompt+response sequence.")
    logging_steps: int = Field(10, ge=1, description="Steps between train_log.json entries.")
    lr_scheduler: Literal["cosine", "linear", "constant_with_warmup"] = Field("cosine", description="Learning-rate schedule.")
    optim: str | None = Field(None, description="transformers optimizer name (adamw_torch, ...); None = its default.")


class SFTConfig(TrainConfig):
    learning_rate: float = Field(3e-3, gt=0, description="Peak learning rate (cosine schedule).")
    batch_size: int = Field(64, ge=1, description="Global batch: per-device batch x processes x gradient_accumulation_steps.")
    epochs: float = Field(8.0, gt=0, description="Passes over the SFT corpus.")
    max_steps: int = Field(-1, ge=-1, description="Stop after this many steps (-1 = by epochs).")
    warmup_ratio: float = Field(0.03, ge=0, lt=1, description="Share of steps spent warming up.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")


class PreferenceTrainConfig(TrainConfig):
    max_prompt_length: int | None = Field(None, ge=1, description="The prompt's token budget: a cut prompt keeps its "
                                          "last N tokens (cut from the left, BOS kept); None = no separate prompt limit.")
    truncation: Literal["authors", "cut-prompt"] = Field(
        "authors", description="authors (as the SELM authors' TRL 0.8): only where prompt + the longest response "
        "exceed max_length, the prompt is cut to max_prompt_length, then each response to max_length - "
        "max_prompt_length; cut-prompt: every prompt is cut to max_prompt_length, then the sequence to max_length. "
        "Either way a row whose prompt alone fills max_length is dropped and counted (train_info.json).")
    precompute_ref_log_probs: bool = Field(True, description="Score chosen, rejected (and SELM's y_ref) with the frozen "
                                           "reference once before training (TRL's precompute_ref_log_probs), so each "
                                           "step runs the policy only; same loss. Multi-process runs score it live (TRL passes the "
                                           "precomputed columns through a per-process dataset cache).")


class DPOStageConfig(PreferenceTrainConfig):
    beta: float = Field(0.1, gt=0, description="DPO's beta (KL strength).")
    start: Literal["sft", "base"] = Field("sft", description="Policy and reference: the sft checkpoint, or the "
                                          "configured model itself (model.pretrained, e.g. an SFT'd hub model).")
    chunk: int = Field(1, ge=1, description="With data.prompts: the prompt chunk whose original pairs DPO trains on.")


class OnlineConfig(PreferenceTrainConfig):
    """Shared by iterative-dpo and selm (selm adds `alpha`)."""

    iterations: int = Field(2, ge=1, description="Online iterations; the prompt pool is cut into this many chunks.")
    start: Literal["sft", "dpo", "base"] = Field(
        "dpo", description="Iteration 1 starts from: dpo (as in the paper), sft, or base (model.pretrained itself, "
                           "e.g. an instruct model, with no SFT or DPO stage).")
    learning_rate: float | list[float] = Field(
        1e-4, description="Peak learning rate: one value for all iterations, or a list with one per iteration.")
    chunks: list[int] | None = Field(None, description="With data.prompts: the prompt chunk of each iteration "
                                     "(e.g. [2, 3, 4]); None = 1..iterations.")
    keep_ties: bool = Field(False, description="Keep a prompt whose best and worst candidates tie (chosen = rejected; "
                            "the SELM authors keep them: only the optimism term then moves the policy).")
    beta: float = Field(0.1, gt=0, description="DPO's beta in every iteration.")
    alpha: float = Field(0.001, ge=0, description="SELM's optimism weight (selm only; 0 = iterative DPO's loss).")
    nll_weight: float = Field(0.0, ge=0, description="Chosen-response NLL added to both online losses (iterative RPO).")
    num_samples: int = Field(4, ge=0, description="Policy samples per prompt (besides the greedy y_ref).")
    temperature: float = Field(1.0, ge=0, description="Sampling temperature of the policy samples.")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling of the policy samples.")
    max_new_tokens: int = Field(24, ge=1, description="Longest generated response.")
    candidates: list[Literal["policy", "dataset"]] = Field(
        default_factory=lambda: ["policy", "dataset"], min_length=1,
        description="Candidate sources: policy (samples + y_ref) and/or dataset (the prompt's chosen/rejected).")
    ranker: Annotated[str, _registered("ranker")] = Field(
        "oracle", description="Ranker: oracle (tiny world), reward-model:<hub id or path>, pairrm.")
    max_ranker_failures: float = Field(0.0, ge=0, le=1, description="Fraction of prompts the ranker may fail on "
                                       "(counted in the manifest) before the rank stage fails.")
    backend: Annotated[str, _registered("backend")] = Field("hf", description="Generation backend (hf or vllm).")
    ref_response: Literal["greedy", "sample"] = Field("greedy", description="How y_ref is decoded from the reference policy.")

    @model_validator(mode="after")
    def _has_candidates(self) -> "OnlineConfig":
        if self.num_samples < 1 and "dataset" not in self.candidates:
            raise ValueError("no candidates: num_samples is 0 and 'dataset' is not in online.candidates")
        return self

    @field_validator("learning_rate")
    @classmethod
    def _positive(cls, lr: float | list[float]) -> float | list[float]:
        if any(v <= 0 for v in (lr if isinstance(lr, list) else [lr])) or lr == []:
            raise ValueError(f"must be > 0 (one value, or a non-empty list of one per iteration), got {lr!r}")
        return lr

    def lr(self, iteration: int) -> float:
        return self.learning_rate[iteration - 1] if isinstance(self.learning_rate, list) else self.learning_rate

    def chunk(self, iteration: int) -> int:
        return self.chunks[iteration - 1] if self.chunks else iteration


class DataConfig(Section):
    """Real prompt data (UltraFeedback-binarized's schema: prompt, chosen and rejected message lists);
    empty `prompts` = the tiny world's prompt pool."""

    prompts: str = Field("", description="Hub id or local path (parquet, jsonl, or a saved dataset) of the prompts.")
    split: str = Field("train_prefs", description="The dataset split.")
    chunks: int = Field(1, ge=1, description="Contiguous equal chunks the split is cut into (the remainder is dropped).")
    expected_rows: int | None = Field(None, ge=1, description="Rows the split must have (checked when loaded; "
                                      "lets `selm-bench plan` size the chunks offline).")


class EvalConfig(Section):
    batch_size: int = Field(64, ge=1, description="Generation batch (also the online generation batch).")
    judge: Annotated[str, _registered("judge")] = Field("oracle", description="Judge: oracle or openai:<model>.")
    data_dir: str = Field("", description="Local mirror of the real benchmark data (see docs/suites.md).")
    backend: Annotated[str, _registered("backend")] = Field("hf", description="Generation backend of the suites (hf or vllm).")
    judge_base_url: str = Field("", description="openai: judges' base URL (else OPENAI_BASE_URL; key only from OPENAI_API_KEY).")
    judge_concurrency: int = Field(8, ge=1, description="Judge calls in flight.", json_schema_extra=RUNTIME)
    judge_max_retries: int = Field(5, ge=0, description="Retries of a failed judge call.", json_schema_extra=RUNTIME)
    judge_timeout: float = Field(60.0, gt=0, description="Seconds per judge call.", json_schema_extra=RUNTIME)


class VLLMConfig(Section):
    """Engine options of the `vllm` backend (online generation and every generating suite)."""

    tensor_parallel_size: int = Field(1, ge=1, description="GPUs per engine.")
    data_parallel_size: int = Field(1, ge=1, description="Independent engines on disjoint prompt shards.")
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1, description="Share of GPU memory an engine may take.")
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = Field("auto", description="Weights' dtype in vLLM.")
    max_model_len: int | None = Field(None, ge=1, description="Context length (None = the model's).")
    python: str = Field("", description="Interpreter whose environment has vllm (e.g. .venv-vllm/bin/python from "
                        "`make vllm-env`); empty = this one. The worker imports nothing of this project.",
                        json_schema_extra=RUNTIME)


class LaunchConfig(Section):
    """How training stages run: in this process, or under `accelerate launch` on their spec."""

    launcher: Literal["inprocess", "accelerate"] = Field(
        "inprocess", description="inprocess, or accelerate (each training stage under `accelerate launch`).",
        json_schema_extra=RUNTIME)
    accelerate_config: str = Field("", description="accelerate config file (configs/accelerate/*.yaml).",
                                   json_schema_extra=RUNTIME)
    num_processes: int = Field(1, ge=1, description="Training processes; the global batch is split across them.")
    wrapper: str = Field("", description="Command put before `accelerate launch` on several nodes, e.g. "
                         "`srun --nodes=2 --ntasks-per-node=1`; each node then gets --machine_rank $SLURM_NODEID.",
                         json_schema_extra=RUNTIME)

    @field_validator("accelerate_config")
    @classmethod
    def _exists(cls, p: str) -> str:
        if p and not Path(p).is_file():
            raise ValueError(f"no such file: {p}")
        return p


class ExperimentConfig(Section):
    name: str = Field("tiny", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", description="Run name (folder under output_dir).",
                      json_schema_extra=RUNTIME)
    seed: int = Field(0, ge=0, description="Seed of the world, training and sampling.")
    output_dir: str = Field("results", description="Folder of runs.", json_schema_extra=RUNTIME)
    report_to: list[Annotated[str, AfterValidator(_tracker)]] = Field(
        default_factory=list, description="Experiment trackers (tensorboard, wandb, mlflow, trackio; the `tracking` "
        "extra installs them): every training stage's TRL logs and each checkpoint's eval metrics and the "
        "leaderboard, under RUN/tracking/ (harness/run/tracking.py). Empty (the default): none.",
        json_schema_extra=RUNTIME)
    device: str = Field("auto", pattern=r"^(auto|cpu|mps|cuda(:\d+)?)$",
                        description="auto (CUDA when present, else CPU), cpu, mps, cuda or cuda:N.")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="Training precision: auto = bf16 on CUDA, fp32 elsewhere.")
    gradient_checkpointing: bool | None = Field(None, description="None = on for CUDA, off elsewhere.")
    methods: list[Annotated[str, _registered("method")]] = Field(
        default_factory=lambda: ["sft", "dpo", "iterative-dpo", "selm"], min_length=1, description="Methods to train.")
    suites: list[Annotated[str, _registered("suite")]] = Field(
        default_factory=lambda: ["tiny-world", "lm-eval", "mt-bench", "alpaca-eval"], description="Suites to evaluate on.")
    world: WorldConfig = Field(default_factory=WorldConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    sft: SFTConfig = Field(default_factory=SFTConfig)
    dpo: DPOStageConfig = Field(default_factory=DPOStageConfig)
    online: OnlineConfig = Field(default_factory=OnlineConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    vllm: VLLMConfig = Field(default_factory=VLLMConfig)
    launch: LaunchConfig = Field(default_factory=LaunchConfig)
    suite_options: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Per-suite options (each suite's typed options model validates them).")

    @field_validator("report_to", mode="before")
    @classmethod
    def _one_tracker_or_a_list(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v  # `--set report_to=tensorboard` as well as `[tensorboard, wandb]`

    @field_validator("report_to")
    @classmethod
    def _each_once(cls, names: list[str]) -> list[str]:
        return list(dict.fromkeys(names))

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


SECTIONS = tuple(ExperimentConfig.model_fields)


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif str(part).startswith(("function-after", "literal")):  # pydantic's validator frames
            continue
        else:
            out += ("." if out else "") + str(part)
    return out or "config"


def _message(err: dict[str, Any]) -> str:
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        return "unknown key"
    if ("input" in err and err["type"] not in ("missing",) and not isinstance(err["input"], (dict, list))
            and str(err["input"]) not in msg):
        msg += f", got {err['input']!r}"
    return msg


def config_error(exc: ValidationError, prefix: str = "") -> ConfigError:
    """The first pydantic error as `key: message` (one line)."""
    err = exc.errors()[0]
    key = _loc(tuple(err["loc"]))
    if prefix:
        key = prefix if key == "config" else f"{prefix}.{key}"
    return ConfigError(f"{key}: {_message(err)}")


def validate_suite_options(suite: str, raw: dict[str, Any]) -> dict[str, Any]:
    """A suite's options with every default filled in (its typed model validates them)."""
    from selm_bench.harness.core import registry

    model = registry.suite_options(suite)
    if model is None:
        raise ConfigError(f"suite_options.{suite}: not a config section or a registered suite "
                          f"(suites: {', '.join(registry.names('suite'))})")
    try:
        return model.model_validate(raw).model_dump(mode="json")
    except ValidationError as e:
        raise config_error(e, registry.base_name("suite", suite)) from None


def _cross_checks(cfg: ExperimentConfig) -> None:
    o, real = cfg.online, bool(cfg.data.prompts)
    if cfg.launch.launcher == "inprocess" and cfg.launch.num_processes > 1:
        raise ConfigError(f"launch.num_processes: {cfg.launch.num_processes} processes need --launcher accelerate")
    if not real and cfg.world.n_prompts < o.iterations:
        raise ConfigError(f"online.iterations: {o.iterations} iterations need at least as many prompts "
                          f"(world.n_prompts = {cfg.world.n_prompts})")
    if isinstance(o.learning_rate, list) and len(o.learning_rate) != o.iterations:
        raise ConfigError(f"online.learning_rate: {len(o.learning_rate)} values for {o.iterations} iterations")
    if o.chunks is not None and (len(o.chunks) != o.iterations or not real):
        raise ConfigError("online.chunks: needs data.prompts and one chunk per iteration")
    for key, chunk in [("dpo.chunk", cfg.dpo.chunk), *(("online.chunks", c) for c in o.chunks or [])]:
        if real and not 1 <= chunk <= cfg.data.chunks:
            raise ConfigError(f"{key}: chunk {chunk} is outside 1..data.chunks ({cfg.data.chunks})")
    if "base" in (o.start, cfg.dpo.start) and not cfg.model.pretrained:
        raise ConfigError("model.pretrained: a `base` start needs the configured model (a hub id or local path)")
    if real and "sft" in cfg.methods:
        raise ConfigError("methods: sft needs the tiny world's SFT corpus; with data.prompts start from a pretrained model")
    if real and (o.start == "sft" or ("dpo" in cfg.methods or o.start == "dpo") and cfg.dpo.start == "sft"):
        raise ConfigError("dpo.start: with data.prompts there is no sft stage; use `base` (model.pretrained)")
    if real and o.ranker == "oracle":
        raise ConfigError("online.ranker: oracle needs the tiny world's gold answers; with data.prompts use "
                          "reward-model:<model> or pairrm")
    for key, opts in cfg.suite_options.items():
        validate_suite_options(key, opts)


def parse_value(text: str) -> Any:
    """A --set value: YAML scalars and lists (`64`, `true`, `[a, b]`), else the raw string."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _field_type(parts: list[str]) -> Any:
    """The annotation of a dotted config key, if it names a field."""
    model: Any = ExperimentConfig
    for p in parts:
        fields = getattr(model, "model_fields", None)
        if not fields or p not in fields:
            return None
        model = fields[p].annotation
    return model


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """`KEY=VALUE` with dotted keys. A first part naming a suite goes to `suite_options`.
    A value for a text field stays text (`--set name=007`); others are read as YAML."""
    data = copy.deepcopy(data)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item}: expected KEY=VALUE")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        if parts[0] not in SECTIONS:
            if len(parts) < 2:
                raise ConfigError(f"--set {key}: unknown key")
            parts = ["suite_options", parts[0], ".".join(parts[1:])]
        node = data
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {key}: {p} is not a section")
        node[parts[-1]] = raw if _field_type(parts) is str else parse_value(raw)
    return data


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None,
                sets: list[str] | None = None) -> ExperimentConfig:
    path = Path(path) if path else DEFAULT_CONFIG
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}: invalid YAML{where}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of config sections, got {type(data).__name__}")
    for key, value in (overrides or {}).items():
        if value is not None:
            data[key] = value
    data = apply_overrides(data, sets or [])
    try:
        cfg = ExperimentConfig.model_validate(data)
    except ValidationError as e:
        raise config_error(e) from None
    _cross_checks(cfg)
    return cfg
