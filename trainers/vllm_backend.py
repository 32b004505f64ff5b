"""The `vllm` generation backend: vLLM engines in worker subprocesses.

Each call to `complete` writes a job file per shard of the prompts and runs
`PYTHON trainers/vllm_worker.py JOB.json OUT.json` once per shard (concurrently; on GPUs one group
of `tensor_parallel_size` GPUs each via CUDA_VISIBLE_DEVICES), so vLLM's memory is back before
training starts. PYTHON is `vllm.python` (backend option `python`): an interpreter whose
environment has vllm (`make vllm-env` makes .venv-vllm), else this one. The worker imports
nothing of this project.

Both backends see the same tokens: prompts are rendered with the training chat template
(`render_prompt`), encoded here with `encode_prompt` (exactly one BOS) and sent as ids; replies
stop at `stop_token_ids` (tokenizer eos + generation_config eos) and come back as ids, decoded
here with the same tokenizer call as the `hf` backend. Each prompt samples with its own seed,
`sampling.seed + its index in the call`, so sharding never changes a reply.

This module imports without vllm.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

from selm_bench.harness.core.progress import progress
from selm_bench.harness.core.registry import register_backend
from selm_bench.trainers.generation import Sampling, encode_prompt, load_generation_config, render_prompt, stop_token_ids
from selm_bench.trainers.vllm_worker import CPU_ENV  # stdlib only: the worker imports nothing of this project

WORKER = str(Path(__file__).resolve().with_name("vllm_worker.py"))
NOT_INSTALLED = "backend vllm needs the optional extra: pip install 'selm-bench[vllm]' (vllm is not installed)"
_REPO_ROOT = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------- pure helpers


def shard(items: Sequence[Any], d: int) -> list[list[int]]:
    """Indices of `items` in `d` contiguous shards whose sizes differ by at most 1 (larger first).

    shard(range(5), 2) == [[0, 1, 2], [3, 4]]; shards are empty when d > len(items)."""
    if d < 1:
        raise ValueError(f"need at least one shard, got {d}")
    n = len(items)
    base, extra = divmod(n, d)
    out, start = [], 0
    for g in range(d):
        size = base + (1 if g < extra else 0)
        out.append(list(range(start, start + size)))
        start += size
    return out


def merge(shards_indices: Sequence[Sequence[int]], shard_results: Sequence[Sequence[Any]], n_total: int) -> list:
    """Inverse of `shard`: the per-shard results put back in the original order."""
    if len(shards_indices) != len(shard_results):
        raise ValueError(f"{len(shard_results)} shard results for {len(shards_indices)} shards")
    out: list[Any] = [None] * n_total
    seen = [False] * n_total
    for g, (idx, res) in enumerate(zip(shards_indices, shard_results)):
        if len(idx) != len(res):
            raise ValueError(f"shard {g} returned {len(res)} results for {len(idx)} prompts")
        for i, r in zip(idx, res):
            if not 0 <= i < n_total or seen[i]:
                raise ValueError(f"shard {g}: index {i} is out of range or repeated")
            out[i], seen[i] = r, True
    if not all(seen):
        raise ValueError(f"shards cover {sum(seen)} of {n_total} prompts")
    return out


def gpu_groups(d: int, tp: int, visible: str | None) -> list[str]:
    """CUDA_VISIBLE_DEVICES for each of `d` workers: group g gets GPUs g*tp .. g*tp+tp-1,
    taken from `visible` (the parent's CUDA_VISIBLE_DEVICES) when set, else ids 0..d*tp-1.

    gpu_groups(2, 2, "4,5,6,7") == ["4,5", "6,7"]"""
    if d < 1 or tp < 1:
        raise ValueError(f"data_parallel_size and tensor_parallel_size must be >= 1 (got {d}, {tp})")
    if visible is None:
        ids = [str(i) for i in range(d * tp)]
    else:
        ids = [s.strip() for s in visible.split(",") if s.strip()]
        if len(ids) < d * tp:
            raise ValueError(
                f"data_parallel_size={d} x tensor_parallel_size={tp} needs {d * tp} GPUs, "
                f"but CUDA_VISIBLE_DEVICES={visible!r} lists {len(ids)}"
            )
    return [",".join(ids[g * tp : (g + 1) * tp]) for g in range(d)]


def worker_command(worker: str, job: Path, out: Path, python: str | None = None) -> list[str]:
    """The worker subprocess: `PYTHON FILE.py JOB OUT`, or `PYTHON -m MODULE JOB OUT`
    (PYTHON = `python`, else this interpreter)."""
    py = python or sys.executable
    if worker.endswith(".py"):
        return [py, worker, str(job), str(out)]
    return [py, "-m", worker, str(job), str(out)]


def _vllm_installed() -> bool:
    return importlib.util.find_spec("vllm") is not None


_CAN_IMPORT: dict[str, str] = {}  # interpreter -> "" (has vllm) or why not, checked once per process
_PROBE = "import importlib.util, sys; sys.exit(0 if importlib.util.find_spec('vllm') else 3)"


def interpreter_problem(python: str) -> str:
    """"" when `python` runs and finds vllm, else one line saying what is wrong (cached)."""
    if python in _CAN_IMPORT:
        return _CAN_IMPORT[python]
    hint = "make vllm-env creates .venv-vllm; then set vllm.python: .venv-vllm/bin/python"
    try:
        rc = subprocess.run([python, "-c", _PROBE], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, timeout=60).returncode
        problem = "" if rc == 0 else f"backend vllm: {python} cannot import vllm ({hint})"
    except (OSError, subprocess.TimeoutExpired) as e:
        problem = f"backend vllm: cannot run vllm.python {python} ({type(e).__name__}; {hint})"
    _CAN_IMPORT[python] = problem
    return problem


def _last_line(path: Path) -> str:
    try:
        lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1] if lines else ""


def _same_interpreter(python: str) -> bool:
    """Whether `python` (empty = unset) is this interpreter, whose environment `_vllm_installed` checks."""
    return not python or os.path.abspath(python) == os.path.abspath(sys.executable)


# ---------------------------------------------------------------- backend (parent process)


@register_backend("vllm", help="vLLM in worker subprocesses (GPU, optional extra selm-bench[vllm]); data_parallel_size shards prompts over GPU groups")
class VLLMBackend:
    worker_module: str = WORKER

    @classmethod
    def preflight(cls, python: str | None = None, worker_module: str | None = None, **_: Any) -> None:
        """Before a run's first stage (and at construction): the interpreter that runs the worker imports vllm."""
        if (worker_module or cls.worker_module) != WORKER:
            return
        if _same_interpreter(str(python or "")):
            if not _vllm_installed():
                raise RuntimeError(NOT_INSTALLED)
        elif problem := interpreter_problem(str(python)):
            raise RuntimeError(problem)

    def __init__(
        self,
        model: str,
        device: str = "cuda",
        batch_size: int = 64,
        dtype: str = "auto",
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.9,
        max_model_len: int | None = None,
        data_parallel_size: int = 1,
        worker_module: str | None = None,
        trust_remote_code: bool = False,
        python: str | None = None,
        enforce_eager: bool = False,
        **_: Any,
    ):
        if worker_module is not None:
            self.worker_module = str(worker_module)
        self.python = str(python) if python else sys.executable
        self.preflight(python=python, worker_module=self.worker_module)
        self.device = str(device)
        self.on_cpu = self.device.startswith("cpu")
        # Checked here so a bad setting fails before any worker starts (GPUs only: a CPU engine takes none).
        if not self.on_cpu:
            gpu_groups(int(data_parallel_size), int(tensor_parallel_size), os.environ.get("CUDA_VISIBLE_DEVICES"))
        from transformers import AutoTokenizer

        self.model_name = str(model)
        self.tokenizer = AutoTokenizer.from_pretrained(model, trust_remote_code=trust_remote_code)
        self.stop_ids = stop_token_ids(self.tokenizer, load_generation_config(self.model_name, trust_remote_code))
        self.batch_size = batch_size  # vLLM schedules its own batches
        self.engine = {
            "dtype": dtype,
            "tensor_parallel_size": int(tensor_parallel_size),
            "gpu_memory_utilization": float(gpu_memory_utilization),
            "max_model_len": None if max_model_len is None else int(max_model_len),
            "trust_remote_code": bool(trust_remote_code),
            "enforce_eager": bool(enforce_eager),  # no torch.compile: a faster start (tests), slower steps
        }
        self.data_parallel_size = int(data_parallel_size)

    def chat(self, conversations: list[list[dict[str, str]]], sampling: Sampling, desc: str = "generate") -> list[list[str]]:
        """For each conversation, `sampling.n` replies to its last user turn."""
        prompts = [render_prompt(self.tokenizer, conv, self.model_name) for conv in conversations]
        return self.complete(prompts, sampling, desc=desc)

    def _groups(self) -> list[str | None]:
        if self.on_cpu:
            return [None] * self.data_parallel_size
        return list(gpu_groups(self.data_parallel_size, self.engine["tensor_parallel_size"],
                               os.environ.get("CUDA_VISIBLE_DEVICES")))

    def _env(self, group: str | None) -> dict[str, str]:
        env = dict(os.environ)
        if group is not None:
            env["CUDA_VISIBLE_DEVICES"] = group
        if self.on_cpu:
            for k, v in CPU_ENV.items():
                env.setdefault(k, v)
        if not self.worker_module.endswith(".py"):  # a worker module of this project (-m) needs the repo
            env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_REPO_ROOT), env.get("PYTHONPATH", "")) if p)
        return env

    def _text(self, reply: Any) -> str:
        """A worker's reply: {"token_ids": [...]} decoded as the hf backend decodes, or plain text."""
        if isinstance(reply, dict):
            if reply.get("token_ids") is not None:
                return self.tokenizer.decode(reply["token_ids"], skip_special_tokens=True).strip()
            return str(reply.get("text", "")).strip()
        return str(reply).strip()

    def complete(self, prompts: list[str], sampling: Sampling, desc: str = "generate") -> list[list[str]]:
        prompts = list(prompts)
        if not prompts:
            return []
        # Greedy replies are identical: generate one and repeat it, as the hf backend returns n copies.
        sent = dataclasses.replace(sampling, n=1) if sampling.greedy else sampling
        token_ids = [encode_prompt(self.tokenizer, p) for p in prompts]
        shards = shard(prompts, self.data_parallel_size)
        groups = self._groups()
        where = (lambda g: "device=cpu") if self.on_cpu else (lambda g: f"CUDA_VISIBLE_DEVICES={groups[g]}")
        results: list[list[list[Any]]] = [[] for _ in shards]
        with tempfile.TemporaryDirectory(prefix="selm-vllm-") as tmp, progress(desc, total=len(prompts)) as bar:
            procs: dict[int, tuple[subprocess.Popen, Path, Path, Any]] = {}
            try:
                for g, idx in enumerate(shards):
                    if not idx:
                        continue
                    job, out, log = (Path(tmp) / f"{name}-{g}.{ext}" for name, ext in (("job", "json"), ("out", "json"), ("stderr", "log")))
                    job.write_text(json.dumps({
                        "model": self.model_name,
                        "prompts": [prompts[i] for i in idx],  # for the log only: the engine gets the ids
                        "prompt_token_ids": [token_ids[i] for i in idx],
                        "seeds": [sampling.seed + i for i in idx],
                        "sampling": {k: v for k, v in dataclasses.asdict(sent).items() if k != "seed"},
                        "stop_token_ids": self.stop_ids,
                        "engine": {**self.engine, "seed": sampling.seed},
                        "device": "cpu" if self.on_cpu else "cuda",
                    }))
                    log_f = open(log, "wb")
                    proc = subprocess.Popen(
                        worker_command(self.worker_module, job, out, self.python), env=self._env(groups[g]),
                        stdout=log_f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                    )
                    procs[g] = (proc, out, log, log_f)
                pending = set(procs)
                while pending:
                    for g in sorted(pending):
                        proc, out, log, log_f = procs[g]
                        rc = proc.poll()
                        if rc is None:
                            continue
                        pending.discard(g)
                        log_f.close()
                        if rc != 0:
                            err = _last_line(out.with_suffix(".err")) or _last_line(log) or "no output"
                            raise RuntimeError(f"vllm worker {g} ({where(g)}) exited with {rc}: {err}")
                        results[g] = json.loads(out.read_text())
                        bar.advance(len(shards[g]))
                    if pending:
                        time.sleep(0.1)
            finally:
                for proc, _out, _log, log_f in procs.values():
                    if proc.poll() is None:  # another shard failed: stop ours (and their engine processes)
                        try:
                            os.killpg(proc.pid, 15)
                        except ProcessLookupError:
                            pass
                        try:
                            proc.wait(timeout=30)
                        except subprocess.TimeoutExpired:
                            os.killpg(proc.pid, 9)
                            proc.wait()
                    log_f.close()
        merged = merge(shards, results, len(prompts))
        out_records: list[list[str]] = []
        for i, replies in enumerate(merged):
            replies = [self._text(r) for r in replies]
            if sampling.greedy and len(replies) == 1:
                replies = replies * sampling.n
            if len(replies) != sampling.n:
                raise RuntimeError(f"vllm worker returned {len(replies)} replies for prompt {i}, expected {sampling.n}")
            out_records.append(replies)
        return out_records
