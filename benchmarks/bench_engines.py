"""Figures 18 and 19: the engines the project can swap in, side by side on this machine.

18. vLLM vs hf generation: the micro Llama-3 (tests/support/real_models.py, shaped for vLLM's CPU attention
    as tests/online/test_vllm_real.py shapes it), the tiny world's eval prompts, greedy, float32, through the
    project's backends with the default config's options (hf: batch 64; vllm: the worker in
    `vllm.python`, .venv-vllm from `make vllm-env`). Each `complete` call of the vllm backend starts
    its own engine; its start cost is a 1-prompt, 1-token call timed in the same round, and the
    generation alone is the full call minus that. Value: hf seconds / vllm seconds (> 1 = vLLM
    faster), with the engine start excluded and included (hf's model load included there).
19. ZeRO-3 vs DDP: the default's SFT stage (tiny model, global batch 64, `--max-steps`) under
    `accelerate launch` on 2 processes (configs/accelerate/zero3.yaml vs multi_gpu.yaml; gloo on a
    CPU), run through `selm-bench train-and-eval`. A step's time is the Trainer's train_runtime
    (after the model load and DeepSpeed's/DDP's set-up) over its steps; the stage's duration from
    the manifest (process start and model load in it) is kept beside. Value: ZeRO-3 step / DDP step.

Rounds interleave both sides; each value is the median over rounds of that round's ratio.
No bound: both are reported. A figure whose engine is missing comes back with value null and
`skipped` saying why. Prints one JSON object on stdout's last line.

    python benchmarks/bench_engines.py --figure 18 [--n 256] [--rounds 2]
    python benchmarks/bench_engines.py --figure 19 [--steps 60] [--rounds 3]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import setup_env

setup_env()

ROOT = Path(__file__).resolve().parent.parent
VLLM = "18_vllm_vs_hf_generation"
ZERO3 = "19_zero3_vs_ddp_step"


def vllm_python() -> str:
    return os.environ.get("SELM_BENCH_VLLM_PYTHON") or str(ROOT / ".venv-vllm" / "bin" / "python")


def skipped(names: list[str], why: str) -> dict:
    return {n: {"value": None, "bound": None, "met": None, "skipped": why} for n in names}


def median_ratio(num: list[float], den: list[float]) -> float:
    return round(statistics.median(a / b for a, b in zip(num, den)), 3)


def timed(fn, *args) -> tuple[float, object]:
    t = time.perf_counter()
    out = fn(*args)
    return round(time.perf_counter() - t, 3), out


def vllm_vs_hf(n: int, max_new_tokens: int, rounds: int) -> dict:
    names = [f"{VLLM}_start_excluded", f"{VLLM}_start_included"]
    from selm_bench.trainers.vllm_backend import VLLMBackend, interpreter_problem

    python = vllm_python()
    why = interpreter_problem(python) if Path(python).exists() else f"no vLLM environment at {python}"
    if why:
        return skipped(names, f"{why} (`make vllm-env` makes .venv-vllm)")
    sys.path.insert(0, str(ROOT / "tests"))
    from _real_models import build_micro_llama3
    from test_vllm_real import _vllm_shaped  # 2 heads of 32: vLLM's CPU attention has no head_dim 16

    from selm_bench.harness.core.config import WorldConfig, load_config
    from selm_bench.harness.run.stages import backend_options
    from selm_bench.harness.world import build_world, read_jsonl
    from selm_bench.trainers.generation import HFBackend, Sampling

    tmp = Path(tempfile.mkdtemp(prefix="bench-engines-"))
    model = str(_vllm_shaped(build_micro_llama3(tmp / "micro"), tmp / "micro-vllm"))
    build_world(WorldConfig(n_sft=8, n_pref=8, n_prompts=8, n_dev=8, n_eval=n, n_two_turn=4, n_mc=4), 0, tmp / "w")
    convs = [[{"role": "user", "content": r["prompt"]}] for r in read_jsonl(tmp / "w" / "eval.jsonl")][:n]
    cfg = load_config(sets=["vllm.dtype=float32", f"vllm.python={python}"])
    hf_load_s, hf = timed(lambda: HFBackend(model, device="cpu", **{**backend_options(cfg, "hf"), "dtype": "float32"}))
    vllm = VLLMBackend(model, device="cpu", **backend_options(cfg, "vllm"))
    full, probe = Sampling(max_new_tokens=max_new_tokens), Sampling(max_new_tokens=1)
    hf.chat(convs[:2], full)  # warm up
    first_start_s, _ = timed(vllm.chat, convs[:1], probe)  # the first engine start (fills vLLM's compile cache)
    secs: dict[str, list[float]] = {"hf": [], "vllm": [], "vllm_start": []}
    for _ in range(rounds):
        t, hf_out = timed(hf.chat, convs, full)
        secs["hf"].append(t)
        t, _ = timed(vllm.chat, convs[:1], probe)
        secs["vllm_start"].append(t)
        t, vllm_out = timed(vllm.chat, convs, full)
        secs["vllm"].append(t)
    gen = [round(t - s, 3) for t, s in zip(secs["vllm"], secs["vllm_start"])]
    parts = {"seconds": secs, "vllm_generation_s": gen, "hf_load_s": hf_load_s, "vllm_first_start_s": first_start_s,
             "prompts": len(convs), "max_new_tokens": max_new_tokens, "dtype": "float32", "greedy": True,
             "hf_batch_size": hf.batch_size, "enforce_eager": vllm.engine["enforce_eager"],
             "same_output_share": round(sum(a == b for a, b in zip(hf_out, vllm_out)) / len(convs), 3),
             "model": "micro Llama-3 (hidden 64, 2 layers, 2 heads of 32, vocab 128256)", "rounds": rounds}
    return {
        names[0]: {"value": median_ratio(secs["hf"], gen), "bound": None, "note": "hf s / (vllm call - 1-token call) s",
                   **parts},
        names[1]: {"value": median_ratio([t + hf_load_s for t in secs["hf"]], secs["vllm"]), "bound": None,
                   "note": "(hf load + generate) s / whole vllm call s (worker start, vllm import, engine start)"},
    }


def sft_run(out: Path, accelerate_config: str, steps: int) -> dict:
    from bench_speed import run_child

    cmd = [sys.executable, "-m", "selm_bench.harness.cli", "train-and-eval", "--out", str(out), "--methods", "sft",
           "--set", "suites=[]", "--set", f"sft.max_steps={steps}", "--launcher", "accelerate", "--num-processes", "2",
           "--accelerate-config", str(ROOT / "configs" / "accelerate" / accelerate_config)]
    code, _, wall, _, _ = run_child(cmd, stderr_path=out.with_suffix(".stderr"))
    if code != 0:
        raise RuntimeError(f"{accelerate_config}: exit {code}; see {out.with_suffix('.stderr')} and {out}/logs")
    folder = out / "checkpoints" / "sft" / "model"
    end = next(e for e in reversed(json.loads((folder / "train_log.json").read_text())) if "train_runtime" in e)
    info = json.loads((folder / "train_info.json").read_text())
    stage = json.loads((out / "manifest.json").read_text())["stages"]["checkpoints/sft/model"]["duration_s"]
    return {"step_s": end["train_runtime"] / end["step"], "steps": end["step"], "stage_s": stage, "wall_s": wall,
            "train_loss": end["train_loss"], "type": info["distributed_type"], "zero_stage": info.get("zero_stage")}


def zero3_vs_ddp(steps: int, rounds: int) -> dict:
    if importlib.util.find_spec("deepspeed") is None:
        return skipped([ZERO3], "deepspeed is not installed (pip install deepspeed)")
    # DeepSpeed's CPU collectives compile an op on first use (cached): once here, not in two workers at once.
    build = ("from deepspeed.accelerator import get_accelerator; "
             "get_accelerator().create_op_builder('ShareMemCommBuilder').load()")
    subprocess.run([sys.executable, "-c", build], env={**os.environ, "DS_ACCELERATOR": "cpu"}, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    tmp = Path(tempfile.mkdtemp(prefix="bench-zero3-"))
    runs: dict[str, list[dict]] = {"zero3": [], "ddp": []}
    for r in range(rounds):
        for name, acc in (("zero3", "zero3.yaml"), ("ddp", "multi_gpu.yaml")):
            runs[name].append(sft_run(tmp / f"{name}-{r}", acc, steps))
    z, d = runs["zero3"], runs["ddp"]
    return {ZERO3: {
        "value": median_ratio([x["step_s"] for x in z], [x["step_s"] for x in d]), "bound": None,
        "step_ms": {k: [round(x["step_s"] * 1000, 1) for x in v] for k, v in runs.items()},
        "with_process_start_and_load": median_ratio([x["stage_s"] for x in z], [x["stage_s"] for x in d]),
        "stage_s": {k: [round(x["stage_s"], 1) for x in v] for k, v in runs.items()},
        "launch_wall_s": {k: [round(x["wall_s"], 1) for x in v] for k, v in runs.items()},
        "train_loss_rel_diff": round(abs(z[0]["train_loss"] / d[0]["train_loss"] - 1), 8),
        "launched": {k: f"{v[0]['type']} zero_stage={v[0]['zero_stage']}" for k, v in runs.items()},
        "steps": steps, "processes": 2, "global_batch": 64, "rounds": rounds,
        "note": "default tiny model, sft stage; step = train_runtime / steps (model load and engine set-up excluded)"}}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--figure", type=int, choices=(18, 19), required=True)
    ap.add_argument("--n", type=int, default=256, help="18: prompts")
    ap.add_argument("--max-new-tokens", type=int, default=64, help="18: new tokens per reply")
    ap.add_argument("--steps", type=int, default=60, help="19: optimizer steps per run")
    ap.add_argument("--rounds", type=int, default=2)
    a = ap.parse_args()
    out = vllm_vs_hf(a.n, a.max_new_tokens, a.rounds) if a.figure == 18 else zero3_vs_ddp(a.steps, a.rounds)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
