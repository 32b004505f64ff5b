"""Methods (registry entries): sft, dpo, iterative-dpo, selm.

A method plans its stages as specs (harness/specs.py); it runs nothing itself. `needs(cfg)`
names the methods it starts from; `plan(cfg, world, made)` gets the world stage and the
training stages planned so far (checkpoint name -> stage) and returns its own stages.
"""

from __future__ import annotations

from typing import Any

from harness.config import ExperimentConfig
from harness.plan import Stage, backend_options, base_model_ref, checkpoint_folder, resolve_device, train_args
from harness.registry import register_method
from harness.specs import GenerateSpec, PreferenceSpec, RankSpec, SFTSpec


@register_method("sft", help="supervised fine-tuning (TRL SFTTrainer); the starting policy")
class SFTMethod:
    def needs(self, cfg: ExperimentConfig) -> tuple[str, ...]:
        return ()

    def plan(self, cfg: ExperimentConfig, world: Stage, made: dict[str, Stage]) -> list[Stage]:
        spec = SFTSpec(base=base_model_ref(cfg, world), data=world.ref("data/sft.jsonl"), train=train_args(cfg, "sft"))
        return [Stage("sft", checkpoint_folder("sft"), spec, checkpoint="sft", method="sft")]


@register_method("dpo", help="offline DPO on the fixed preference set (TRL DPOTrainer, sigmoid)")
class DPOMethod:
    def needs(self, cfg: ExperimentConfig) -> tuple[str, ...]:
        return ("sft",)

    def plan(self, cfg: ExperimentConfig, world: Stage, made: dict[str, Stage]) -> list[Stage]:
        sft = made["sft"].ref()
        spec = PreferenceSpec(policy=sft, reference=sft, pairs=world.ref("data/pref.jsonl"), loss="dpo",
                              beta=cfg.dpo.beta, alpha=None, nll_weight=0.0, train=train_args(cfg, "dpo"))
        return [Stage("dpo", checkpoint_folder("dpo"), spec, checkpoint="dpo", method="dpo")]


class _OnlineMethod:
    """T iterations, each three stages: generate -> rank -> train (the trained model is the next policy)."""

    name = ""
    loss = "dpo"

    def needs(self, cfg: ExperimentConfig) -> tuple[str, ...]:
        return (cfg.online.start,)  # dpo in the paper; sft to skip the offline stage

    def plan(self, cfg: ExperimentConfig, world: Stage, made: dict[str, Stage]) -> list[Stage]:
        o = cfg.online
        stages: list[Stage] = []
        prev = made[o.start]
        for t in range(1, o.iterations + 1):
            ckpt = f"{self.name}/iter-{t}"
            gen = GenerateSpec(
                policy=prev.ref(), prompts=world.ref("data/prompts.jsonl"), chunk=t, chunks=o.iterations,
                candidates=list(o.candidates), num_samples=o.num_samples, temperature=o.temperature, top_p=o.top_p,
                max_new_tokens=o.max_new_tokens, ref_response=o.ref_response, backend=o.backend,
                backend_options=backend_options(cfg, o.backend), device=resolve_device(cfg.device),
                seed=cfg.seed * 1000 + t,
            )
            g = Stage(f"{ckpt}/generate", f"checkpoints/{ckpt}/generate", gen, method=self.name, iteration=t)
            r = Stage(f"{ckpt}/rank", f"checkpoints/{ckpt}/rank",
                      RankSpec(candidates=g.ref("candidates.jsonl"), ranker=o.ranker), method=self.name, iteration=t)
            train = PreferenceSpec(
                policy=prev.ref(), reference=prev.ref(), pairs=r.ref("generations.jsonl"), loss=self.loss,
                beta=o.beta, alpha=o.alpha if self.loss == "selm" else None, nll_weight=o.nll_weight,
                train=train_args(cfg, "online"),
            )
            prev = Stage(ckpt, checkpoint_folder(ckpt), train, checkpoint=ckpt, method=self.name, iteration=t)
            stages += [g, r, prev]
        return stages


@register_method("iterative-dpo", help="online iterations: generate, rank, DPO on best vs worst")
class IterativeDPOMethod(_OnlineMethod):
    name = "iterative-dpo"


@register_method("selm", help="iterative DPO plus SELM's optimism term on y_ref")
class SELMMethod(_OnlineMethod):
    name = "selm"
    loss = "selm"
