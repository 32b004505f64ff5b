"""Methods (registry entries): sft, dpo, iterative-dpo, selm.

A method plans its stages as specs (harness/core/specs.py); it runs nothing itself. `needs(cfg)`
names the methods it starts from; `plan(cfg, sources, made, shared)` gets where the data
lives (harness/run/stages.py: Sources), the training stages planned so far (checkpoint name ->
stage) and the stages planned so far by key, and returns its own stages. A stage whose key
another method already planned is that stage: iteration 1 of `selm` and `iterative-dpo`,
from the same checkpoint with the same generation settings, share one generation and one
ranking, so their pairs are identical and they differ only by α.
"""

from __future__ import annotations

from selm_bench.harness.core.config import ExperimentConfig
from selm_bench.harness.run.stages import (Sources, Stage, backend_options, checkpoint_folder, resolve_device, train_args,
                                    trusts_base)
from selm_bench.harness.core.registry import register_method
from selm_bench.harness.core.specs import GenerateSpec, PreferenceSpec, RankSpec, Ref, SFTSpec


@register_method("sft", help="supervised fine-tuning (TRL SFTTrainer); the starting policy")
class SFTMethod:
    def needs(self, cfg: ExperimentConfig) -> tuple[str, ...]:
        return ()

    def plan(self, cfg: ExperimentConfig, sources: Sources, made: dict[str, Stage], shared: dict[str, Stage]) -> list[Stage]:
        spec = SFTSpec(base=sources.base_model(), data=sources.sft_data(), train=train_args(cfg, "sft"),
                       trust_remote_code=trusts_base(cfg))
        return [Stage("sft", checkpoint_folder("sft"), spec, checkpoint="sft", method="sft")]


@register_method("dpo", help="offline DPO on the fixed preference set (TRL DPOTrainer, sigmoid)")
class DPOMethod:
    def needs(self, cfg: ExperimentConfig) -> tuple[str, ...]:
        return ("sft",) if cfg.dpo.start == "sft" else ()

    def plan(self, cfg: ExperimentConfig, sources: Sources, made: dict[str, Stage], shared: dict[str, Stage]) -> list[Stage]:
        start = made["sft"].ref() if cfg.dpo.start == "sft" else sources.base_model()
        spec = PreferenceSpec(policy=start, reference=start, pairs=sources.offline_pairs(), loss="dpo",
                              beta=cfg.dpo.beta, alpha=None, nll_weight=0.0, train=train_args(cfg, "dpo"),
                              trust_remote_code=trusts_base(cfg))
        return [Stage("dpo", checkpoint_folder("dpo"), spec, checkpoint="dpo", method="dpo")]


class _OnlineMethod:
    """T iterations, each three stages: generate -> rank -> train (the trained model is the next policy)."""

    name = ""
    loss = "dpo"

    def needs(self, cfg: ExperimentConfig) -> tuple[str, ...]:
        return () if cfg.online.start == "base" else (cfg.online.start,)

    def plan(self, cfg: ExperimentConfig, sources: Sources, made: dict[str, Stage], shared: dict[str, Stage]) -> list[Stage]:
        o = cfg.online
        stages: list[Stage] = []
        policy: Ref = sources.base_model() if o.start == "base" else made[o.start].ref()
        for t in range(1, o.iterations + 1):
            ckpt = f"{self.name}/iter-{t}"
            prompts, chunk, chunks = sources.prompts(t)
            gen = GenerateSpec(
                policy=policy, prompts=prompts, chunk=chunk, chunks=chunks,
                candidates=list(o.candidates), num_samples=o.num_samples, temperature=o.temperature, top_p=o.top_p,
                max_new_tokens=o.max_new_tokens, ref_response=o.ref_response, backend=o.backend,
                backend_options=backend_options(cfg, o.backend), device=resolve_device(cfg.device),
                seed=cfg.seed * 1000 + t,
            )
            g = Stage(f"{ckpt}/generate", f"checkpoints/{ckpt}/generate", gen, method=self.name, iteration=t)
            g = shared.setdefault(g.key, g)
            rank = RankSpec(candidates=g.ref("candidates.jsonl"), ranker=o.ranker, keep_ties=o.keep_ties,
                            max_failures=o.max_ranker_failures, device=resolve_device(cfg.device),
                            batch_size=cfg.eval.batch_size,
                            judge_base_url=(cfg.eval.judge_base_url or None) if o.ranker.startswith("judge:") else None,
                            trust_remote_code=cfg.model.trusts(o.ranker.split(":", 1)[1]) if ":" in o.ranker else False)
            r = Stage(f"{ckpt}/rank", f"checkpoints/{ckpt}/rank", rank, method=self.name, iteration=t)
            r = shared.setdefault(r.key, r)
            train = PreferenceSpec(
                policy=policy, reference=policy, pairs=r.ref("generations.jsonl"), loss=self.loss,
                beta=o.beta, alpha=o.alpha if self.loss == "selm" else None, nll_weight=o.nll_weight,
                train=train_args(cfg, "online", t), trust_remote_code=trusts_base(cfg),
            )
            trained = Stage(ckpt, checkpoint_folder(ckpt), train, checkpoint=ckpt, method=self.name, iteration=t)
            stages += [g, r, trained]
            policy = trained.ref()
        return stages


@register_method("iterative-dpo", help="online iterations: generate, rank, DPO on best vs worst")
class IterativeDPOMethod(_OnlineMethod):
    name = "iterative-dpo"


@register_method("selm", help="iterative DPO plus SELM's optimism term on y_ref")
class SELMMethod(_OnlineMethod):
    name = "selm"
    loss = "selm"
