"""Micro configs: the tiny world and model at test sizes. `micro(name, ...)` fills what every micro
run shares (seed 0, cpu, one layer); a test names only what it is about."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# sizes of the tiny world
WORLD_XS = {"n_sft": 32, "n_pref": 8, "n_prompts": 8, "n_dev": 4, "n_eval": 8, "n_two_turn": 2, "n_mc": 4}
# tiny Llamas: one layer, two heads
MODEL_XS = {"hidden_size": 16, "num_layers": 1, "num_heads": 2, "intermediate_size": 32}
MODEL_S = {"hidden_size": 32, "num_layers": 1, "num_heads": 2, "intermediate_size": 64}


def micro(name: str, *, methods: list[str] | None = None, suites: list[str] | None = None,
          world: dict[str, int] | None = None, model: dict[str, int] | None = None, device: str | None = "cpu",
          **sections: Any) -> dict[str, Any]:
    """A config dict: `name`, seed 0, `device`, the given methods and suites (left to the config's
    defaults when None), the world and model sizes, and any other top-level section as given."""
    cfg: dict[str, Any] = {"name": name, "seed": 0}
    if device is not None:
        cfg["device"] = device
    if methods is not None:
        cfg["methods"] = methods
    if suites is not None:
        cfg["suites"] = suites
    cfg["world"] = dict(world or WORLD_XS)
    cfg["model"] = dict(model or MODEL_XS)
    return {**cfg, **sections}


# The launcher tests' run (tests/training/test_launch.py, test_deepspeed.py): logging every step.
LAUNCH = micro("micro-launch",
                world={"n_sft": 128, "n_pref": 32, "n_prompts": 32, "n_dev": 8, "n_eval": 16, "n_two_turn": 4, "n_mc": 8},
                model=MODEL_S,
                sft={"epochs": 1, "batch_size": 32, "logging_steps": 1},
                dpo={"batch_size": 16, "logging_steps": 1},
                online={"iterations": 1, "batch_size": 16, "num_samples": 2, "max_new_tokens": 8, "logging_steps": 1},
                suite_options={"tiny-world": {"max_new_tokens": 8}})


def losses(run: Path, ckpt: str) -> list[float]:
    """The training losses a checkpoint logged, in order."""
    log = json.loads((run / "checkpoints" / ckpt / "model" / "train_log.json").read_text())
    return [e["loss"] for e in log if "loss" in e]
