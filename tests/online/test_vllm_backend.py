"""The vllm backend: sharding helpers, the worker subprocess path (with a fake worker), how workers
are launched, checked and stopped (with stand-in processes), the worker script against a stand-in vllm, and the real engine on a tiny model when vllm is installed
in this env with a GPU (tests/online/test_vllm_real.py runs the real engine from .venv-vllm on CPU)."""

import importlib.util
import json
import os
import re
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest

from support.real_models import micro_llama3  # noqa: F401
from selm_bench.trainers import vllm_backend, vllm_worker
from selm_bench.trainers.generation import Sampling, encode_prompt, render_prompt
from selm_bench.trainers.vllm_backend import WORKER, VLLMBackend, gpu_groups, merge, shard
from support.stand_ins import fake_transformers

FAKE_FAILURE = "ValueError: fake engine failure"  # the fake worker's last line when told to fail
FAKE_WORKER = textwrap.dedent(
    """
    import json, os, sys
    job = json.load(open(sys.argv[1]))
    if os.environ.get("FAKE_VLLM_FAIL"):
        print("loading model ...", file=sys.stderr)
        print("FAILURE", file=sys.stderr)
        sys.exit(3)
    cvd = os.environ.get("CUDA_VISIBLE_DEVICES")
    s = job["sampling"]
    out = [[f"  echo:{p}|{cvd}|{k}|{len(ids)}|{seed}  " for k in range(s["n"])]
           for p, ids, seed in zip(job["prompts"], job["prompt_token_ids"], job["seeds"])]
    with open(sys.argv[2] + ".tmp", "w") as f:
        json.dump(out, f)
    os.replace(sys.argv[2] + ".tmp", sys.argv[2])
    """
).replace("FAILURE", FAKE_FAILURE)


def numbers(err) -> list[int]:
    """The counts an error line names, in order."""
    return [int(n) for n in re.findall(r"-?\d+", str(err.value))]


def worker_failure(err) -> tuple[str, str, str, str]:
    """A failed worker's one line, taken apart: which worker, its GPUs, its exit code, and what it said."""
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("vllm worker ")
    head, _, said = msg.partition(": ")
    words = head.split()
    return words[2], words[3].strip("()"), words[-1], said


@pytest.fixture
def fake_worker(tmp_path):
    path = tmp_path / "fake_vllm_worker.py"
    path.write_text(FAKE_WORKER)
    return str(path)


@pytest.mark.parametrize(
    "n, d, expected",
    [
        (5, 2, [[0, 1, 2], [3, 4]]),
        (6, 3, [[0, 1], [2, 3], [4, 5]]),
        (7, 3, [[0, 1, 2], [3, 4], [5, 6]]),
        (2, 4, [[0], [1], [], []]),
        (0, 2, [[], []]),
        (0, 1, [[]]),
        (4, 1, [[0, 1, 2, 3]]),
    ],
)
def test_shard_and_merge_round_trip(n, d, expected):
    items = [f"p{i}" for i in range(n)]
    shards = shard(items, d)
    assert shards == expected
    sizes = [len(s) for s in shards]
    assert not sizes or max(sizes) - min(sizes) <= 1
    results = [[items[i].upper() for i in idx] for idx in shards]
    assert merge(shards, results, n) == [x.upper() for x in items]


def test_shard_rejects_zero():
    with pytest.raises(ValueError, match="got 0$"):
        shard([1, 2], 0)


def test_merge_refuses_a_wrong_count_of_results():
    with pytest.raises(ValueError) as err:
        merge([[0, 1, 2], [3, 4]], [["a", "b", "c"], ["d"]], 5)
    assert str(err.value).startswith("shard 1 ") and numbers(err) == [1, 1, 2]  # shard 1: 1 result for 2 prompts
    with pytest.raises(ValueError) as err:
        merge([[0, 1], [2]], [["a", "b"], []], 3)
    assert str(err.value).startswith("shard 1 ") and numbers(err) == [1, 0, 1]
    with pytest.raises(ValueError) as err:
        merge([[0], [1]], [["a"]], 2)
    assert numbers(err) == [1, 2]  # 1 shard result for 2 shards


