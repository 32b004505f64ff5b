"""The vllm backend: sharding helpers, the worker subprocess path (with a fake worker), and
the real engine on a tiny model when vllm is installed (GPU-only optional extra)."""

import importlib.util
import json
import textwrap

import pytest

from selm_bench.harness import registry
from selm_bench.trainers import vllm_backend
from selm_bench.trainers.generation import Sampling, render_prompt
from selm_bench.trainers.vllm_backend import NOT_INSTALLED, VLLMBackend, gpu_groups, merge, shard

FAKE_WORKER = textwrap.dedent(
    """
    import json, os, sys
    job = json.load(open(sys.argv[1]))
    if os.environ.get("FAKE_VLLM_FAIL"):
        print("loading model ...", file=sys.stderr)
        print("ValueError: fake engine failure", file=sys.stderr)
        sys.exit(3)
    cvd = os.environ.get("CUDA_VISIBLE_DEVICES")
    s = job["sampling"]
    out = [[f"  echo:{p}|{cvd}|{k}|{len(ids)}|{s['seed']}  " for k in range(s["n"])]
           for p, ids in zip(job["prompts"], job["prompt_token_ids"])]
    with open(sys.argv[2] + ".tmp", "w") as f:
        json.dump(out, f)
    os.replace(sys.argv[2] + ".tmp", sys.argv[2])
    """
)


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
    with pytest.raises(ValueError):
        shard([1, 2], 0)


def test_merge_wrong_count():
    with pytest.raises(ValueError, match="shard 1 returned 1 results for 2 prompts"):
        merge([[0, 1, 2], [3, 4]], [["a", "b", "c"], ["d"]], 5)
    with pytest.raises(ValueError):
        merge([[0], [1]], [["a"]], 2)


def test_gpu_groups():
    assert gpu_groups(2, 2, "4,5,6,7") == ["4,5", "6,7"]
    assert gpu_groups(1, 1, "3") == ["3"]
    assert gpu_groups(2, 1, "1, 3 ,5") == ["1", "3"]  # spare GPUs are left unused
    assert gpu_groups(2, 2, None) == ["0,1", "2,3"]
    assert gpu_groups(3, 1, None) == ["0", "1", "2"]
    with pytest.raises(ValueError, match="needs 4 GPUs"):
        gpu_groups(2, 2, "0,1,2")
    with pytest.raises(ValueError):
        gpu_groups(1, 1, "")


def test_registered():
    # Registered at import (without vllm); read the table directly so this does not import every plug-in.
    entry = registry._ENTRIES["backend"]["vllm"]
    assert entry.obj is VLLMBackend and "vLLM" in entry.help


def test_not_installed_error(monkeypatch, tiny_model):
    monkeypatch.setattr(vllm_backend, "_vllm_installed", lambda: False)
    with pytest.raises(RuntimeError) as err:
        VLLMBackend(str(tiny_model))
    assert str(err.value) == NOT_INSTALLED
    assert NOT_INSTALLED == "backend vllm needs the optional extra: pip install 'selm-bench[vllm]' (vllm is not installed)"


def test_fake_worker_end_to_end(monkeypatch, tiny_model, fake_worker):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5,6,7")
    be = VLLMBackend(str(tiny_model), tensor_parallel_size=2, data_parallel_size=2, worker_module=fake_worker)
    convs = [[{"role": "user", "content": f"question {i}"}] for i in range(5)]
    out = be.chat(convs, Sampling(n=2, temperature=0.7, seed=11))
    assert len(out) == 5
    expected_groups = ["4,5"] * 3 + ["6,7"] * 2  # shards [0,1,2] and [3,4]
    for i, (conv, replies) in enumerate(zip(convs, out)):
        prompt = render_prompt(be.tokenizer, conv, str(tiny_model))  # the training chat template
        n_ids = len(be.tokenizer(prompt, add_special_tokens=False)["input_ids"])
        assert replies == [f"echo:{prompt}|{expected_groups[i]}|{k}|{n_ids}|11" for k in range(2)]

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
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.endswith("exited with 3: ValueError: fake engine failure")


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
    """Everything the real vLLM worker reads from its job file: model, engine options, sampling
    (greedy sends n=1 and repeats), the tokenizer's eos id and one prompt's token ids."""
    worker = tmp_path / "echo_job_worker.py"
    worker.write_text(textwrap.dedent("""
        import json, sys
        job = json.load(open(sys.argv[1]))
        seen = {k: job[k] for k in ("model", "engine", "sampling", "eos_token_id")}
        out = [[json.dumps({**seen, "prompt": p, "n_ids": len(ids)})] * job["sampling"]["n"]
               for p, ids in zip(job["prompts"], job["prompt_token_ids"])]
        json.dump(out, open(sys.argv[2], "w"))
        """))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    be = VLLMBackend(str(tiny_model), dtype="bfloat16", gpu_memory_utilization=0.5, max_model_len=512,
                     worker_module=str(worker))
    (reply, again), = be.complete(["hello"], Sampling(n=2, temperature=0.0, max_new_tokens=9, seed=3))
    assert reply == again
    job = json.loads(reply)
    assert job == {"model": str(tiny_model), "prompt": "hello", "n_ids": len(be.tokenizer("hello", add_special_tokens=False)["input_ids"]),
                   "engine": {"dtype": "bfloat16", "tensor_parallel_size": 1, "gpu_memory_utilization": 0.5,
                              "max_model_len": 512, "trust_remote_code": False},
                   "sampling": {"n": 1, "temperature": 0.0, "top_p": 1.0, "max_new_tokens": 9, "seed": 3},
                   "eos_token_id": be.tokenizer.eos_token_id}
    assert be.tokenizer.eos_token_id is not None


