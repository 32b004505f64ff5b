"""Figure 15's main part: one SFT epoch of the default (6000 tiny-world examples, batch 64,
the default's model) with TRL's padded batches vs the packed rows the CPU default now uses.
Same data order, same loss; interleaved (padded, packed, padded, packed). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from common import setup_env

setup_env()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--examples", type=int, default=6000)
    a = ap.parse_args()
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig, SFTTrainer

    from selm_bench.harness.core.config import ModelConfig, WorldConfig
    from selm_bench.harness.world import build_base_model, build_tokenizer, build_world, read_jsonl
    from selm_bench.trainers.train import packed_collator

    tmp = Path(tempfile.mkdtemp())
    build_world(WorldConfig(n_sft=a.examples, sft_noise=0.25), 0, tmp / "w")
    tok = build_tokenizer(tmp / "m")
    build_base_model(ModelConfig(), tok, 0, tmp / "m")
    ds = Dataset.from_list([{"prompt": r["prompt"], "completion": r["completion"]}
                            for r in read_jsonl(tmp / "w" / "sft.jsonl")])
    secs: dict[str, list[float]] = {"padded": [], "packed": []}
    losses: dict[str, float] = {}
    for _ in range(a.rounds):
        for name in ("padded", "packed"):
            args = SFTConfig(output_dir=str(tmp / "o"), per_device_train_batch_size=64, num_train_epochs=1,
                             learning_rate=3e-3, completion_only_loss=True, use_cpu=True, report_to=[],
                             save_strategy="no", disable_tqdm=True, seed=0, data_seed=0, logging_steps=10,
                             gradient_checkpointing=False)  # as the CPU default runs
            trainer = SFTTrainer(model=AutoModelForCausalLM.from_pretrained(tmp / "m"), args=args, train_dataset=ds,
                                 processing_class=tok,
                                 data_collator=packed_collator(tok.pad_token_id) if name == "packed" else None)
            t = time.perf_counter()
            out = trainer.train()
            secs[name].append(round(time.perf_counter() - t, 2))
            losses[name] = round(out.training_loss, 4)
    print(json.dumps({"15_part_sft_epoch_packed_vs_padded": {
        "value": round(min(secs["packed"]) / min(secs["padded"]), 3), "bound": None,
        "seconds": secs, "train_loss": losses, "examples": a.examples,
        "note": "one SFT epoch, the fastest of each; not a bound of the issue, the part of figure 15 SFT is"}}))


if __name__ == "__main__":
    main()