def test_gpu_groups():
    assert gpu_groups(2, 2, "4,5,6,7") == ["4,5", "6,7"]
    assert gpu_groups(1, 1, "3") == ["3"]
    assert gpu_groups(2, 1, "1, 3 ,5") == ["1", "3"]  # spare GPUs are left unused
    assert gpu_groups(2, 2, None) == ["0,1", "2,3"]
    assert gpu_groups(3, 1, None) == ["0", "1", "2"]
    assert gpu_groups(1, 2, "5,,6,") == ["5,6"]  # empty entries are not GPUs
    with pytest.raises(ValueError) as err:
        gpu_groups(2, 2, "0,1,2")
    assert "needs 4 GPUs" in str(err.value) and "'0,1,2' lists 3" in str(err.value)
    with pytest.raises(ValueError):
        gpu_groups(1, 1, "")
    for d, tp in ((0, 1), (1, 0)):
        with pytest.raises(ValueError) as err:
            gpu_groups(d, tp, None)
        assert "data_parallel_size" in str(err.value) and str(err.value).endswith(f"(got {d}, {tp})")


def test_a_missing_vllm_says_which_extra_to_install(monkeypatch, tiny_model):
    monkeypatch.setattr(vllm_backend, "_vllm_installed", lambda: False)
    with pytest.raises(RuntimeError) as err:
        VLLMBackend(str(tiny_model))
    assert str(err.value).startswith("backend vllm ") and "pip install 'selm-bench[vllm]'" in str(err.value)


def test_fake_worker_end_to_end(monkeypatch, tiny_model, fake_worker):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5,6,7")
    be = VLLMBackend(str(tiny_model), tensor_parallel_size=2, data_parallel_size=2, worker_module=fake_worker)
    convs = [[{"role": "user", "content": f"question {i}"}] for i in range(5)]
    out = be.chat(convs, Sampling(n=2, temperature=0.7, seed=11))
    assert len(out) == 5
    expected_groups = ["4,5"] * 3 + ["6,7"] * 2  # shards [0,1,2] and [3,4]
    for i, (conv, replies) in enumerate(zip(convs, out)):
        prompt = render_prompt(be.tokenizer, conv, str(tiny_model))  # the training chat template
        n_ids = len(encode_prompt(be.tokenizer, prompt))
        # Each prompt's seed is the call's seed + its index in the call, whichever shard it is in.
        assert replies == [f"echo:{prompt}|{expected_groups[i]}|{k}|{n_ids}|{11 + i}" for k in range(2)]

    # Greedy: one reply generated per prompt, repeated n times (as the hf backend's copies).
    out = be.complete(["a", "b", "c"], Sampling(n=3, temperature=0.0))
    assert [r[0].split("|")[:3] for r in out] == [["echo:a", "4,5", "0"], ["echo:b", "4,5", "0"], ["echo:c", "6,7", "0"]]
    assert all(len(r) == 3 and len(set(r)) == 1 for r in out)

    # More workers than prompts: empty shards start no worker.
    be4 = VLLMBackend(str(tiny_model), data_parallel_size=4, worker_module=fake_worker)
    out = be4.complete(["x", "y"], Sampling())
    assert [r[0].split("|")[:2] for r in out] == [["echo:x", "4"], ["echo:y", "5"]]
    assert be4.complete([], Sampling()) == []


def test_fake_worker_failure(monkeypatch, tiny_model, fake_worker):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setenv("FAKE_VLLM_FAIL", "1")
    be = VLLMBackend(str(tiny_model), worker_module=fake_worker)
    with pytest.raises(RuntimeError) as err:
        be.complete(["a", "b"], Sampling())
    assert worker_failure(err) == ("0", "CUDA_VISIBLE_DEVICES=0", "3", FAKE_FAILURE)


def test_too_few_gpus_fails_before_any_worker(monkeypatch, tiny_model, fake_worker):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    with pytest.raises(ValueError, match="needs 2 GPUs"):
        VLLMBackend(str(tiny_model), data_parallel_size=2, worker_module=fake_worker)


@pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vllm not installed (GPU-only optional extra)")
def test_real_vllm_tiny_model(tiny_model):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("vllm needs a GPU")
    be = VLLMBackend(str(tiny_model), gpu_memory_utilization=0.3, max_model_len=256)
    convs = [[{"role": "user", "content": "hello"}], [{"role": "user", "content": "what is 2+2?"}]]
    greedy = be.chat(convs, Sampling(n=2, temperature=0.0, max_new_tokens=8))
    assert len(greedy) == 2 and all(len(r) == 2 and r[0] == r[1] for r in greedy)
    sampled = be.chat(convs, Sampling(n=3, temperature=1.0, top_p=0.9, max_new_tokens=8, seed=3))
    assert len(sampled) == 2 and all(len(r) == 3 and all(isinstance(t, str) and t == t.strip() for t in r) for r in sampled)
    json.dumps(sampled)  # plain strings, as the hf backend's records


