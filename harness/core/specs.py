"""Stage specs: one frozen, JSON-serialisable model per stage kind.

A spec is both a stage's key (the hash of its JSON) and the only input of the function that
runs it (harness/run/run_stage.py). Inputs are `Ref`s: where the input lives (a path relative to
the run folder, an absolute path or a hub id) and the input stage's key, so a change upstream
changes every key downstream. Settings that cannot change a stage's output (a judge's
concurrency, retries, timeout) are not in a spec: they travel beside it as `runtime`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_serializer

from selm_bench.harness.core.config import WorldConfig
from selm_bench.harness.core.store import stable_hash


class Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Ref(Frozen):
    """An input: its location and the key of the stage that made it ('' = outside the run)."""

    path: str
    key: str = ""

    def resolve(self, root: Path) -> str:
        """A run-relative path under `root`; an absolute path or a hub id as it is."""
        p = Path(self.path)
        if p.is_absolute():
            return str(p)
        local = Path(root) / p
        return str(local) if local.exists() or self.key else self.path


class TinyModel(Frozen):
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    max_position_embeddings: int


class Strategy(Frozen):
    """How the launched processes hold the model, read from the accelerate config file: `ddp` (each
    process holds all of it; also one process, and the in-process launcher), DeepSpeed ZeRO or FSDP.
    Sharding changes the reduction order and so the numbers: a stage's key holds it."""

    kind: Literal["ddp", "deepspeed", "fsdp"] = "ddp"
    zero_stage: int | None = None  # deepspeed: 0-3
    offload_optimizer: str | None = None  # deepspeed: none, cpu, nvme
    offload_param: str | None = None  # deepspeed: none, cpu, nvme; fsdp: none or cpu
    sharding: str | None = None  # fsdp: fsdp_sharding_strategy


class TrainArgs(Frozen):
    """What a training stage hands to TRL's config (the global batch already split)."""

    learning_rate: float
    per_device_batch_size: int
    gradient_accumulation_steps: int
    num_processes: int  # the worker checks the launched world size against it
    epochs: float
    max_steps: int = -1
    warmup_ratio: float
    weight_decay: float = 0.0
    max_length: int
    max_prompt_length: int | None = None  # preference stages: the prompt's token budget
    truncation: Literal["authors", "cut-prompt"] = "authors"  # preference stages: how rows are fitted to max_length
    precompute_ref_log_probs: bool = True  # preference stages: reference log-probs scored once up front
    logging_steps: int
    lr_scheduler: str = "cosine"
    optim: str | None = None
    seed: int
    device: str  # resolved: cpu, cuda, cuda:N, mps
    precision: Literal["fp32", "bf16", "fp16"]
    gradient_checkpointing: bool
    strategy: Strategy = Strategy()  # dumped (so in spec.json and the key) only when not plain DDP

    @model_serializer(mode="wrap")
    def _strategy_when_sharded(self, handler: Any) -> dict[str, Any]:
        """Unsharded stages keep the JSON, and so the keys, they had before the field existed."""
        dumped = handler(self)
        if self.strategy == Strategy():
            dumped.pop("strategy", None)
        return dumped


class WorldSpec(Frozen):
    kind: Literal["world"] = "world"
    world: WorldConfig
    tiny_model: TinyModel | None  # None: `model.pretrained` replaces the tiny Llama
    seed: int


class SFTSpec(Frozen):
    kind: Literal["sft"] = "sft"
    base: Ref
    data: Ref  # jsonl rows with prompt/completion conversations
    train: TrainArgs
    trust_remote_code: bool = False  # the base model is in model.trust_remote_code


class PreferenceSpec(Frozen):
    """DPO (TRL's DPOTrainer) or SELM (SELMTrainer) from `policy` against the frozen `reference`."""

    kind: Literal["preference"] = "preference"
    policy: Ref
    reference: Ref
    pairs: Ref  # jsonl rows with prompt/chosen/rejected strings (+ y_ref; rows with used=false are skipped)
    loss: Literal["dpo", "selm"]
    beta: float
    alpha: float | None  # selm only
    nll_weight: float
    train: TrainArgs
    trust_remote_code: bool = False  # the run's base model is in model.trust_remote_code


class DataSpec(Frozen):
    """Real prompts (UltraFeedback-binarized's schema) cut into contiguous chunks: `chunk-<k>.jsonl`."""

    kind: Literal["data"] = "data"
    source: str  # hub id or local path
    split: str | None  # None: the source is one local file or one saved Dataset, which has no splits
    chunks: int
    expected_rows: int | None


class GenerateSpec(Frozen):
    """The online candidates of one prompt chunk: K policy samples, the reference's y_ref, the dataset pair."""

    kind: Literal["generate"] = "generate"
    policy: Ref
    prompts: Ref
    chunk: int  # 1-based
    chunks: int
    candidates: list[str]
    num_samples: int
    temperature: float
    top_p: float
    max_new_tokens: int
    ref_response: Literal["greedy", "sample"]
    backend: str
    backend_options: dict[str, Any]
    device: str
    seed: int


class RankSpec(Frozen):
    kind: Literal["rank"] = "rank"
    candidates: Ref
    ranker: str
    keep_ties: bool = False
    max_failures: float = 0.0  # fraction of prompts the ranker may fail on before the stage fails
    device: str = "cpu"
    batch_size: int = 16
    judge_base_url: str | None = None  # judge:<model> rankers: the endpoint (the key only from OPENAI_API_KEY)
    trust_remote_code: bool = False  # reward-model:<id>: the id is in model.trust_remote_code


class EvalSpec(Frozen):
    kind: Literal["eval"] = "eval"
    model: Ref
    name: str  # the checkpoint's row label (it is written into answer files)
    suite: str
    options: dict[str, Any]  # validated, every default filled in
    data_dir: str | None
    world: Ref | None
    references: dict[str, Ref]
    backend: str
    backend_options: dict[str, Any]
    judge: str | None
    judge_base_url: str | None
    device: str
    seed: int


Spec = Annotated[Union[WorldSpec, DataSpec, SFTSpec, PreferenceSpec, GenerateSpec, RankSpec, EvalSpec],
                 Field(discriminator="kind")]
_ADAPTER: TypeAdapter = TypeAdapter(Spec)


def spec_key(spec: BaseModel) -> str:
    """The hash of the spec's JSON. `trust_remote_code` enters it only when on, so specs that load
    no foreign code keep the keys they had before the field existed; the vllm interpreter never does."""
    dumped = spec.model_dump(mode="json")
    if dumped.get("trust_remote_code") is False:
        del dumped["trust_remote_code"]
    if isinstance(dumped.get("backend_options"), dict):  # where vllm runs (vllm.python) cannot change an output
        dumped["backend_options"].pop("python", None)
    return stable_hash(dumped)


def to_json(spec: BaseModel) -> str:
    return json.dumps(spec.model_dump(mode="json"), indent=1, sort_keys=True) + "\n"


def from_json(text: str) -> Any:
    return _ADAPTER.validate_json(text)


TRAINING_KINDS = ("sft", "preference")
