"""`make bench`: every speed figure, measured side by side in one run, with its bound.

Each figure runs in its own process (its peak RSS is that process's, from wait4):
  10, 11  benchmarks/bench_train.py     SELM vs DPO step over the 3-vs-2-row floor; precomputed reference
  12      benchmarks/bench_generate.py  hf generation, batch 32 vs one prompt at a time
  13      benchmarks/bench_judge.py     judge concurrency 16 vs 1 (loopback, 50 ms), cached rerun
  14      benchmarks/bench_lm_eval.py   the harness's lm-eval suite vs lm_eval.simple_evaluate
  15, 16  the default `selm-bench train-and-eval` from scratch (seeds 0 and 1): stage time from the
          manifest, online methods vs dpo (paired, per eval item), peak RSS; and
          benchmarks/bench_sft.py: one SFT epoch, TRL's padded batches vs the packed rows
  17      the default run's stderr: no foreign tqdm bar
  18      benchmarks/bench_engines.py   vLLM vs hf generation (micro Llama-3, 256 prompts x 64 tokens), engine
          start excluded and included; skipped, with a line saying so, without .venv-vllm (`make vllm-env`)
  19      benchmarks/bench_engines.py   ZeRO-3 vs DDP step time, the SFT stage on 2 accelerate processes
  20      benchmarks/bench_commands.py  leaderboard, compare, plan, list: seconds each (bound 1.0) and the
          ratio to `selm-bench --help`, on the default run when figure 15 made one

Ends with a table (figure, value, bound, met) and writes results/bench/latest.json as
{name: {"value", "bound", "met", ...parts}} (rewritten after each figure, so a cut-off run keeps
what it measured). No figure is asserted anywhere: a miss is reported, not raised.

    python benchmarks/bench_speed.py [--only 10,12] [--quick] [--seeds 0,1] [--out results/bench/latest.json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
TQDM_BAR = re.compile(r"\d+%\|.*?\|\s*\d+/\d+")
ONLINE = ("iterative-dpo/iter-1", "iterative-dpo/iter-2", "selm/iter-1", "selm/iter-2")


ALL = "10,11,12,13,14,15,16,17,18,19,20"


def _figure_in(name: str, only: set[int]) -> bool:
    """Whether an entry of latest.json belongs to one of the figures `only` (re)measures."""
    if name.startswith("_default_seed"):
        return bool(only & {15, 16, 17})
    if name == "_parts_train":
        return bool(only & {10, 11})
    head = name.split("_", 1)[0]
    return head.isdigit() and int(head) in only


def run_child(cmd: list[str], stderr_path: Path | None = None) -> tuple[int, str, float, float, float]:
    """(exit code, stdout, wall s, peak RSS MB, CPU s) of one child process."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "SELM_BENCH_QUIET": "1"}
    err = open(stderr_path, "w") if stderr_path else subprocess.DEVNULL
    t = time.perf_counter()
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - t
        out.seek(0)
        text = out.read().decode()
    if stderr_path:
        err.close()
    return proc.returncode, text, wall, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime


def bench_script(name: str, args: list[str]) -> dict:
    code, out, wall, rss, cpu = run_child([sys.executable, str(HERE / name), *args])
    lines = [ln for ln in out.splitlines() if ln.startswith("{")]
    if code != 0 or not lines:
        return {f"{name}": {"value": None, "bound": None, "error": f"exit {code}", "peak_rss_mb": round(rss)}}
    figures = json.loads(lines[-1])
    for key, fig in figures.items():
        if fig.get("skipped"):
            print(f"figure {key} skipped: {fig['skipped']}", file=sys.stderr)
        fig.update(peak_rss_mb=round(rss), process_wall_s=round(wall, 1), process_cpu_s=round(cpu, 1))
    return figures