def test_worker_drives_vllm_as_the_job_says(monkeypatch, tmp_path, capsys):
    """The worker's side (GPU-only in real use) against a recording stand-in `vllm` module: the
    engine and sampling arguments, token-id inputs, greedy forcing temperature 0 and top_p 1,
    stripped texts, and the usage / failure contract of `main`."""
    import sys
    import types

    seen = {}

    class LLM:
        def __init__(self, **kw):
            seen["llm"] = kw

        def generate(self, inputs, params):
            seen["inputs"], seen["params"] = inputs, params
            out = lambda t: types.SimpleNamespace(text=t)
            return [types.SimpleNamespace(outputs=[out(f" r{i}a "), out(f"r{i}b\n")]) for i in range(len(inputs))]

    monkeypatch.setitem(sys.modules, "vllm", types.SimpleNamespace(LLM=LLM, SamplingParams=lambda **kw: kw))
    job = {"model": "/m", "prompts": ["p0", "p1"], "prompt_token_ids": [[1, 2], [3]], "eos_token_id": 7,
           "engine": {"dtype": "bfloat16", "tensor_parallel_size": 2, "gpu_memory_utilization": 0.5,
                      "max_model_len": 512, "trust_remote_code": True},
           "sampling": {"n": 2, "temperature": 0.7, "top_p": 0.9, "max_new_tokens": 9, "seed": 3}}
    assert vllm_backend.run_job(job) == [["r0a", "r0b"], ["r1a", "r1b"]]
    assert seen["llm"] == {"model": "/m", "tensor_parallel_size": 2, "gpu_memory_utilization": 0.5, "dtype": "bfloat16",
                           "max_model_len": 512, "trust_remote_code": True, "seed": 3}
    assert seen["params"] == {"n": 2, "temperature": 0.7, "top_p": 0.9, "max_tokens": 9, "seed": 3,
                              "skip_special_tokens": True, "stop_token_ids": [7]}
    assert seen["inputs"] == [{"prompt_token_ids": [1, 2]}, {"prompt_token_ids": [3]}]
    greedy = {**job, "prompt_token_ids": None, "eos_token_id": None, "engine": {**job["engine"], "trust_remote_code": None},
              "sampling": {**job["sampling"], "temperature": 0.00001}}
    del greedy["engine"]["trust_remote_code"]
    vllm_backend.run_job(greedy)
    assert seen["inputs"] == ["p0", "p1"] and seen["llm"]["trust_remote_code"] is False
    assert (seen["params"]["temperature"], seen["params"]["top_p"], seen["params"]["stop_token_ids"]) == (0.0, 1.0, None)

    assert vllm_backend.main(["only-one"]) == 2
    assert capsys.readouterr().err == "usage: python -m selm_bench.trainers.vllm_backend JOB.json OUT.json\n"
    (tmp_path / "job.json").write_text(json.dumps(job))
    assert vllm_backend.main([str(tmp_path / "job.json"), str(tmp_path / "out.json")]) == 0
    assert json.loads((tmp_path / "out.json").read_text()) == [["r0a", "r0b"], ["r1a", "r1b"]]
    assert not (tmp_path / "out.json.tmp").exists()
    (tmp_path / "bad.json").write_text(json.dumps({**job, "engine": {}}))
    assert vllm_backend.main([str(tmp_path / "bad.json"), str(tmp_path / "bad-out.json")]) == 1
    assert (tmp_path / "bad-out.err").read_text() == "KeyError: 'tensor_parallel_size'\n"
    assert capsys.readouterr().err.endswith("KeyError: 'tensor_parallel_size'\n") and not (tmp_path / "bad-out.json").exists()


def test_worker_command_and_last_line(tmp_path):
    import sys

    assert vllm_backend.worker_command("pkg.mod", tmp_path / "j", tmp_path / "o") == [
        sys.executable, "-m", "pkg.mod", str(tmp_path / "j"), str(tmp_path / "o")]
    assert vllm_backend.worker_command("/x/w.py", tmp_path / "j", tmp_path / "o") == [
        sys.executable, "/x/w.py", str(tmp_path / "j"), str(tmp_path / "o")]
    (tmp_path / "log").write_text("first\n  last one  \n\n")
    assert vllm_backend._last_line(tmp_path / "log") == "last one"
    assert vllm_backend._last_line(tmp_path / "none") == ""
    (tmp_path / "empty").write_text("\n")
    assert vllm_backend._last_line(tmp_path / "empty") == ""


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
    for shards, line in [([[0], [0]], "shard 1: index 0 is out of range or repeated"),
                         ([[0], [2]], "shard 1: index 2 is out of range or repeated"),
                         ([[0], [-1]], "shard 1: index -1 is out of range or repeated")]:
        with pytest.raises(ValueError) as err:
            merge(shards, [["a"], ["b"]], 2)
        assert str(err.value) == line
    with pytest.raises(ValueError) as err:
        merge([[0], []], [["a"], []], 2)
    assert str(err.value) == "shards cover 1 of 2 prompts"