def test_the_job_file_a_worker_gets(monkeypatch, tiny_model, tmp_path):
    """Everything the real vLLM worker reads from its job file: model, engine options (with the
    call's seed), sampling (greedy sends n=1 and repeats), the stop ids, per-prompt seeds, one
    prompt's token ids (encode_prompt's), and the device."""
    worker = tmp_path / "echo_job_worker.py"
    worker.write_text(textwrap.dedent("""
        import json, sys
        job = json.load(open(sys.argv[1]))
        seen = {k: job[k] for k in ("model", "engine", "sampling", "stop_token_ids", "seeds", "prompt_token_ids", "device")}
        out = [[json.dumps({**seen, "prompt": p})] * job["sampling"]["n"] for p in job["prompts"]]
        json.dump(out, open(sys.argv[2], "w"))
        """))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    be = VLLMBackend(str(tiny_model), dtype="bfloat16", gpu_memory_utilization=0.5, max_model_len=512,
                     worker_module=str(worker))
    (reply, again), = be.complete(["hello"], Sampling(n=2, temperature=0.0, max_new_tokens=9, seed=3))
    assert reply == again
    job = json.loads(reply)
    assert job == {"model": str(tiny_model), "prompt": "hello", "prompt_token_ids": [encode_prompt(be.tokenizer, "hello")],
                   "engine": {"dtype": "bfloat16", "tensor_parallel_size": 1, "gpu_memory_utilization": 0.5,
                              "max_model_len": 512, "trust_remote_code": False, "enforce_eager": False, "seed": 3},
                   "sampling": {"n": 1, "temperature": 0.0, "top_p": 1.0, "max_new_tokens": 9},
                   "seeds": [3], "stop_token_ids": [be.tokenizer.eos_token_id], "device": "cuda"}
    assert be.tokenizer.eos_token_id is not None


def test_stop_ids_and_bos_are_the_hf_backends(micro_llama3, tmp_path):
    """Llama-3-Instruct: the template's one BOS and no second; stop at the tokenizer's eos and every
    generation_config eos, the same list the hf backend stops on."""
    from support.real_models import LLAMA3_BOS, LLAMA3_EOS, LLAMA3_EOT

    worker = tmp_path / "w.py"
    worker.write_text("import json, sys\njob = json.load(open(sys.argv[1]))\n"
                      "json.dump([[json.dumps([job['stop_token_ids'], ids[:2]])] for ids in job['prompt_token_ids']], open(sys.argv[2], 'w'))\n")
    be = VLLMBackend(str(micro_llama3), device="cpu", worker_module=str(worker))
    (reply,), = be.chat([[{"role": "user", "content": "hi"}]], Sampling())
    stops, first = json.loads(reply)
    assert sorted(stops) == [LLAMA3_EOS, LLAMA3_EOT] and first[0] == LLAMA3_BOS and first[1] != LLAMA3_BOS


