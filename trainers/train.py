"""Training stages: SFT (TRL's SFTTrainer) and preference training (TRL's DPOTrainer, or
SELMTrainer for SELM's loss). Each function takes its stage spec, the run folder (where
the spec's relative inputs live) and the folder to write; nothing else, but the trackers to
log to (`report_to`, a runtime setting that changes no output: from the environment, see
tracking_kwargs).

Under `accelerate launch` every process runs the same function; the Trainer shards the
data, and only the main process writes files (weights gathered on save under ZeRO-3).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from selm_bench.harness.core.progress import progress, say
from selm_bench.harness.core.specs import PreferenceSpec, SFTSpec, TrainArgs
from selm_bench.harness.world import read_jsonl


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def assistant(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


def check_world_size(train: TrainArgs) -> None:
    """The launched process count must be the one the spec (and so the key) says."""
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched != train.num_processes:
        raise RuntimeError(f"this stage's spec is for {train.num_processes} process(es) but {launched} were launched")


def check_strategy(train: TrainArgs) -> None:
    """The launch must shard the model as the spec (and so the key) says: DeepSpeed's ZeRO stage, FSDP or neither."""
    env = os.environ
    launched = ("deepspeed" if env.get("ACCELERATE_USE_DEEPSPEED", "").lower() == "true"
                else "fsdp" if env.get("ACCELERATE_USE_FSDP", "").lower() == "true" else "ddp")
    s = train.strategy
    stage = env.get("ACCELERATE_DEEPSPEED_ZERO_STAGE")
    if launched != s.kind or (s.kind == "deepspeed" and stage is not None and int(stage) != s.zero_stage):
        want = f"{s.kind}" + (f" ZeRO-{s.zero_stage}" if s.kind == "deepspeed" else "")
        got = launched + (f" ZeRO-{stage}" if launched == "deepspeed" and stage is not None else "")
        raise RuntimeError(f"this stage's spec is for {want} but the launch is {got}")


def local_params(model: Any) -> dict[str, int]:
    """This process's parameter count (its shards under ZeRO-3) and the model's full count."""
    local = full = 0
    for p in model.parameters():
        local += p.ds_tensor.numel() if hasattr(p, "ds_tensor") else p.numel()
        full += getattr(p, "ds_numel", p.numel())
    return {"local": local, "full": full}


def tracking_kwargs() -> dict[str, Any]:
    """`report_to` and the tracker run's name for TRL's own loggers. `report_to` is a runtime setting, in no
    spec: the pipeline sets it in the stage's environment (harness/run/tracking.py's stage_env, with each
    tracker's folder), which `accelerate launch` workers inherit. The names are read here, not imported,
    so harness/run/tracking.py is no part of a training stage's code (its staleness hash)."""
    report_to = [n for n in os.environ.get("SELM_BENCH_REPORT_TO", "").split(",") if n]
    if not report_to:
        return {"report_to": []}
    return {"report_to": report_to, "run_name": os.environ.get("SELM_BENCH_TRACKING_NAME"),
            "project": os.environ.get("SELM_BENCH_TRACKING_PROJECT") or "selm-bench"}


def trainer_kwargs(t: TrainArgs, out: Path) -> dict[str, Any]:
    """transformers/TRL TrainingArguments from the spec (warmup_steps < 1 is a ratio in transformers 5)."""
    return dict(
        output_dir=str(out), per_device_train_batch_size=t.per_device_batch_size,
        gradient_accumulation_steps=t.gradient_accumulation_steps, learning_rate=t.learning_rate,
        num_train_epochs=t.epochs, max_steps=t.max_steps, warmup_steps=t.warmup_ratio, weight_decay=t.weight_decay,
        lr_scheduler_type=t.lr_scheduler, **({"optim": t.optim} if t.optim else {}), logging_steps=t.logging_steps, save_strategy="no",
        **tracking_kwargs(), seed=t.seed, data_seed=t.seed, bf16=t.precision == "bf16", fp16=t.precision == "fp16",
        use_cpu=t.device == "cpu", gradient_checkpointing=t.gradient_checkpointing, disable_tqdm=True,
        dataloader_num_workers=0, max_length=t.max_length, dataset_num_proc=None,
    )


def _progress_callback(desc: str):
    from transformers import TrainerCallback

    class _RichSteps(TrainerCallback):
        def on_train_begin(self, args, state, control, **kw):
            self._cm = progress(desc, total=state.max_steps)
            self._bar = self._cm.__enter__()

        def on_step_end(self, args, state, control, **kw):
            self._bar.advance(1)

        def on_train_end(self, args, state, control, **kw):
            self._cm.__exit__(None, None, None)

    return _RichSteps()


