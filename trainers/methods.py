"""Methods (registry entries): sft, dpo, iterative-dpo, selm.

A method plans its stages; each stage trains into a fresh folder that the pipeline swaps
in atomically and keys by its config and inputs. `dpo` and `iterative-dpo` use TRL's
DPOTrainer unchanged; `selm` uses SELMTrainer (trainers/selm_trainer.py).
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from harness.progress import progress
from harness.registry import register_method


@dataclass
class Stage:
    name: str  # checkpoint name: "sft", "dpo", "selm/iter-2"
    method: str
    iteration: int | None
    inputs: list[str]  # names of stages this one reads
    config: dict[str, Any]  # the resolved config this stage depends on
    run: Callable[[Path], None] = field(repr=False)  # writes the stage's outputs into the folder


def _trainer_common(out: Path, batch_size: int, lr: float, epochs: float, seed: int, device: str) -> dict[str, Any]:
    return dict(
        output_dir=str(out), per_device_train_batch_size=batch_size, learning_rate=lr, num_train_epochs=epochs,
        lr_scheduler_type="cosine", logging_steps=10, save_strategy="no", report_to=[], seed=seed, data_seed=seed,
        bf16=False, fp16=False, use_cpu=(device == "cpu"), disable_tqdm=True, dataloader_num_workers=0,
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


def _save(trainer: Any, tokenizer: Any, out: Path) -> None:
    trainer.save_model(str(out))
    tokenizer.save_pretrained(str(out))
    log = [e for e in trainer.state.log_history]
    (out / "train_log.json").write_text(json.dumps(log, indent=1))


def train_sft(base: str, rows: list[dict[str, Any]], cfg: Any, out: Path, seed: int, device: str) -> None:
    """Supervised fine-tuning on prompt/completion conversations (loss on completions only)."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    tok = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base)
    ds = Dataset.from_list([{"prompt": r["prompt"], "completion": r["completion"]} for r in rows])
    with tempfile.TemporaryDirectory() as tmp:
        args = SFTConfig(
            **_trainer_common(Path(tmp), cfg.batch_size, cfg.learning_rate, cfg.epochs, seed, device),
            max_steps=cfg.max_steps, warmup_steps=cfg.warmup_ratio, weight_decay=cfg.weight_decay,
            max_length=256, completion_only_loss=True, dataset_num_proc=None,
        )
        trainer = _quiet(SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tok,
                                    callbacks=[_progress_callback("sft")]))
        trainer.train()
    _save(trainer, tok, out)


def train_preference(
    policy: str, reference: str, rows: list[dict[str, Any]], *, beta: float, lr: float, batch_size: int,
    epochs: float, out: Path, seed: int, device: str, alpha: float | None = None, nll_weight: float = 0.0,
    desc: str = "dpo",
) -> None:
    """DPO (alpha=None: TRL's DPOTrainer) or SELM (alpha>=0: SELMTrainer) from `policy`
    against the frozen `reference`. Rows: prompt/chosen/rejected (+ ref_response) conversations."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    from trainers.selm_trainer import SELMConfig, SELMTrainer

    tok = AutoTokenizer.from_pretrained(policy)
    model = AutoModelForCausalLM.from_pretrained(policy)
    ref_model = AutoModelForCausalLM.from_pretrained(reference)
    keys = ["prompt", "chosen", "rejected"] + (["ref_response"] if alpha is not None else [])
    ds = Dataset.from_list([{k: r[k] for k in keys} for r in rows])
    with tempfile.TemporaryDirectory() as tmp:
        common = _trainer_common(Path(tmp), batch_size, lr, epochs, seed, device)
        common.update(beta=beta, max_length=256, dataset_num_proc=None, warmup_steps=0.1)
        if alpha is None:
            losses = {"loss_type": ["sigmoid", "sft"], "loss_weights": [1.0, nll_weight]} if nll_weight else {}
            args, cls = DPOConfig(**common, **losses), DPOTrainer
        else:
            args, cls = SELMConfig(**common, alpha=alpha, nll_weight=nll_weight), SELMTrainer
        trainer = _quiet(cls(model=model, ref_model=ref_model, args=args, train_dataset=ds, processing_class=tok,
                             callbacks=[_progress_callback(desc)]))
        trainer.train()
    _save(trainer, tok, out)


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def assistant(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


# ---------------------------------------------------------------- registry entries
# A method's `plan(cfg, paths)` returns its stages; `paths` maps stage names to folders
# and gives the world's data (see harness/pipeline.py: RunPaths). `requires` (or
# `needs(cfg)` where it depends on the config) names the methods it starts from.


@register_method("sft", help="supervised fine-tuning (TRL SFTTrainer); the starting policy")
class SFTMethod:
    requires: tuple[str, ...] = ()

    def plan(self, cfg: Any, paths: Any) -> list[Stage]:
        def run(out: Path) -> None:
            train_sft(str(paths.base_model), paths.world_rows("sft"), cfg.sft, out / "model", cfg.seed, cfg.device)

        return [Stage("sft", "sft", None, ["world"], {"sft": asdict(cfg.sft), "seed": cfg.seed}, run)]


@register_method("dpo", help="offline DPO on the fixed preference set (TRL DPOTrainer, sigmoid)")
class DPOMethod:
    requires = ("sft",)

    def plan(self, cfg: Any, paths: Any) -> list[Stage]:
        def run(out: Path) -> None:
            rows = [
                {"prompt": user(r["prompt"]), "chosen": assistant(r["chosen"]), "rejected": assistant(r["rejected"])}
                for r in paths.world_rows("pref")
            ]
            sft = str(paths.model("sft"))
            d = cfg.dpo
            train_preference(sft, sft, rows, beta=d.beta, lr=d.learning_rate, batch_size=d.batch_size,
                             epochs=d.epochs, out=out / "model", seed=cfg.seed, device=cfg.device, desc="dpo")

        return [Stage("dpo", "dpo", None, ["world", "sft"], {"dpo": asdict(cfg.dpo), "seed": cfg.seed}, run)]


class _OnlineMethod:
    name = ""
    selm = False

    def needs(self, cfg: Any) -> tuple[str, ...]:
        return (cfg.online.start,)  # dpo in the paper; sft to skip the offline stage

    def plan(self, cfg: Any, paths: Any) -> list[Stage]:
        from trainers.online import run_iteration

        o = cfg.online
        # `start` is not in the key: the first iteration's inputs name the starting checkpoint's key.
        online_cfg = {k: v for k, v in asdict(o).items() if k != "start" and (self.selm or k != "alpha")}
        stages, prev = [], o.start
        for t in range(1, o.iterations + 1):
            name = f"{self.name}/iter-{t}"

            def run(out: Path, t: int = t, prev: str = prev) -> None:
                run_iteration(cfg, paths, policy=paths.model(prev), iteration=t, out=out, selm=self.selm)

            # Generation batches by eval.batch_size, which changes the samples drawn: part of the key.
            key_cfg = {"online": online_cfg, "seed": cfg.seed, "t": t, "gen_batch_size": cfg.eval.batch_size}
            stages.append(Stage(name, self.name, t, ["world", prev], key_cfg, run))
            prev = name
        return stages


@register_method("iterative-dpo", help="online iterations: generate, rank, DPO on best vs worst")
class IterativeDPOMethod(_OnlineMethod):
    name = "iterative-dpo"


@register_method("selm", help="iterative DPO plus SELM's optimism term on y_ref")
class SELMMethod(_OnlineMethod):
    name = "selm"
    selm = True
