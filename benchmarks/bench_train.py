"""Figures 10 and 11: preference training steps side by side on one batch of the tiny world.

10. SELM step / TRL DPO step on the same pairs and model (every y_ref a third distinct response,
    the worst case), divided by the bare forward+backward of the same 3B vs 2B rows (the
    hardware's own price of a third sequence). Bound <= 1.05.
11. A step with the reference log-probs precomputed / a step that runs the reference, for DPO
    and for SELM. Bound <= 0.75.

A step = compute_loss + backward + AdamW step. All timers run interleaved, round after round
(the first rounds warm up). Each ratio is the median over rounds of that round's ratio (steps
timed back to back, so a busy spell on a shared machine slows both sides of a ratio alike); the
ratios of the medians and of the fastest steps are kept beside it.
Prints one JSON object (figure name -> value, bound, parts) on stdout's last line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

from common import setup_env

setup_env()


def step_timer(trainer, batch) -> Callable[[], float]:
    import torch

    model = trainer.model
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)

    def step() -> float:
        t = time.perf_counter()
        loss = trainer.compute_loss(model, dict(batch))
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return time.perf_counter() - t

    return step


def bare_timer(model, batch) -> Callable[[], float]:
    """Plain forward + backward of the model on the batch's rows (labels = the completion tokens)."""
    import torch

    labels = batch["input_ids"].masked_fill(batch["completion_mask"] == 0, -100)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)

    def step() -> float:
        t = time.perf_counter()
        loss = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return time.perf_counter() - t

    return step


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=32, help="pairs per step")
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=3)
    a = ap.parse_args()

    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import DPOConfig, DPOTrainer

    from selm_bench.harness.core.config import ModelConfig, WorldConfig
    from selm_bench.harness.world import build_base_model, build_tokenizer, build_world, read_jsonl
    from selm_bench.trainers.selm_trainer import SELMConfig, SELMTrainer

    tmp = Path(tempfile.mkdtemp())
    build_world(WorldConfig(n_sft=8, n_pref=a.batch, n_prompts=8, n_dev=8, n_eval=8, n_two_turn=4, n_mc=4), 0, tmp / "w")
    tok = build_tokenizer(tmp / "m")
    build_base_model(ModelConfig(), tok, 0, tmp / "m")  # the default's model size
    u = lambda s: [{"role": "user", "content": s}]  # noqa: E731
    r_ = lambda s: [{"role": "assistant", "content": s}]  # noqa: E731

    def third(r: dict) -> str:  # a third response as long as the rejected one, distinct from both
        y = r["rejected"][::-1]
        return y if y not in (r["chosen"], r["rejected"]) else r["rejected"] + "0"

    rows = [{"prompt": u(r["prompt"]), "chosen": r_(r["chosen"]), "rejected": r_(r["rejected"]),
             "ref_response": r_(third(r))} for r in read_jsonl(tmp / "w" / "pref.jsonl")]
    pairs = Dataset.from_list([{k: r[k] for k in ("prompt", "chosen", "rejected")} for r in rows])
    load = lambda: AutoModelForCausalLM.from_pretrained(tmp / "m")  # noqa: E731
    common = dict(output_dir=str(tmp / "o"), per_device_train_batch_size=a.batch, bf16=False, use_cpu=True,
                  report_to=[], beta=0.1, max_length=256, save_strategy="no",
                  gradient_checkpointing=False)  # as the CPU default runs
    trainers = {}
    for pre in (False, True):
        trainers[("dpo", pre)] = DPOTrainer(model=load(), ref_model=load(), processing_class=tok, train_dataset=pairs,
                                            args=DPOConfig(**common, precompute_ref_log_probs=pre))
        trainers[("selm", pre)] = SELMTrainer(model=load(), ref_model=load(), processing_class=tok,
                                              train_dataset=Dataset.from_list(rows),
                                              args=SELMConfig(**common, alpha=0.001, precompute_ref_log_probs=pre))
    batches = {k: t.data_collator([t.train_dataset[i] for i in range(len(t.train_dataset))]) for k, t in trainers.items()}
    assert batches[("selm", True)]["input_ids"].shape[0] == 3 * a.batch, "every y_ref should be a third row"
    timers = {f"{m}{'+pre' if pre else ''}": step_timer(t, batches[(m, pre)]) for (m, pre), t in trainers.items()}
    bare = load()
    timers["bare 2B rows"] = bare_timer(bare, batches[("dpo", False)])
    timers["bare 3B rows"] = bare_timer(bare, batches[("selm", False)])

    times: dict[str, list[float]] = {k: [] for k in timers}
    for i in range(a.repeats + a.warmup):
        for k, step in timers.items():
            dt = step()
            if i >= a.warmup:
                times[k].append(dt)
    def per_round(num: str, den: str, fnum: str | None = None, fden: str | None = None) -> float:
        """Median over rounds of num/den (divided by fnum/fden of the same round when given)."""
        r = [times[num][i] / times[den][i] / ((times[fnum][i] / times[fden][i]) if fnum else 1.0)
             for i in range(len(times[num]))]
        return round(statistics.median(r), 3)

    med = {k: statistics.median(v) for k, v in times.items()}
    low = {k: min(v) for k, v in times.items()}
    floor = med["bare 3B rows"] / med["bare 2B rows"]
    parts = {"step_ms_median": {k: round(v * 1000, 2) for k, v in med.items()},
             "step_ms_min": {k: round(v * 1000, 2) for k, v in low.items()},
             "threads": torch.get_num_threads(), "pairs": a.batch, "repeats": a.repeats}
    out = {
        "10_selm_vs_dpo_step_over_floor": {
            "value": per_round("selm+pre", "dpo+pre", "bare 3B rows", "bare 2B rows"), "bound": 1.05, "op": "<=",
            "selm_over_dpo": per_round("selm+pre", "dpo+pre"), "floor_3_vs_2_rows": per_round("bare 3B rows", "bare 2B rows"),
            "without_precompute": per_round("selm", "dpo", "bare 3B rows", "bare 2B rows"),
            "from_medians": round(med["selm+pre"] / med["dpo+pre"] / floor, 3),
            "from_fastest_steps": round(low["selm+pre"] / low["dpo+pre"] / (low["bare 3B rows"] / low["bare 2B rows"]), 3),
            "note": "both with precomputed reference log-probs (the default); 'without_precompute' runs the reference in the step"},
        "11_precompute_step_dpo": {"value": per_round("dpo+pre", "dpo"), "bound": 0.75, "op": "<=",
                                   "from_medians": round(med["dpo+pre"] / med["dpo"], 3),
                                   "from_fastest_steps": round(low["dpo+pre"] / low["dpo"], 3)},
        "11_precompute_step_selm": {"value": per_round("selm+pre", "selm"), "bound": 0.75, "op": "<=",
                                    "from_medians": round(med["selm+pre"] / med["selm"], 3),
                                    "from_fastest_steps": round(low["selm+pre"] / low["selm"], 3)},
        "_parts_train": parts,
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