def _quiet(trainer: Any) -> Any:
    """Drop the Trainer's log printer (it prints dicts to stdout); logs go to train_log.json."""
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)
    return trainer


def _save(trainer: Any, tokenizer: Any, out: Path, extra: dict[str, Any] | None = None,
          loaded: dict[str, Any] | None = None) -> None:
    trainer.save_model(str(out))  # every process takes part (ZeRO-3 gathers); the main one writes
    if trainer.is_world_process_zero():
        tokenizer.save_pretrained(str(out))
        (out / "train_log.json").write_text(json.dumps(trainer.state.log_history, indent=1))
        acc = trainer.accelerator
        ds = getattr(getattr(acc, "state", None), "deepspeed_plugin", None)  # the ZeRO stage really used
        (out / "train_info.json").write_text(json.dumps({
            "num_processes": acc.num_processes, "distributed_type": str(acc.distributed_type),
            "device": str(acc.device), "mixed_precision": acc.mixed_precision,
            "learning_rate": trainer.args.learning_rate, "lr_scheduler": str(trainer.args.lr_scheduler_type),
            "optim": str(trainer.args.optim), "global_batch": trainer.args.per_device_train_batch_size
            * trainer.args.gradient_accumulation_steps * acc.num_processes,
            "gradient_checkpointing": trainer.args.gradient_checkpointing,
            **({"zero_stage": ds.zero_stage} if ds is not None else {}),
            **({"params_at_load": loaded} if loaded else {}), **(extra or {})}, indent=1))
        if extra:  # the pipeline copies a stage's own counts into the manifest
            (out / "stage_info.json").write_text(json.dumps(extra, indent=1))


def _load_model(path: str, t: TrainArgs, trust_remote_code: bool = False):
    """fp32 weights with bf16/fp16 autocast (the Trainer's mixed precision), except under
    DeepSpeed, which keeps its own fp32 master copy and wants the weights in half precision.
    Call it after the stage's TRL config exists: under ZeRO-3 that config is what makes
    transformers load the weights partitioned over the processes (zero3_init_flag)."""
    import torch
    from transformers import AutoModelForCausalLM

    deepspeed = os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true"
    half = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(t.precision)
    return AutoModelForCausalLM.from_pretrained(path, dtype=half if half is not None and deepspeed else torch.float32,
                                                trust_remote_code=trust_remote_code)


PACK_ROW_TOKENS = 128  # a packed row's length: short rows keep the block-diagonal attention cheap


def pack_rows(lengths: list[int], capacity: int) -> list[list[int]]:
    """Indices grouped into rows of at most max(capacity, longest) tokens, first fit by decreasing length."""
    cap = max([capacity, *lengths])
    rows: list[list[int]] = []
    room: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: (-lengths[i], i)):
        j = next((j for j, r in enumerate(room) if r >= lengths[i]), None)
        if j is None:
            rows.append([]), room.append(cap)
            j = len(rows) - 1
        rows[j].append(i)
        room[j] -= lengths[i]
    return [sorted(r) for r in rows]


def packed_collator(pad_token_id: int, row_tokens: int = PACK_ROW_TOKENS):
    """TRL's padding-free SFT collator, but into several short rows instead of one long one: the batch's
    sequences side by side with their own position ids (transformers then masks attention to each
    sequence), so padding is computed only at the rows' ends. Same tokens, labels and loss as the padded
    batch; a 2-layer model on CPU trains about a third faster on the tiny world's short sequences."""
    import torch
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    class _RowPacked(DataCollatorForLanguageModeling):
        def torch_call(self, examples):
            rows = [super(_RowPacked, self).torch_call([examples[i] for i in row])
                    for row in pack_rows([len(ex["input_ids"]) for ex in examples], row_tokens)]
            width = max(r["input_ids"].shape[1] for r in rows)

            def stack(key: str, value: int):
                return torch.cat([torch.nn.functional.pad(r[key], (0, width - r[key].shape[1]), value=value) for r in rows])

            # padding's position ids are 0: each pad token is its own one-token sequence, and its label is -100
            return {"input_ids": stack("input_ids", self.pad_token_id), "labels": stack("labels", -100),
                    "position_ids": stack("position_ids", 0)}

    return _RowPacked(pad_token_id=pad_token_id, padding_free=True)


