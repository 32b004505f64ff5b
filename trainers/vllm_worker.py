"""The `vllm` backend's worker: one vLLM engine over one shard of token-id prompts.

Run by file path with the interpreter whose environment has vllm (`vllm.python`, e.g.
.venv-vllm/bin/python from `make vllm-env`), never imported by the project:

    PYTHON trainers/vllm_worker.py JOB.json OUT.json

It imports only the standard library and vllm, since that environment need not have this
project (or its torch and transformers versions). The job (written by trainers/vllm_backend.py):

    model             checkpoint folder
    prompt_token_ids  one list of ids per prompt (the parent tokenized them: one BOS, chat template)
    seeds             one sampling seed per prompt (the parent's base seed + the prompt's global index)
    sampling          n, temperature (< 1e-4 = greedy), top_p, max_new_tokens
    stop_token_ids    every id that ends a reply (tokenizer eos + generation_config eos)
    engine            LLM(...) options: dtype, tensor_parallel_size, gpu_memory_utilization,
                      max_model_len, trust_remote_code, seed
                      enforce_eager (optional)
    device            "cpu": see `prepare_env`

OUT.json is, per prompt, its replies as {"token_ids": [...], "text": "..."} (the parent decodes
the ids with its own tokenizer, as the hf backend does), written atomically. On failure the
worker exits 1 and writes the error as one line to OUT.err (vLLM may log more after it).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

USAGE = "usage: python vllm_worker.py JOB.json OUT.json"
GREEDY_BELOW = 1e-4  # FastChat's convention, as the project's Sampling.greedy
# What vLLM reads on CPU, unless already set: a KV cache of 1 GiB (else gpu_memory_utilization is
# read as a share of RAM), and the engine core in this process (no spawned engine and worker
# processes, each of which imports vllm again: about 25 s less per start on 2 cores).
CPU_ENV = {"VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_ENABLE_V1_MULTIPROCESSING": "0"}


def prepare_env(job: dict[str, Any], environ: Any = os.environ) -> None:
    """Set the CPU environment (`CPU_ENV`) for a job on CPU; values already set are kept."""
    if str(job.get("device", "")).startswith("cpu"):
        for k, v in CPU_ENV.items():
            environ.setdefault(k, v)


def engine_kwargs(job: dict[str, Any]) -> dict[str, Any]:
    """LLM(...) arguments. The tokenizer is not loaded: prompts come as ids and replies go back
    as ids, so the engine's transformers version never tokenizes or decodes anything."""
    eng = job["engine"]
    kw: dict[str, Any] = {
        "model": job["model"],
        "tensor_parallel_size": int(eng["tensor_parallel_size"]),
        "gpu_memory_utilization": float(eng["gpu_memory_utilization"]),
        "dtype": eng["dtype"],
        "max_model_len": eng.get("max_model_len"),
        "trust_remote_code": bool(eng.get("trust_remote_code") or False),
        "seed": int(eng.get("seed") or 0),
        "skip_tokenizer_init": True,
    }
    if eng.get("enforce_eager"):
        kw["enforce_eager"] = True  # no torch.compile: a faster start, slower steps
    return kw


def sampling_kwargs(job: dict[str, Any], seed: int) -> dict[str, Any]:
    """SamplingParams(...) arguments for one prompt: greedy forces temperature 0 and top_p 1."""
    s = job["sampling"]
    greedy = float(s["temperature"]) < GREEDY_BELOW
    return {
        "n": int(s["n"]),
        "temperature": 0.0 if greedy else float(s["temperature"]),
        "top_p": 1.0 if greedy else float(s["top_p"]),
        "max_tokens": int(s["max_new_tokens"]),
        "seed": int(seed),
        "stop_token_ids": [int(i) for i in job.get("stop_token_ids") or []],
        "detokenize": False,
    }


def run_job(job: dict[str, Any]) -> list[list[dict[str, Any]]]:
    """Generate for one job (one shard); vllm is imported only here."""
    prepare_env(job)
    from vllm import LLM, SamplingParams

    ids = job["prompt_token_ids"]
    seeds = job.get("seeds") or [int(job["engine"].get("seed") or 0) + i for i in range(len(ids))]
    if len(seeds) != len(ids):
        raise ValueError(f"{len(seeds)} seeds for {len(ids)} prompts")
    llm = LLM(**engine_kwargs(job))
    params = [SamplingParams(**sampling_kwargs(job, seed)) for seed in seeds]
    # use_tqdm=False: with TQDM_DISABLE=1 inherited, vLLM's progress rate divides by zero.
    results = llm.generate([{"prompt_token_ids": list(p)} for p in ids], params, use_tqdm=False)
    return [[{"token_ids": [int(t) for t in o.token_ids], "text": o.text or ""} for o in r.outputs] for r in results]


def write_json_atomic(path: Path, obj: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj))
    os.replace(tmp, path)


def drop_own_folder(path: list[str] = sys.path) -> None:
    """Run by path, Python puts this file's folder (the project's trainers/) first on sys.path, where
    generation.py, train.py, losses.py ... would shadow any same-named module vllm's env imports."""
    here = os.path.dirname(os.path.abspath(__file__))
    while path and os.path.abspath(path[0] or os.curdir) == here:
        path.pop(0)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    drop_own_folder()
    if len(argv) != 2:
        print(USAGE, file=sys.stderr)
        return 2
    job_path, out_path = Path(argv[0]), Path(argv[1])
    try:
        job = json.loads(job_path.read_text())
        write_json_atomic(out_path, run_job(job))
    except BaseException as e:  # noqa: BLE001 - reported to the parent as one line
        import traceback

        traceback.print_exc()
        msg = (f"{type(e).__name__}: {e}".splitlines() or [type(e).__name__])[0]
        # vLLM may log after this at shutdown; the parent prefers this file to stderr's last line.
        out_path.with_suffix(".err").write_text(msg + "\n")
        print(msg, file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":  # vLLM's engine core is a spawned process that re-imports this file
    sys.exit(main())