def paired(run: Path, ckpt: str, base: str = "dpo") -> dict:
    """Accuracy of `ckpt` minus `base` on the same eval items, with the paired standard error."""
    def scores(c: str) -> dict[str, float]:
        rows = (run / "evals" / c / "tiny-world" / "items.jsonl").read_text().splitlines()
        return {r["id"]: float(r["correct"]) for r in map(json.loads, rows)}

    a, b = scores(ckpt), scores(base)
    diffs = [a[k] - b[k] for k in b]
    n = len(diffs)
    mean = sum(diffs) / n
    se = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1) / n)
    return {"accuracy": round(sum(a.values()) / n, 4), "delta_vs_dpo": round(mean, 4), "se": round(se, 4),
            "z": round(mean / se, 2) if se else None}


def e2e(seed: int, workdir: Path) -> dict:
    out = workdir / f"default-seed{seed}"
    cmd = [sys.executable, "-m", "selm_bench.harness.cli", "train-and-eval", "--out", str(out)]
    if seed != 0:
        cmd += ["--seed", str(seed)]
    code, _, wall, rss, cpu = run_child(cmd, stderr_path=workdir / f"default-seed{seed}.stderr")
    stderr = (workdir / f"default-seed{seed}.stderr").read_text()
    if code != 0:
        return {"error": f"exit {code}: {stderr.strip().splitlines()[-1:] }"}
    stages = json.loads((out / "manifest.json").read_text())["stages"]
    times = {k: v.get("duration_s") or 0.0 for k, v in stages.items()}
    acc = {c: paired(out, c) for c in ONLINE}
    acc["sft"] = paired(out, "sft")
    acc["dpo"] = {"accuracy": paired(out, "dpo")["accuracy"]}
    return {"stage_time_s": round(sum(times.values()), 1), "wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
            "peak_rss_mb": round(rss), "stages_s": {k: round(v, 1) for k, v in times.items()},
            "sft_s": round(times.get("checkpoints/sft/model", 0.0), 1), "accuracy": acc,
            "foreign_tqdm_bars": len(TQDM_BAR.findall(stderr)), "stderr_lines": len(stderr.splitlines())}


