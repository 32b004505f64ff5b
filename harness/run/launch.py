"""Training stages under `accelerate launch`: the spec is written to a file and every process
runs `python -m selm_bench.harness.run.run_stage` on it. accelerate (and DeepSpeed, FSDP, multi-node through
its config) does the distribution; nothing here is a launcher of its own.

Without a config file, N > 1 processes use accelerate's multi-process launcher
(`--multi_gpu`, which is torch.distributed: NCCL on GPUs, gloo on a CPU-only machine; its
`--cpu` mode would silently run one process without an MPI launcher).

With a config file or without, the spec's resolved precision is passed as `--mixed_precision`
(fp32 -> no), which overrides the file's `mixed_precision`: a shipped ZeRO config (bf16 for
GPUs) then runs on a CPU in fp32, and DeepSpeed's precision always agrees with the Trainer's.
On a CPU, DeepSpeed is told so (DS_ACCELERATOR=cpu; its collectives then use gloo).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from selm_bench.harness.core.config import LaunchConfig
from selm_bench.harness.core.specs import TrainArgs, to_json


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


MIXED_PRECISION = {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}  # the spec's precision -> accelerate's


def launch_env(train: TrainArgs) -> dict[str, str]:
    """The workers' environment: unbuffered output; on a CPU, DeepSpeed's CPU accelerator."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if train.device == "cpu" and train.strategy.kind == "deepspeed":
        env.setdefault("DS_ACCELERATOR", "cpu")
    return env


def _one_machine_without_port(config_file: str) -> bool:
    import yaml

    acc = yaml.safe_load(Path(config_file).read_text()) or {}
    return int(acc.get("num_machines", 1) or 1) == 1 and not acc.get("main_process_port")


def accelerate_command(spec_file: Path, root: Path, out: Path, launch: LaunchConfig, train: TrainArgs) -> list[str]:
    exe = shutil.which("accelerate", path=str(Path(sys.executable).parent)) or shutil.which("accelerate")
    cmd = [exe] if exe else [sys.executable, "-m", "accelerate.commands.launch"]
    if exe:
        cmd.append("launch")
    n = launch.num_processes
    mp = MIXED_PRECISION[train.precision]
    if launch.accelerate_config:
        cmd += ["--config_file", str(Path(launch.accelerate_config).resolve()), "--num_processes", str(n),
                "--mixed_precision", mp]
        if n > 1 and not launch.wrapper and _one_machine_without_port(launch.accelerate_config):  # not a fixed 29500
            cmd += ["--main_process_port", str(free_port())]
    else:
        cmd += ["--num_processes", str(n), "--num_machines", "1", "--mixed_precision", mp, "--dynamo_backend", "no"]
        if n > 1:
            cmd += ["--multi_gpu", "--main_process_port", str(free_port())]
        elif train.device == "cpu":
            cmd += ["--cpu"]
    cmd += ["-m", "selm_bench.harness.run.run_stage", str(spec_file), "--root", str(root), "--out", str(out)]
    if launch.wrapper:  # one launcher per node, each with its own rank (expanded on that node)
        at = cmd.index("-m")
        inner = shlex.join(cmd[:at]) + ' --machine_rank "${SLURM_NODEID:-0}" ' + shlex.join(cmd[at:])
        return [*shlex.split(launch.wrapper), "bash", "-c", inner]
    return cmd


def launch_training(spec: Any, root: Path, out: Path, launch: LaunchConfig, log: Path) -> None:
    """Run a training spec under accelerate; its output (both streams) goes to `log`."""
    spec_file = out / "spec.json"
    spec_file.write_text(to_json(spec))
    cmd = accelerate_command(spec_file, Path(root).resolve(), Path(out).resolve(), launch, spec.train)
    log.parent.mkdir(parents=True, exist_ok=True)
    env = launch_env(spec.train)
    with open(log, "w") as f:
        f.write("$ " + " ".join(cmd) + "\n")
        f.flush()
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"accelerate launch failed (exit {proc.returncode}): {last_error(log)} (log: {log})")


def last_error(log: Path) -> str:
    """The last line of a worker's log that reads like an error (an exception, `error: ...`, or the
    signal that killed a worker), else its last line. torchelastic's own summary lines
    (`ChildFailedError`, `error_file: <N/A>`) say only that a worker failed, so they are passed over."""
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    for line in reversed(lines):
        if "ChildFailedError" in line or line.startswith("error_file"):
            continue
        if "Error" in line or line.startswith("error") or re.search(r"Signal \d+ \(SIG\w+\)", line):
            return line[:300]
    return lines[-1][:300] if lines else "no output"
