"""Sweep vs separate runs, side by side on this machine.

Four separate default `train-and-eval` runs, one per α, against one `sweep` over the same four α
values with one seed on a fresh stage cache (sft, dpo, iterative DPO and SELM's first generation
are shared). Prints both wall times and their ratio (bound: <= 0.45) and writes
`results/bench/sweep.json`.

    python benchmarks/bench_sweep.py [--alphas 0,0.001,0.01,0.1] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BOUND = 0.45


def timed(cmd: list[str], log: Path) -> float:
    t0 = time.perf_counter()
    with open(log, "w") as f:
        subprocess.run(cmd, check=True, stdout=f, stderr=subprocess.STDOUT,
                       env={**os.environ, "HF_HUB_OFFLINE": "1", "SELM_BENCH_QUIET": "1"})
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--alphas", default="0,0.001,0.01,0.1")
    ap.add_argument("--out", type=Path, default=None, help="work folder (default: a temp folder)")
    ap.add_argument("--json", type=Path, default=REPO / "results" / "bench" / "sweep.json")
    args = ap.parse_args()
    alphas = args.alphas.split(",")
    work = args.out or Path(tempfile.mkdtemp(prefix="bench-sweep-"))
    work.mkdir(parents=True, exist_ok=True)
    cli = [sys.executable, "-m", "selm_bench.harness.cli"]

    separate = 0.0
    for a in alphas:
        t = timed([*cli, "train-and-eval", "--set", f"online.alpha={a}", "--out", str(work / f"run-alpha-{a}")],
                  work / f"run-alpha-{a}.log")
        print(f"separate run alpha={a}: {t:.1f} s", flush=True)
        separate += t
    swept = timed([*cli, "sweep", "--grid", f"online.alpha={args.alphas}", "--out", str(work / "sweep")], work / "sweep.log")
    print(f"sweep over {len(alphas)} alphas: {swept:.1f} s", flush=True)
    ratio = swept / separate
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    result = {"sweep_vs_separate_runs": {"value": round(ratio, 3), "bound": BOUND, "met": ratio <= BOUND,
                                         "separate_s": round(separate, 1), "sweep_s": round(swept, 1),
                                         "alphas": alphas, "peak_rss_mb": round(peak_mb)}}
    print(f"\nsweep / separate = {swept:.1f} / {separate:.1f} = {ratio:.3f} (bound <= {BOUND}: "
          f"{'met' if ratio <= BOUND else 'missed'}); peak RSS of a child {peak_mb:.0f} MB")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