def train_sft(spec: SFTSpec, root: Path, out: Path) -> None:
    """Supervised fine-tuning on prompt/completion conversations (loss on completions only)."""
    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    check_world_size(spec.train)
    check_strategy(spec.train)
    base = spec.base.resolve(root)
    tok = AutoTokenizer.from_pretrained(base, trust_remote_code=spec.trust_remote_code)
    rows = read_jsonl(Path(spec.data.resolve(root)))
    ds = Dataset.from_list([{"prompt": r["prompt"], "completion": r["completion"]} for r in rows])
    with tempfile.TemporaryDirectory() as tmp:
        args = SFTConfig(**trainer_kwargs(spec.train, Path(tmp)), completion_only_loss=True)
        model = _load_model(base, spec.train, spec.trust_remote_code)  # after the config: see _load_model
        loaded = {"policy": local_params(model)}
        # On CPU (sdpa attention), pack each batch into short rows instead of padding every sequence
        # to the longest; CUDA keeps TRL's padded batches (its fast attention kernels want no custom mask).
        packed = packed_collator(tok.pad_token_id) if spec.train.device == "cpu" else None
        trainer = _quiet(SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tok,
                                    data_collator=packed, callbacks=[_progress_callback("sft")]))
        trainer.train()
    _save(trainer, tok, out, loaded=loaded)


def preference_rows(rows: list[dict[str, Any]], with_ref: bool) -> list[dict[str, Any]]:
    """Conversations for TRL from prompt/chosen/rejected(/y_ref) strings; rows marked used=false are skipped."""
    out = []
    for r in rows:
        if r.get("used") is False:
            continue
        row = {"prompt": user(r["prompt"]), "chosen": assistant(r["chosen"]), "rejected": assistant(r["rejected"])}
        if with_ref:
            row["ref_response"] = assistant(r["y_ref"])
        out.append(row)
    return out


def train_preference(spec: PreferenceSpec, root: Path, out: Path) -> None:
    """DPO (TRL's DPOTrainer, sigmoid loss) or SELM (SELMTrainer) from `policy` against the frozen `reference`."""
    from datasets import Dataset
    from transformers import AutoTokenizer
    from selm_bench.trainers.selm_trainer import PromptCutDPOConfig, PromptCutDPOTrainer, SELMConfig, SELMTrainer

    check_world_size(spec.train)
    check_strategy(spec.train)
    policy = spec.policy.resolve(root)
    tok = AutoTokenizer.from_pretrained(policy, trust_remote_code=spec.trust_remote_code)
    rows = preference_rows(read_jsonl(Path(spec.pairs.resolve(root))), with_ref=spec.loss == "selm")
    if not rows:
        raise RuntimeError(f"{spec.pairs.path}: no preference pairs to train on")
    ds = Dataset.from_list(rows)
    with tempfile.TemporaryDirectory() as tmp:
        # The reference is frozen within a stage: score it once before training (TRL's
        # precompute_ref_log_probs; SELMTrainer adds y_ref), so each step runs the policy only.
        common = {**trainer_kwargs(spec.train, Path(tmp)), "beta": spec.beta,
                  # TRL's precompute hands its result between processes through the dataset's cache
                  # file, which an in-memory dataset keeps in a per-process temp folder: one process only
                  "precompute_ref_log_probs": spec.train.precompute_ref_log_probs and spec.train.num_processes == 1}
        # Both fit rows to max_length by the configured rule (BOS once, drops counted), not TRL's silent filter.
        fit = {"max_prompt_length": spec.train.max_prompt_length, "truncation": spec.train.truncation}
        if spec.loss == "dpo":
            w = spec.nll_weight
            losses = {"loss_type": ["sigmoid", "sft"], "loss_weights": [1.0, w]} if w else {}
            args, cls = PromptCutDPOConfig(**common, **losses, **fit), PromptCutDPOTrainer
        else:
            args, cls = SELMConfig(**common, alpha=spec.alpha, nll_weight=spec.nll_weight, **fit), SELMTrainer
        model = _load_model(policy, spec.train, spec.trust_remote_code)  # after the config: see _load_model
        ref_model = _load_model(spec.reference.resolve(root), spec.train, spec.trust_remote_code)
        loaded = {"policy": local_params(model), "reference": local_params(ref_model)}
        trainer = _quiet(cls(model=model, ref_model=ref_model, args=args, train_dataset=ds, processing_class=tok,
                             callbacks=[_progress_callback(spec.loss)]))
        rows = trainer.row_counts["train"]
        if trainer.is_world_process_zero():
            say(f"  {spec.loss}: {rows['trained']}/{rows['rows']} rows trained ({spec.train.truncation} truncation: "
                f"{rows['prompt-cut']} prompts cut, {rows['responses-cut']} responses cut, {rows['dropped']} dropped "
                f"because the prompt alone fills max_length={spec.train.max_length})")
        if not rows["trained"]:
            raise RuntimeError(f"{spec.pairs.path}: every row's prompt fills max_length={spec.train.max_length}; "
                               "nothing to train on")
        trainer.train()
    _save(trainer, tok, out, extra={"rows": rows}, loaded=loaded)
