"""Figure 20: how fast the commands that only read results answer (target: at most 1.0 s each).

`leaderboard`, `compare`, `plan` and `list` know every plug-in from the registry's table and import
no torch, TRL, lm-eval or fastchat. Each is timed as a fresh process (median of --repeats) on a
finished run (--run, e.g. a default run's folder; else a micro run made here), beside `selm-bench
--help`, the floor of any command (Python, typer, the CLI module); the ratio is command / floor.

    python benchmarks/bench_commands.py [--run RUN] [--repeats 5]

Prints one JSON line {"20_<command>_s": {"value", "bound", "met", "floor_s", "ratio_to_help"}, ...}.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BOUND_S = 1.0
MICRO = ["--methods", "sft", "--suites", "tiny-world", "--set", "world.n_sft=64", "--set", "world.n_eval=16",
         "--set", "world.n_pref=8", "--set", "world.n_prompts=8", "--set", "world.n_dev=4", "--set", "sft.epochs=1"]


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "selm_bench.harness.cli", *args]


def wall(cmd: list[str], repeats: int) -> float:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=ROOT, check=True)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", type=Path, help="a finished run folder (default: a micro run made here)")
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    run = a.run
    if run is None:
        run = Path(tempfile.mkdtemp(prefix="selm-bench-cmds-")) / "run"
        subprocess.run(cli("train-and-eval", "--out", str(run), *MICRO), check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, env={**os.environ, "HF_HUB_OFFLINE": "1"}, cwd=ROOT)
    floor = wall(cli("--help"), a.repeats)
    commands = {"leaderboard": cli("leaderboard", "--results", str(run)),
                "compare": cli("compare", str(run), str(run)),
                "plan": cli("plan"), "plan_zephyr": cli("plan", "--config", "configs/zephyr-7b.yaml"),
                "list": cli("list")}
    out = {}
    for name, cmd in commands.items():
        s = wall(cmd, a.repeats)
        out[f"20_{name}_s"] = {"value": round(s, 3), "bound": BOUND_S, "met": s <= BOUND_S, "floor_s": round(floor, 3),
                               "ratio_to_help": round(s / floor, 2)}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