def finish(figures: dict, path: Path) -> None:
    for fig in figures.values():
        if "met" not in fig:
            v, b, op = fig.get("value"), fig.get("bound"), fig.pop("op", "<=")
            fig["met"] = None if v is None else (True if b is None else (v <= b if op == "<=" else v >= b))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(figures, indent=1) + "\n")
    tmp.replace(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default=ALL, help="comma list of figure numbers (the others are kept from --out)")
    ap.add_argument("--quick", action="store_true", help="fewer repeats (a smoke run, not for reporting)")
    ap.add_argument("--seeds", default="0,1", help="seeds of the default run (figure 15's accuracy check)")
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "bench" / "latest.json")
    ap.add_argument("--from-run", type=Path, help="with --only 12/14: a default run folder whose sft checkpoint "
                                                   "and world they use (the full run uses its own seed-0 run)")
    a = ap.parse_args()
    only = {int(x) for x in a.only.split(",")}
    q = a.quick
    # --only keeps the other figures of the last run (each figure's ratio is measured within its own run)
    kept = json.loads(a.out.read_text()) if a.only != ALL and a.out.exists() else {}
    figures: dict = {k: v for k, v in kept.items() if not k.startswith("_machine") and not _figure_in(k, only)}
    if "_machine" in kept:
        figures["_machine_earlier"] = kept["_machine"]
    figures["_machine"] = {"value": None, "bound": None, "met": True, "cpus": os.cpu_count(),
                                  "load_avg_start": [round(x, 2) for x in os.getloadavg()],
                                  "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "figures": sorted(only)}
    work = Path(tempfile.mkdtemp(prefix="selm-bench-"))
    if only & {10, 11}:
        figures.update(bench_script("bench_train.py", ["--repeats", "5" if q else "30"]))
        finish(figures, a.out)
    model = world = None
    if a.from_run:
        model, world = str(a.from_run / "checkpoints" / "sft" / "model"), str(a.from_run / "world" / "data")
    if only & {15, 16, 17}:
        runs = {}
        for seed in (int(s) for s in a.seeds.split(",")):
            runs[seed] = e2e(seed, work)
            figures[f"_default_seed{seed}"] = {"value": None, "bound": None, "met": True, **runs[seed]}
            finish(figures, a.out)
        first = runs[min(runs)]
        if "error" not in first:
            model = str(work / f"default-seed{min(runs)}" / "checkpoints" / "sft" / "model")
            world = str(work / f"default-seed{min(runs)}" / "world" / "data")
            beats = {f"seed{s}/{c}": r["accuracy"][c]["z"] for s, r in runs.items() if "error" not in r for c in ONLINE}
            ok = len(beats) == len(ONLINE) * len(runs) and all(z is not None and z > 2 for z in beats.values())
            if 15 in only:
                figures["15_default_stage_time_s"] = {
                    "value": first["stage_time_s"], "bound": 120, "sft_s": first["sft_s"], "wall_s": first["wall_s"],
                    "cpu_s": first["cpu_s"], "online_beat_dpo_by_2se": ok, "z_vs_dpo": beats,
                    "met": first["stage_time_s"] <= 120 and ok}
            if 16 in only:
                figures["16_default_peak_rss_mb"] = {"value": first["peak_rss_mb"], "bound": None, "met": True,
                                                     "note": "reported, no bound"}
            if 17 in only:
                bars = sum(r.get("foreign_tqdm_bars", 0) for r in runs.values())
                figures["17_foreign_tqdm_bars_in_default_run"] = {"value": bars, "bound": 0, "op": "<="}
        finish(figures, a.out)
    if 12 in only:
        extra = ["--model", model, "--prompts", str(Path(world) / "eval.jsonl")] if model else []
        figures.update(bench_script("bench_generate.py", extra + ["--n", "32" if q else "256"]))
        finish(figures, a.out)
    if 13 in only:
        figures.update(bench_script("bench_judge.py", ["--requests", "48" if q else "160"]))
        finish(figures, a.out)
    if 14 in only:
        extra = ["--model", model, "--world", world] if model else []
        figures.update(bench_script("bench_lm_eval.py", extra + ["--repeats", "1" if q else "9"]))
        finish(figures, a.out)
    if 15 in only:  # the SFT stage's share of figure 15: one epoch padded vs packed, side by side
        figures.update(bench_script("bench_sft.py", ["--rounds", "1" if q else "2"]))
        finish(figures, a.out)
    if 18 in only:
        figures.update(bench_script("bench_engines.py", ["--figure", "18", "--n", "64" if q else "256",
                                                         "--rounds", "1" if q else "2"]))
        finish(figures, a.out)
    if 19 in only:
        figures.update(bench_script("bench_engines.py", ["--figure", "19", "--steps", "20" if q else "60",
                                                         "--rounds", "1" if q else "2"]))
    if 20 in only:
        run = ["--run", str(Path(model).parents[2])] if model and a.from_run is None and only & {15} else []
        figures.update(bench_script("bench_commands.py", run + ["--repeats", "3" if q else "5"]))
    figures["_machine"]["load_avg_end"] = [round(x, 2) for x in os.getloadavg()]
    figures["_machine"]["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    finish(figures, a.out)
    print_table(figures)
    print(f"written: {a.out}", file=sys.stderr)


def print_table(figures: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title="make bench (speed figures)")
    for col in ("figure", "value", "bound", "met", "peak RSS MB"):
        t.add_column(col)
    for name, f in figures.items():
        if name.startswith("_"):
            continue
        met = {True: "[green]met", False: "[red]missed", None: "[yellow]n/a"}[f.get("met")]
        t.add_row(name, str(f.get("value")), "reported" if f.get("bound") is None else str(f.get("bound")), met,
                  str(f.get("peak_rss_mb", "")))
    m = figures["_machine"]
    Console().print(t)
    Console().print(f"{m['cpus']} CPUs; load average at start {m['load_avg_start']}, at end {m.get('load_avg_end')}")


if __name__ == "__main__":
    main()
