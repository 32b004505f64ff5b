"""The `vllm` generation backend: vLLM engines in worker subprocesses.

Each call to `complete` writes a job file per shard of the prompts and runs
`python -m selm_bench.trainers.vllm_backend JOB.json OUT.json` once per shard (concurrently, one group
of `tensor_parallel_size` GPUs each via CUDA_VISIBLE_DEVICES), so vLLM's GPU memory is back
before training starts. Prompts are rendered with the training chat template
(`render_prompt`) and tokenized here with the HF tokenizer (no extra special tokens, as the
`hf` backend does); the worker passes those token ids to vLLM.

This module imports without vllm: vllm is imported only inside the worker (`main`).
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

from selm_bench.harness.progress import progress
from selm_bench.harness.registry import register_backend
from selm_bench.trainers.generation import Sampling, render_prompt

WORKER_MODULE = "selm_bench.trainers.vllm_backend"
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


def worker_command(worker_module: str, job: Path, out: Path) -> list[str]:
    """The worker subprocess: `python -m MODULE JOB OUT`, or `python FILE.py JOB OUT`."""
    if worker_module.endswith(".py"):
        return [sys.executable, worker_module, str(job), str(out)]
    return [sys.executable, "-m", worker_module, str(job), str(out)]


def _vllm_installed() -> bool:
    return importlib.util.find_spec("vllm") is not None


def _last_line(path: Path) -> str:
    try:
        lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1] if lines else ""


# ---------------------------------------------------------------- backend (parent process)


@register_backend("vllm", help="vLLM in worker subprocesses (GPU, optional extra selm-bench[vllm]); data_parallel_size shards prompts over GPU groups")
class VLLMBackend:
    worker_module: str = WORKER_MODULE

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
        **_: Any,
    ):
        if worker_module is not None:
            self.worker_module = str(worker_module)
        if self.worker_module == WORKER_MODULE and not _vllm_installed():
            raise RuntimeError(NOT_INSTALLED)
        # Checked here so a bad setting fails before any worker starts.
        gpu_groups(int(data_parallel_size), int(tensor_parallel_size), os.environ.get("CUDA_VISIBLE_DEVICES"))
        from transformers import AutoTokenizer

        self.model_name = str(model)
        self.tokenizer = AutoTokenizer.from_pretrained(model, trust_remote_code=trust_remote_code)
        self.device = device  # GPUs are chosen per worker via CUDA_VISIBLE_DEVICES (see gpu_groups)
        self.batch_size = batch_size  # vLLM schedules its own batches
        self.engine = {
            "dtype": dtype,
            "tensor_parallel_size": int(tensor_parallel_size),
            "gpu_memory_utilization": float(gpu_memory_utilization),
            "max_model_len": None if max_model_len is None else int(max_model_len),
            "trust_remote_code": bool(trust_remote_code),
        }
        self.data_parallel_size = int(data_parallel_size)

    def chat(self, conversations: list[list[dict[str, str]]], sampling: Sampling, desc: str = "generate") -> list[list[str]]:
        """For each conversation, `sampling.n` replies to its last user turn."""
        prompts = [render_prompt(self.tokenizer, conv, self.model_name) for conv in conversations]
        return self.complete(prompts, sampling, desc=desc)

    def complete(self, prompts: list[str], sampling: Sampling, desc: str = "generate") -> list[list[str]]:
        prompts = list(prompts)
        if not prompts:
            return []
        # Greedy replies are identical: generate one and repeat it, as the hf backend returns n copies.
        sent = dataclasses.replace(sampling, n=1) if sampling.greedy else sampling
        token_ids = [self.tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
        shards = shard(prompts, self.data_parallel_size)
        groups = gpu_groups(self.data_parallel_size, self.engine["tensor_parallel_size"], os.environ.get("CUDA_VISIBLE_DEVICES"))
        results: list[list[list[str]]] = [[] for _ in shards]
        with tempfile.TemporaryDirectory(prefix="selm-vllm-") as tmp, progress(desc, total=len(prompts)) as bar:
            procs: dict[int, tuple[subprocess.Popen, Path, Path, Any]] = {}
            try:
                for g, idx in enumerate(shards):
                    if not idx:
                        continue
                    job, out, log = (Path(tmp) / f"{name}-{g}.{ext}" for name, ext in (("job", "json"), ("out", "json"), ("stderr", "log")))
                    job.write_text(json.dumps({
                        "model": self.model_name,
                        "prompts": [prompts[i] for i in idx],
                        "prompt_token_ids": [token_ids[i] for i in idx],
                        "sampling": dataclasses.asdict(sent),
                        "eos_token_id": self.tokenizer.eos_token_id,
                        "engine": self.engine,
                    }))
                    env = dict(os.environ, CUDA_VISIBLE_DEVICES=groups[g])
                    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_REPO_ROOT), env.get("PYTHONPATH", "")) if p)
                    log_f = open(log, "wb")
                    proc = subprocess.Popen(
                        worker_command(self.worker_module, job, out), env=env,
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
                            raise RuntimeError(f"vllm worker {g} (CUDA_VISIBLE_DEVICES={groups[g]}) exited with {rc}: {err}")
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
            replies = [str(r).strip() for r in replies]
            if sampling.greedy and len(replies) == 1:
                replies = replies * sampling.n
            if len(replies) != sampling.n:
                raise RuntimeError(f"vllm worker returned {len(replies)} replies for prompt {i}, expected {sampling.n}")
            out_records.append(replies)
        return out_records


# ---------------------------------------------------------------- worker (subprocess)


def _write_json_atomic(path: Path, obj: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj))
    os.replace(tmp, path)


def run_job(job: dict[str, Any]) -> list[list[str]]:
    """Generate for one job (one shard) with vLLM; imported only here."""
    from vllm import LLM, SamplingParams

    s = job["sampling"]
    eng = job["engine"]
    llm = LLM(
        model=job["model"],
        tensor_parallel_size=eng["tensor_parallel_size"],
        gpu_memory_utilization=eng["gpu_memory_utilization"],
        dtype=eng["dtype"],
        max_model_len=eng["max_model_len"],
        trust_remote_code=eng.get("trust_remote_code", False),
        seed=s["seed"],
    )
    greedy = s["temperature"] < 1e-4
    params = SamplingParams(
        n=s["n"],
        temperature=0.0 if greedy else s["temperature"],
        top_p=1.0 if greedy else s["top_p"],
        max_tokens=s["max_new_tokens"],
        seed=s["seed"],
        skip_special_tokens=True,
        stop_token_ids=[job["eos_token_id"]] if job.get("eos_token_id") is not None else None,
    )
    if job.get("prompt_token_ids") is not None:
        inputs: list[Any] = [{"prompt_token_ids": ids} for ids in job["prompt_token_ids"]]
    else:
        inputs = list(job["prompts"])
    results = llm.generate(inputs, params)
    return [[o.text.strip() for o in r.outputs] for r in results]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print("usage: python -m selm_bench.trainers.vllm_backend JOB.json OUT.json", file=sys.stderr)
        return 2
    job_path, out_path = Path(argv[0]), Path(argv[1])
    try:
        job = json.loads(job_path.read_text())
        _write_json_atomic(out_path, run_job(job))
    except BaseException as e:  # noqa: BLE001 - reported to the parent as one line
        import traceback

        traceback.print_exc()
        msg = (f"{type(e).__name__}: {e}".splitlines() or [type(e).__name__])[0]
        # vLLM may log after this at shutdown; the parent prefers this file to stderr's last line.
        out_path.with_suffix(".err").write_text(msg + "\n")
        print(msg, file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
