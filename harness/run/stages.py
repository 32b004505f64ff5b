"""From a config to the run's stages: each a name, a folder in the run and a frozen spec.

Devices and precisions are resolved here (`device: auto` -> cuda when present, else cpu;
`precision: auto` -> bf16 on CUDA, fp32 elsewhere), so a spec says exactly what its stage
does and its key changes when that changes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from selm_bench.harness.core import registry
from selm_bench.harness.core.config import ConfigError, ExperimentConfig, TrainConfig, validate_suite_options
from selm_bench.harness.core.specs import DataSpec, EvalSpec, Ref, Strategy, TinyModel, TrainArgs, WorldSpec, spec_key


@dataclass(frozen=True)
class Stage:
    name: str  # "world", "sft", "selm/iter-1/generate", "eval selm/iter-1 tiny-world"
    folder: str  # run-relative folder the stage writes (atomically)
    spec: Any
    checkpoint: str | None = None  # the checkpoint a training stage makes ("selm/iter-1")
    method: str | None = None
    iteration: int | None = None

    @property
    def key(self) -> str:
        return spec_key(self.spec)

    def ref(self, file: str = "") -> Ref:
        return Ref(path=f"{self.folder}/{file}".rstrip("/"), key=self.key)


@lru_cache(maxsize=1)
def _no_gpu_driver() -> bool:
    """True where no GPU can be usable: no NVIDIA driver (/proc/driver/nvidia, nvidia-smi, libcuda)
    and no ROCm device (/dev/kfd). Then `auto` is cpu without importing torch (seconds) to ask."""
    import ctypes.util
    import os
    import shutil

    return not (os.path.exists("/proc/driver/nvidia") or os.path.exists("/dev/kfd") or shutil.which("nvidia-smi")
                or ctypes.util.find_library("cuda"))


def resolve_device(device: str) -> str:
    if device != "auto":
        return device
    if _no_gpu_driver():
        return "cpu"
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def precision(cfg: ExperimentConfig) -> str:
    if cfg.precision != "auto":
        return cfg.precision
    return "bf16" if resolve_device(cfg.device).startswith("cuda") else "fp32"


def _offload(value: Any) -> str:
    return str(value or "none").lower()


def strategy(cfg: ExperimentConfig) -> Strategy:
    """How the training processes hold the model: plain DDP (the default: in-process, or `accelerate
    launch` without a config file), else what the accelerate config file says (DeepSpeed ZeRO, FSDP)."""
    if cfg.launch.launcher != "accelerate" or not cfg.launch.accelerate_config:
        return Strategy()
    import yaml

    path = cfg.launch.accelerate_config
    try:
        acc = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"launch.accelerate_config: cannot read {path}: {e}") from e
    kind = str(acc.get("distributed_type", "NO")).upper()
    if kind == "DEEPSPEED":
        ds = acc.get("deepspeed_config") or {}
        if ds.get("deepspeed_config_file"):  # a DeepSpeed JSON: its zero_optimization section decides
            file = Path(ds["deepspeed_config_file"])  # as accelerate reads it: relative to the working folder
            try:
                zero = (json.loads(file.read_text()).get("zero_optimization") or {})
            except (OSError, ValueError) as e:
                raise ConfigError(f"launch.accelerate_config: cannot read its deepspeed_config_file {file}: {e}") from e
            stage = zero.get("stage", 0)
            opt, par = (zero.get("offload_optimizer") or {}).get("device"), (zero.get("offload_param") or {}).get("device")
        else:
            stage, opt, par = ds.get("zero_stage", 0), ds.get("offload_optimizer_device"), ds.get("offload_param_device")
        if str(stage) not in {"0", "1", "2", "3"}:
            raise ConfigError(f"launch.accelerate_config: {path}: ZeRO stage {stage!r} is not 0, 1, 2 or 3")
        return Strategy(kind="deepspeed", zero_stage=int(stage), offload_optimizer=_offload(opt), offload_param=_offload(par))
    if kind == "FSDP":
        fs = acc.get("fsdp_config") or {}
        return Strategy(kind="fsdp", sharding=str(fs.get("fsdp_sharding_strategy", "FULL_SHARD")),
                        offload_param="cpu" if fs.get("fsdp_offload_params") else "none")
    return Strategy()  # NO, MULTI_GPU, MULTI_CPU, ...: every process holds the whole model


def train_args(cfg: ExperimentConfig, section: str, iteration: int | None = None) -> TrainArgs:
    """The section's training settings with the global batch split over processes and accumulation
    (and, for an online iteration, that iteration's learning rate)."""
    t: TrainConfig = getattr(cfg, section)
    procs, accum = cfg.launch.num_processes, t.gradient_accumulation_steps
    if t.batch_size % (procs * accum):
        raise ConfigError(f"{section}.batch_size: {t.batch_size} is not divisible by launch.num_processes x "
                          f"{section}.gradient_accumulation_steps = {procs * accum}")
    device = resolve_device(cfg.device)
    checkpointing = cfg.gradient_checkpointing
    return TrainArgs(
        learning_rate=t.lr(iteration) if iteration else t.learning_rate, per_device_batch_size=t.batch_size // (procs * accum),
        gradient_accumulation_steps=accum, num_processes=procs, epochs=t.epochs,
        max_steps=getattr(t, "max_steps", -1), warmup_ratio=t.warmup_ratio, weight_decay=getattr(t, "weight_decay", 0.0),
        max_length=t.max_length, max_prompt_length=getattr(t, "max_prompt_length", None),
        truncation=getattr(t, "truncation", "authors"), logging_steps=t.logging_steps,
        precompute_ref_log_probs=getattr(t, "precompute_ref_log_probs", True),
        lr_scheduler=t.lr_scheduler, optim=t.optim, seed=cfg.seed, device=device, precision=precision(cfg),
        gradient_checkpointing=device.startswith("cuda") if checkpointing is None else checkpointing,
        strategy=strategy(cfg),
    )


def trusts_base(cfg: ExperimentConfig) -> bool:
    """The run's models (model.pretrained and every checkpoint trained from it) may run their own code."""
    return cfg.model.trusts(cfg.model.pretrained)


def backend_options(cfg: ExperimentConfig, backend: str, trust_remote_code: bool | None = None) -> dict[str, Any]:
    """What a generation backend is built with: the batch, the engine options for vllm, and
    `trust_remote_code` only when on (default: when the run's base model is allowed)."""
    opts: dict[str, Any] = {"batch_size": cfg.eval.batch_size}
    if backend == "vllm":
        opts.update(cfg.vllm.model_dump(mode="json"))
    if trusts_base(cfg) if trust_remote_code is None else trust_remote_code:
        opts["trust_remote_code"] = True
    return opts


def world_stage(cfg: ExperimentConfig) -> Stage:
    m = cfg.model
    tiny = None if m.pretrained else TinyModel(**m.model_dump(exclude={"pretrained", "trust_remote_code"}))
    return Stage("world", "world", WorldSpec(world=cfg.world, tiny_model=tiny, seed=cfg.seed))


def split_applies(source: str) -> bool:
    """Whether `data.split` selects anything in `source`, as harness/data.py loads it: not for
    one local file (.jsonl/.json/.parquet: read whole, as split "train") nor for a `save_to_disk` folder
    of one Dataset (dataset_info.json and state.json, as datasets' `load_from_disk` tells them apart);
    yes for a hub id, a saved DatasetDict and a folder of data files. The data spec records no split
    where it does not apply, so the stage key and the plan claim none."""
    path = Path(source).expanduser()
    if path.is_file():
        return False
    return not (path.is_dir() and (path / "dataset_info.json").is_file() and (path / "state.json").is_file())


@dataclass(frozen=True)
class Sources:
    """Where a run's data comes from: the tiny world, or real prompts (`data.prompts`) cut into chunks."""

    cfg: ExperimentConfig
    world: Stage | None
    data: Stage | None

    @classmethod
    def of(cls, cfg: ExperimentConfig) -> "Sources":
        if not cfg.data.prompts:
            return cls(cfg, world_stage(cfg), None)
        d = cfg.data
        split = d.split if split_applies(d.prompts) else None
        spec = DataSpec(source=d.prompts, split=split, chunks=d.chunks, expected_rows=d.expected_rows)
        return cls(cfg, None, Stage("data", "data", spec))

    @property
    def stages(self) -> list[Stage]:
        return [s for s in (self.world, self.data) if s is not None]

    def base_model(self) -> Ref:
        """SFT's (or a `base` start's) model: model.pretrained, else the tiny Llama."""
        if self.cfg.model.pretrained:
            return Ref(path=self.cfg.model.pretrained)
        assert self.world is not None
        return self.world.ref("base-model")

    def sft_data(self) -> Ref:
        assert self.world is not None  # config checks: no sft stage with real data
        return self.world.ref("data/sft.jsonl")

    def offline_pairs(self) -> Ref:
        if self.data is not None:
            return self.data.ref(f"chunk-{self.cfg.dpo.chunk}.jsonl")
        return self.world.ref("data/pref.jsonl")

    def prompts(self, iteration: int) -> tuple[Ref, int, int]:
        """(prompt file, chunk, chunks) of an online iteration."""
        o = self.cfg.online
        if self.data is not None:
            return self.data.ref(f"chunk-{o.chunk(iteration)}.jsonl"), 1, 1
        return self.world.ref("data/prompts.jsonl"), iteration, o.iterations


def checkpoint_folder(name: str) -> str:
    """A training stage's folder is its model folder (`stage.json` and `train_log.json` beside the weights)."""
    return f"checkpoints/{name}/model"


def plan_methods(cfg: ExperimentConfig, sources: "Sources") -> list[Stage]:
    """The configured methods plus what they start from, in dependency order."""
    order: list[str] = []

    def add(name: str) -> None:
        method = registry.get("method", name)()
        for dep in method.needs(cfg):
            add(dep)
        if name not in order:
            order.append(name)

    for m in cfg.methods:
        add(m)
    stages: list[Stage] = []
    made: dict[str, Stage] = {}  # checkpoint name -> its training stage
    shared: dict[str, Stage] = {}  # stage key -> the first stage planned with it (one run, one folder)
    for m in order:
        for st in registry.get("method", m)().plan(cfg, sources, made, shared):
            if st.folder not in {s.folder for s in stages}:
                stages.append(st)
            if st.checkpoint:
                made[st.checkpoint] = st
    return stages


def eval_spec(cfg: ExperimentConfig, model: Ref, name: str, suite: str, world: Ref | None,
              references: dict[str, Ref], trust_remote_code: bool | None = None) -> EvalSpec:
    base = registry.base_name("suite", suite)
    raw = {**cfg.suite_options.get(base, {}), **cfg.suite_options.get(suite, {})}
    data_dir = cfg.eval.data_dir or None
    if data_dir is None and world is None:  # real mode: what `selm-bench data pull` fetched
        from selm_bench.harness.datapull import pulled_dir

        pulled = pulled_dir()
        data_dir = str(pulled) if pulled else None
    return EvalSpec(
        model=model, name=name, suite=suite, options=validate_suite_options(suite, raw),
        data_dir=data_dir, world=world, references=references, backend=cfg.eval.backend,
        backend_options=backend_options(cfg, cfg.eval.backend, trust_remote_code), judge=cfg.eval.judge,
        judge_base_url=cfg.eval.judge_base_url or None, device=resolve_device(cfg.device), seed=cfg.seed,
    )


def judge_runtime(cfg: ExperimentConfig) -> dict[str, Any]:
    """Judge settings that cannot change a judgment: they travel beside the spec, not in it."""
    e = cfg.eval
    return {"concurrency": e.judge_concurrency, "max_retries": e.judge_max_retries, "timeout": e.judge_timeout}


def plan(cfg: ExperimentConfig) -> tuple[list[Stage], list[Stage]]:
    """(training-side stages incl. world, eval stages) for train-and-eval."""
    sources = Sources.of(cfg)
    stages = [*sources.stages, *plan_methods(cfg, sources)]
    checkpoints = [s for s in stages if s.checkpoint]
    refs = {"sft": next(s.ref() for s in checkpoints if s.checkpoint == "sft")} if any(
        s.checkpoint == "sft" for s in checkpoints) else {}
    world = sources.world.ref("data") if sources.world else None  # None: the suites' real mode
    evals = [
        Stage(f"eval {st.checkpoint} {suite}", f"evals/{st.checkpoint}/{suite}",
              eval_spec(cfg, st.ref(), st.checkpoint, suite, world, refs),
              checkpoint=None, method=st.method, iteration=st.iteration)
        for st in checkpoints for suite in cfg.suites
    ]
    return stages, evals