def test_token_id_replies_are_decoded_as_the_hf_backend_decodes(tiny_model, tmp_path):
    """The real worker returns ids; the parent decodes them with skip_special_tokens and strips."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    ids = tok(" a b", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    worker = tmp_path / "w.py"
    worker.write_text(f"import json, sys\njob = json.load(open(sys.argv[1]))\n"
                      f"json.dump([[{{'token_ids': {ids!r}, 'text': 'ignored'}}] for _ in job['prompts']], open(sys.argv[2], 'w'))\n")
    be = VLLMBackend(str(tiny_model), device="cpu", worker_module=str(worker))
    assert be.complete(["x", "y"], Sampling(n=2)) == [[tok.decode(ids, skip_special_tokens=True).strip()] * 2] * 2
    assert be._text({"text": " t "}) == "t" and be._text(" s ") == "s"


def test_cpu_workers_get_the_cpu_env_and_no_gpu_groups(monkeypatch, tiny_model, fake_worker, tmp_path):
    """device cpu: VLLM_CPU_KVCACHE_SPACE=1 unless set, CUDA_VISIBLE_DEVICES left alone, any
    data_parallel_size (no GPUs to count), and the configured interpreter runs the worker."""
    marker = tmp_path / "calls"
    wrapper = tmp_path / "python-wrapper"
    wrapper.write_text(f'#!/bin/sh\necho "$VLLM_CPU_KVCACHE_SPACE" >> {marker}\nexec {sys.executable} "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    monkeypatch.delenv("VLLM_CPU_KVCACHE_SPACE", raising=False)
    be = VLLMBackend(str(tiny_model), device="cpu", data_parallel_size=3, worker_module=fake_worker, python=str(wrapper))
    out = be.complete(["a", "b", "c"], Sampling(seed=5))
    assert [r[0].split("|")[1] for r in out] == ["0", "0", "0"]
    assert [r[0].split("|")[-1] for r in out] == ["5", "6", "7"]
    assert marker.read_text().split() == ["1", "1", "1"]
    assert vllm_backend.CPU_ENV == {"VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_ENABLE_V1_MULTIPROCESSING": "0"}
    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "4")
    be.complete(["a"], Sampling())
    assert marker.read_text().split()[-1] == "4"


def test_an_interpreter_without_vllm_fails_at_construction(monkeypatch, tiny_model, tmp_path):
    """vllm.python names another env: no check of this env's vllm; that interpreter must find vllm,
    else one clear line before any tokenizer loads; the check runs once per interpreter."""
    monkeypatch.setattr(vllm_backend, "_vllm_installed", lambda: False)
    monkeypatch.setattr(vllm_backend, "_CAN_IMPORT", {})
    no_vllm = tmp_path / "bin" / "python"
    no_vllm.parent.mkdir()
    no_vllm.write_text(f'#!/bin/sh\necho run >> {tmp_path / "runs"}\nexec {sys.executable} -S -I "$@"\n')
    no_vllm.chmod(0o755)
    for _ in range(2):
        with pytest.raises(RuntimeError) as err:
            VLLMBackend(str(tiny_model), device="cpu", python=str(no_vllm))
        msg = str(err.value)
        assert msg.startswith(f"backend vllm: {no_vllm} ") and "cannot import vllm" in msg
        assert "make vllm-env" in msg and "vllm.python" in msg  # how to make the env, and where to name it
    assert (tmp_path / "runs").read_text() == "run\n"  # cached
    with pytest.raises(RuntimeError) as err:
        VLLMBackend(str(tiny_model), python="/no/such/python")
    msg = str(err.value)
    assert msg.startswith("backend vllm: ") and "/no/such/python" in msg and "FileNotFoundError" in msg
    # This interpreter named explicitly: the in-process check, as when unset.
    with pytest.raises(RuntimeError) as err:
        VLLMBackend(str(tiny_model), python=sys.executable)
    assert "pip install 'selm-bench[vllm]'" in str(err.value)
    # An interpreter that has vllm passes (a stand-in: find_spec sees a `vllm` module on its path).
    fake_site = tmp_path / "site"
    (fake_site / "vllm").mkdir(parents=True)
    (fake_site / "vllm" / "__init__.py").write_text("")
    has_vllm = tmp_path / "has-vllm"
    has_vllm.write_text(f'#!/bin/sh\nPYTHONPATH={fake_site} exec {sys.executable} "$@"\n')
    has_vllm.chmod(0o755)
    be = VLLMBackend(str(tiny_model), device="cpu", python=str(has_vllm))
    assert be.python == str(has_vllm) and be.worker_module == WORKER


def test_worker_drives_vllm_as_the_job_says(monkeypatch, tmp_path, capsys):
    """The worker script (run with the vllm env's interpreter) against a recording stand-in `vllm`
    module: the engine arguments (no tokenizer: ids in, ids out), one SamplingParams per prompt with
    its seed, greedy forcing temperature 0 and top_p 1, use_tqdm=False, the CPU env, and the
    usage / failure contract of `main`."""
    import types

    seen = {}

    class LLM:
        def __init__(self, **kw):
            seen["llm"] = kw
            seen["kv"] = [os.environ.get(k) for k in ("VLLM_CPU_KVCACHE_SPACE", "VLLM_ENABLE_V1_MULTIPROCESSING")]

        def generate(self, inputs, params, use_tqdm=True):
            seen["inputs"], seen["params"], seen["use_tqdm"] = inputs, params, use_tqdm
            out = lambda ids: types.SimpleNamespace(token_ids=ids, text="")
            return [types.SimpleNamespace(outputs=[out([i, 5]), out((i, 6))]) for i in range(len(inputs))]

    monkeypatch.setitem(sys.modules, "vllm", types.SimpleNamespace(LLM=LLM, SamplingParams=lambda **kw: kw))
    for k in ("VLLM_CPU_KVCACHE_SPACE", "VLLM_ENABLE_V1_MULTIPROCESSING"):
        monkeypatch.setenv(k, "")  # restored (unset, if it was) after the test: run_job sets them on CPU
        monkeypatch.delenv(k)
    job = {"model": "/m", "prompts": ["p0", "p1"], "prompt_token_ids": [[1, 2], [3]], "stop_token_ids": [7, 9],
           "seeds": [3, 4], "device": "cuda",
           "engine": {"dtype": "bfloat16", "tensor_parallel_size": 2, "gpu_memory_utilization": 0.5,
                      "max_model_len": 512, "trust_remote_code": True, "seed": 3},
           "sampling": {"n": 2, "temperature": 0.7, "top_p": 0.9, "max_new_tokens": 9}}
    expected = [[{"token_ids": [0, 5], "text": ""}, {"token_ids": [0, 6], "text": ""}],
                [{"token_ids": [1, 5], "text": ""}, {"token_ids": [1, 6], "text": ""}]]
    assert vllm_worker.run_job(job) == expected
    assert seen["llm"] == {"model": "/m", "tensor_parallel_size": 2, "gpu_memory_utilization": 0.5, "dtype": "bfloat16",
                           "max_model_len": 512, "trust_remote_code": True, "seed": 3, "skip_tokenizer_init": True}
    assert seen["kv"] == [None, None] and seen["use_tqdm"] is False
    assert seen["params"] == [{"n": 2, "temperature": 0.7, "top_p": 0.9, "max_tokens": 9, "seed": seed,
                               "stop_token_ids": [7, 9], "detokenize": False} for seed in (3, 4)]
    assert seen["inputs"] == [{"prompt_token_ids": [1, 2]}, {"prompt_token_ids": [3]}]
    greedy = {**job, "device": "cpu", "stop_token_ids": [], "engine": {**job["engine"], "enforce_eager": True},
              "sampling": {**job["sampling"], "temperature": 0.00001}}
    del greedy["engine"]["trust_remote_code"]
    vllm_worker.run_job(greedy)
    assert seen["llm"]["trust_remote_code"] is False and seen["llm"]["enforce_eager"] is True
    assert seen["kv"] == ["1", "0"]  # on CPU: a 1 GiB KV cache, the engine core in the worker's process
    assert [(p["temperature"], p["top_p"], p["stop_token_ids"]) for p in seen["params"]] == [(0.0, 1.0, [])] * 2
    with pytest.raises(ValueError, match="1 seeds for 2 prompts"):
        vllm_worker.run_job({**job, "seeds": [1]})

    assert vllm_worker.main(["only-one"]) == 2
    usage = capsys.readouterr().err
    assert usage.count("\n") == 1 and usage.startswith("usage: ") and usage.endswith(" JOB.json OUT.json\n")
    (tmp_path / "job.json").write_text(json.dumps(job))
    assert vllm_worker.main([str(tmp_path / "job.json"), str(tmp_path / "out.json")]) == 0
    assert json.loads((tmp_path / "out.json").read_text()) == expected
    assert not (tmp_path / "out.json.tmp").exists()
    (tmp_path / "bad.json").write_text(json.dumps({**job, "engine": {}}))
    assert vllm_worker.main([str(tmp_path / "bad.json"), str(tmp_path / "bad-out.json")]) == 1
    assert (tmp_path / "bad-out.err").read_text() == "KeyError: 'tensor_parallel_size'\n"
    assert capsys.readouterr().err.endswith("KeyError: 'tensor_parallel_size'\n") and not (tmp_path / "bad-out.json").exists()


def test_the_worker_imports_nothing_of_this_project():
    """It runs in another env (.venv-vllm) where selm_bench is not importable: stdlib and vllm only."""
    import ast

    tree = ast.parse(open(WORKER).read())
    names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert names - set(sys.stdlib_module_names) == {"vllm"}
    assert 'if __name__ == "__main__":' in open(WORKER).read()


def test_the_worker_takes_its_folder_off_sys_path(tmp_path):
    """Run by path, trainers/ is sys.path[0]: its generation.py, train.py ... must not shadow modules
    of the vllm env. A real run: the worker's `import vllm` fails (no vllm here) with sys.path clean."""
    import subprocess

    here = os.path.dirname(WORKER)
    path = [here, here + "/", "/elsewhere", here]
    vllm_worker.drop_own_folder(path)
    assert path == ["/elsewhere", here]
    (tmp_path / "job.json").write_text(json.dumps({"model": "m", "prompt_token_ids": [[1]], "device": "cpu",
                                                    "engine": {}, "sampling": {}}))
    spy = tmp_path / "spy"
    (spy / "vllm").mkdir(parents=True)
    (spy / "vllm" / "__init__.py").write_text("import sys\nraise ImportError('path ' + repr(sys.path[0]))\n")
    env = {**os.environ, "PYTHONPATH": str(spy)}
    done = subprocess.run([sys.executable, WORKER, str(tmp_path / "job.json"), str(tmp_path / "out.json")], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert (tmp_path / "out.err").read_text() == f"ImportError: path {str(spy)!r}\n"


def test_worker_command_and_last_line(tmp_path):
    assert vllm_backend.worker_command("pkg.mod", tmp_path / "j", tmp_path / "o") == [
        sys.executable, "-m", "pkg.mod", str(tmp_path / "j"), str(tmp_path / "o")]
    assert vllm_backend.worker_command("/x/w.py", tmp_path / "j", tmp_path / "o") == [
        sys.executable, "/x/w.py", str(tmp_path / "j"), str(tmp_path / "o")]
    assert vllm_backend.worker_command(WORKER, tmp_path / "j", tmp_path / "o", "/env/bin/python") == [
        "/env/bin/python", WORKER, str(tmp_path / "j"), str(tmp_path / "o")]
    assert WORKER.endswith("trainers/vllm_worker.py")
    (tmp_path / "log").write_text("first\n  last one  \n\n")
    assert vllm_backend._last_line(tmp_path / "log") == "last one"
    assert vllm_backend._last_line(tmp_path / "none") == ""
    (tmp_path / "empty").write_text("\n")
    assert vllm_backend._last_line(tmp_path / "empty") == ""
    (tmp_path / "bad").write_bytes(b"first\n\xff bad bytes\n")
    assert vllm_backend._last_line(tmp_path / "bad") == "\ufffd bad bytes"  # undecodable bytes replaced, not an error


def test_hf_backend_batches_equal_one_prompt_at_a_time(tiny_model):
    """The hf backend's batched, left-padded, longest-first generation gives each prompt the
    reply transformers' own generate() gives it alone; sampling returns n replies per prompt,
    the same ones for the same seed."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from selm_bench.trainers.generation import HFBackend

    prompts = ["add 1 and 2", "reverse abc please now", "sort 3 1 2", "x"]
    be = HFBackend(str(tiny_model), batch_size=2)
    got = be.complete(prompts, Sampling(max_new_tokens=6))
    tok = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model).eval()
    for p, replies in zip(prompts, got):
        ids = tok(p, return_tensors="pt", add_special_tokens=False)
        with torch.no_grad():
            out = model.generate(**ids, max_new_tokens=6, do_sample=False, pad_token_id=tok.pad_token_id or tok.eos_token_id,
                                 eos_token_id=tok.eos_token_id)
        assert replies == [tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True).strip()]
    sampled = be.complete(prompts, Sampling(n=3, temperature=1.0, max_new_tokens=6, seed=7))
    assert [len(r) for r in sampled] == [3, 3, 3, 3]
    assert be.complete(prompts, Sampling(n=3, temperature=1.0, max_new_tokens=6, seed=7)) == sampled
    assert be.chat([[{"role": "user", "content": "add 1 and 2"}]], Sampling(max_new_tokens=6)) == be.complete(
        [render_prompt(be.tokenizer, [{"role": "user", "content": "add 1 and 2"}], str(tiny_model))], Sampling(max_new_tokens=6))


def test_merge_refuses_repeated_or_out_of_range_indices():
    for shards, index in [([[0], [0]], 0), ([[0], [2]], 2), ([[0], [-1]], -1)]:
        with pytest.raises(ValueError) as err:
            merge(shards, [["a"], ["b"]], 2)
        assert str(err.value).startswith(f"shard 1: index {index} ")
    with pytest.raises(ValueError) as err:
        merge([[0], []], [["a"], []], 2)
    assert numbers(err) == [1, 2]  # shards cover 1 of 2 prompts


# ---------------------------------------------------------------- worker processes, stood in for
class _FakeTok:
    eos_token_id = 7

    def __call__(self, text, add_special_tokens):
        assert add_special_tokens is False
        return {"input_ids": list(range(len(text)))}


def _vllm_tokenizer(monkeypatch):
    loaded = []

    class AutoTokenizer:
        @staticmethod
        def from_pretrained(path, **kw):
            loaded.append((path, kw))
            return _FakeTok()

    class GenerationConfig:
        @staticmethod
        def from_pretrained(path, **kw):
            raise OSError(f"{path} has no generation_config.json")  # as transformers says it

    fake_transformers(monkeypatch, AutoTokenizer=AutoTokenizer, GenerationConfig=GenerationConfig)
    return loaded


def test_vllm_backend_defaults_and_options_given_as_text(monkeypatch):
    from selm_bench.trainers import vllm_backend
    from selm_bench.trainers.vllm_backend import VLLMBackend

    loaded = _vllm_tokenizer(monkeypatch)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(vllm_backend, "_vllm_installed", lambda: True)
    be = VLLMBackend("org/m")
    assert loaded == [("org/m", {"trust_remote_code": False})]
    assert (be.worker_module, be.model_name, be.device, be.batch_size, be.data_parallel_size, be.python) == (
        vllm_backend.WORKER, "org/m", "cuda", 64, 1, sys.executable)
    assert Path(be.worker_module).name == "vllm_worker.py" and be.stop_ids == [7]
    assert be.engine == {"dtype": "auto", "tensor_parallel_size": 1, "gpu_memory_utilization": 0.9, "max_model_len": None,
                         "trust_remote_code": False, "enforce_eager": False}
    monkeypatch.setattr(vllm_backend, "_vllm_installed", lambda: False)
    be = VLLMBackend("m", worker_module=Path("/w.py"), max_model_len="300", tensor_parallel_size="1", trust_remote_code=1)
    assert be.worker_module == "/w.py"  # a worker of one's own needs no vllm here
    assert (be.engine["max_model_len"], be.engine["tensor_parallel_size"], be.engine["trust_remote_code"]) == (300, 1, True)


class _FakePopen:
    """Stands in for the worker process: `script[g]` is (polls while running, exit code, replies or None,
    .err text or None, log text); on exit it writes the out file (or the .err file) as a worker does."""

    script: dict = {}
    made: list = []

    def __init__(self, cmd, env, stdout, stderr, stdin, start_new_session):
        self.cmd, self.env = cmd, env
        self.kw = {"stderr": stderr, "stdin": stdin, "start_new_session": start_new_session}
        job = json.loads(Path(cmd[-2]).read_text())
        self.g = int(Path(cmd[-2]).stem.split("-")[1])
        self.job = job
        self.pid = 1000 + self.g
        self.running, self.rc, replies, err, log = _FakePopen.script[self.g]
        self.out = Path(cmd[-1])
        if log:
            stdout.write(log.encode())
            stdout.flush()
        self.replies, self.err = replies, err
        self.waits = []
        _FakePopen.made.append(self)

    def poll(self):
        if self.running is None:
            return None  # never ends by itself
        if self.running:
            self.running -= 1
            return None
        if self.replies is not None:
            self.out.write_text(json.dumps([self.replies(p) for p in self.job["prompts"]]))
        if self.err is not None:
            self.out.with_suffix(".err").write_text(self.err)
        return self.rc

    def wait(self, timeout=None):
        self.waits.append(timeout)
        if timeout is not None and self.g == 0:
            raise subprocess.TimeoutExpired(self.cmd, timeout)
        return -9


@pytest.fixture
def fake_workers(monkeypatch):
    from selm_bench.trainers import vllm_backend

    monkeypatch.setattr(_FakePopen, "made", [])
    monkeypatch.setattr(_FakePopen, "script", {})
    monkeypatch.setattr(vllm_backend.subprocess, "Popen", _FakePopen)
    sleeps, kills = [], []
    monkeypatch.setattr(vllm_backend.time, "sleep", lambda s: sleeps.append(s))
    monkeypatch.setattr(vllm_backend.os, "killpg", lambda pid, sig: kills.append((pid, sig)))
    _vllm_tokenizer(monkeypatch)
    return types.SimpleNamespace(script=_FakePopen.script, made=_FakePopen.made, sleeps=sleeps, kills=kills)


def test_one_worker_a_shard_each_on_its_gpu_group_with_its_prompts_and_seeds(monkeypatch, fake_workers):
    from selm_bench.trainers import vllm_backend
    from selm_bench.trainers.generation import Sampling
    from selm_bench.trainers.vllm_backend import VLLMBackend

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,4")
    monkeypatch.setenv("PYTHONPATH", "/extra")
    be = VLLMBackend("m", worker_module="w.py", data_parallel_size=2)
    fake_workers.script.update({0: (1, 0, lambda p: [f" {p}-0 ", f"{p}-1\n"], None, ""),
                                1: (0, 0, lambda p: [f"{p}-0", f"{p}-1"], None, "")})
    got = be.complete(["a", "b", "c"], Sampling(n=2, temperature=0.5))
    assert got == [["a-0", "a-1"], ["b-0", "b-1"], ["c-0", "c-1"]]
    w0, w1 = fake_workers.made
    for w, g, prompts in ((w0, 0, ["a", "b"]), (w1, 1, ["c"])):
        assert w.cmd[:2] == [sys.executable, "w.py"] and len(w.cmd) == 4
        assert (Path(w.cmd[2]).name, Path(w.cmd[3]).name) == (f"job-{g}.json", f"out-{g}.json")
        assert Path(w.cmd[2]).parent.name.startswith("selm-vllm-")
        # A worker file imports nothing of this project: PYTHONPATH as it was.
        assert (w.env["CUDA_VISIBLE_DEVICES"], w.env["PYTHONPATH"]) == (str(3 + g), "/extra")
        assert w.kw == {"stderr": subprocess.STDOUT, "stdin": subprocess.DEVNULL, "start_new_session": True}
        assert w.job["prompts"] == prompts and w.job["prompt_token_ids"] == [[0]] * len(prompts)
        assert (w.job["model"], w.job["stop_token_ids"]) == ("m", [7])
        assert w.job["seeds"] == [[0, 1], [2]][g]  # sampling.seed + the prompt's index in the call
    assert fake_workers.sleeps == [0.1]  # worker 0 was still running on the first round
    assert fake_workers.kills == []

    monkeypatch.delenv("PYTHONPATH")
    fake_workers.made.clear()
    fake_workers.script[0] = (0, 0, lambda p: ["r"], None, "")
    be.complete(["a"], Sampling())
    assert "PYTHONPATH" not in fake_workers.made[0].env
    assert len(fake_workers.made) == 1  # the empty second shard starts no worker

    # A worker module (-m) of this project's gets the repo on PYTHONPATH, without an empty entry.
    root = str(Path(vllm_backend.__file__).resolve().parent.parent)  # the folder holding trainers/
    fake_workers.made.clear()
    VLLMBackend("m", worker_module="pkg.worker").complete(["a"], Sampling())
    w = fake_workers.made[0]
    assert w.cmd[:3] == [sys.executable, "-m", "pkg.worker"] and w.env["PYTHONPATH"] == root


def test_a_worker_must_return_n_replies_except_one_greedy_reply_is_repeated(monkeypatch, fake_workers):
    from selm_bench.trainers.generation import Sampling
    from selm_bench.trainers.vllm_backend import VLLMBackend

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    be = VLLMBackend("m", worker_module="w.py")
    fake_workers.script[0] = (0, 0, lambda p: [f"  {p} "], None, "")
    assert be.complete(["a", "b"], Sampling(n=3)) == [["a", "a", "a"], ["b", "b", "b"]]  # greedy: one reply, repeated
    with pytest.raises(RuntimeError) as err:
        be.complete(["a", "b"], Sampling(n=3, temperature=1.0))  # sampled: one reply is too few
    assert str(err.value).startswith("vllm worker ") and numbers(err) == [1, 0, 3]  # 1 reply for prompt 0, 3 expected
    fake_workers.script[0] = (0, 0, lambda p: ["x", "y"], None, "")
    with pytest.raises(RuntimeError) as err:
        be.complete(["a"], Sampling(n=3))  # greedy, but two replies: not repeated
    assert str(err.value).startswith("vllm worker ") and numbers(err) == [2, 0, 3]


@pytest.mark.parametrize("err_text, log, said", [
    ("MemoryError: boom\n", "loading\nlast log line\n", "MemoryError: boom"),  # the worker's .err file first
    (None, "loading\nlast log line\n", "last log line"),  # else the log's last line
    (None, "", "no output"),
])
def test_a_failed_worker_is_named_with_what_it_said_and_stops_the_others(monkeypatch, fake_workers, err_text, log, said):
    from selm_bench.trainers.generation import Sampling
    from selm_bench.trainers.vllm_backend import VLLMBackend

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5,6")
    be = VLLMBackend("m", worker_module="w.py", data_parallel_size=2)
    fake_workers.script.update({0: (None, 0, None, None, ""), 1: (0, 3, None, err_text, log)})
    with pytest.raises(RuntimeError) as err:
        be.complete(["a", "b"], Sampling())
    assert worker_failure(err) == ("1", "CUDA_VISIBLE_DEVICES=6", "3", said)
    w0, w1 = fake_workers.made
    # worker 0 still running: SIGTERM to its group, 30 s to end, then SIGKILL and a plain wait
    assert fake_workers.kills == [(1000, 15), (1000, 9)]
    assert (w0.waits, w1.waits) == ([30, None], [])


def test_stopping_a_worker_that_already_exited_waits_for_it(monkeypatch, fake_workers):
    from selm_bench.trainers import vllm_backend
    from selm_bench.trainers.generation import Sampling
    from selm_bench.trainers.vllm_backend import VLLMBackend

    def gone(pid, sig):
        fake_workers.kills.append((pid, sig))
        raise ProcessLookupError

    monkeypatch.setattr(vllm_backend.os, "killpg", gone)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    be = VLLMBackend("m", worker_module="w.py", data_parallel_size=3)
    fake_workers.script.update({0: (0, 0, lambda p: ["ok"], None, ""), 1: (None, 0, None, None, ""),
                                2: (0, 1, None, "Boom\n", "")})
    with pytest.raises(RuntimeError) as err:
        be.complete(["a", "b", "c"], Sampling())
    assert worker_failure(err) == ("2", "CUDA_VISIBLE_DEVICES=2", "1", "Boom")
    assert fake_workers.kills == [(1001, 15)]  # the group is gone already: then it is waited for, 30 s
    assert fake_workers.made[1].waits == [30]
