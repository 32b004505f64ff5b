"""Whole-output tests of the trainers' pure helpers and adapters (rankers, generation backends, the
online stages, the training glue), with small stand-ins instead of models, judges or worker processes.
Every expected value is written by hand from the inputs and the documented behaviour."""

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch

from selm_bench.harness.world import write_jsonl


# ================================================================ rankers
def test_ranker_parameter_is_everything_after_the_first_colon():
    from selm_bench.trainers.rankers import _parameter

    assert _parameter("judge:gpt-4o", "judge") == "gpt-4o"
    assert _parameter("reward-model:org/rm:v2", "reward-model") == "org/rm:v2"  # only the first colon splits
    for name in ("judge", "judge:"):
        with pytest.raises(ValueError) as err:
            _parameter(name, "judge")
        assert str(err.value) == "ranker judge needs a model: judge:<hub id or local path>"


def test_pairwise_messages_whole_text():
    from selm_bench.trainers.rankers import pairwise_messages

    assert pairwise_messages("Add 2 and 3", "5", "6") == [
        {"role": "system", "content":
            "You compare two assistant responses to the same user request. Judge which response is more "
            "helpful, correct and clear; ignore its length and the order in which the responses appear. "
            "Finish with exactly one verdict: [[A]] if A is better, [[B]] if B is better, [[C]] for a tie."},
        {"role": "user", "content":
            "[User request]\nAdd 2 and 3\n\n[Response A]\n5\n[End of response A]\n\n[Response B]\n6\n[End of response B]"},
    ]


@pytest.mark.parametrize("text, share", [
    (None, None),
    ("Verdict: [[A]]", 1.0),
    ("[[B]] is better", 0.0),
    ("a tie: [[C]]", 0.5),
    ("[[A]] ... on reflection [[A]]", 1.0),  # the same verdict twice is still one verdict
    ("[[A]] or maybe [[B]]", None),  # two different verdicts: none
    ("A is better", None),
    ("[A]", None),
    ("", None),
])
def test_parse_verdict_each_case(text, share):
    from selm_bench.trainers.rankers import parse_verdict

    assert parse_verdict(text) == share


class _FakeJudge:
    """Stands in for evals.openai_judge.OpenAIJudge: records its construction and requests, answers
    from a script (one verdict per request, in order)."""

    made: list = []
    script: list = []

    def __init__(self, **kw):
        _FakeJudge.made.append(kw)
        self.checked = 0
        self.asked = []

    def check(self):
        self.checked += 1

    def chat_many(self, requests, **kw):
        self.asked.append((requests, kw))
        return list(_FakeJudge.script[:len(requests)])

    def accounting(self):
        return {"calls": 11, "cached": 0}


@pytest.fixture
def fake_judge(monkeypatch):
    from selm_bench.evals import openai_judge

    monkeypatch.setattr(_FakeJudge, "made", [])
    monkeypatch.setattr(_FakeJudge, "script", [])
    monkeypatch.setattr(openai_judge, "OpenAIJudge", _FakeJudge)
    return _FakeJudge


def test_judge_ranker_builds_its_judge_from_the_name_and_options(fake_judge):
    from selm_bench.trainers.rankers import JudgeRanker

    r = JudgeRanker(name="judge:gpt-x")
    assert fake_judge.made == [{"spec": "openai:gpt-x", "cache_dir": None, "base_url": None, "concurrency": 8,
                                "max_retries": 5, "timeout": 60}]
    assert r.judge.checked == 1 and r.errors == []
    JudgeRanker(name="judge:m:1", cache_dir="/c", base_url="http://h/v1", concurrency=2, max_retries=1, timeout=5.5,
                device="cuda", batch_size=3)
    assert fake_judge.made[1] == {"spec": "openai:m:1", "cache_dir": "/c", "base_url": "http://h/v1", "concurrency": 2,
                                  "max_retries": 1, "timeout": 5.5}
    assert r.accounting() == {"calls": 11, "cached": 0}
    with pytest.raises(ValueError) as err:
        JudgeRanker(name="judge")
    assert str(err.value) == "ranker judge needs a model: judge:<hub id or local path>"
    assert len(fake_judge.made) == 2  # no judge built for a nameless ranker


def test_judge_ranker_pairs_order_wins_and_failures(fake_judge):
    """Every pair once, in the order i < j; the pair's A/B slots follow sha256(f"{c_i}\\0{c_j}")[0] odd = swap:
    first bytes (hashlib, by hand): x,y 206 keep; x,z 147 swap; x,w 27 swap; y,z 112 keep; y,w 69 swap;
    z,w 9 swap; y,x 63 swap; u,v 100 keep."""
    from selm_bench.trainers.rankers import JudgeRanker, pairwise_messages

    prompts = [{"prompt": "p0"}, {"prompt": "p1"}, {"prompt": "p2"}, {"prompt": "p3"}]
    cands = [["x", "y", "z", "w"], ["x", "y", "z"], ["u", "v"], ["y", "x"]]
    fake_judge.script = ["[[A]]", "[[A]]", "[[C]]", "[[B]]", "[[A]]", "[[A]]",  # p0: 6 pairs
                         None, "[[A]]", "[[B]]",  # p1: its first call failed; the rest are skipped
                         "both are fine",  # p2: no verdict
                         "[[A]]"]  # p3
    r = JudgeRanker(name="judge:m")
    scores = r.score(prompts, cands)
    # p0: (A=x,B=y) A -> x+1; (A=z,B=x) A -> z+1; (A=w,B=x) C -> w+.5, x+.5; (A=y,B=z) B -> z+1;
    #     (A=w,B=y) A -> w+1; (A=w,B=z) A -> w+1.  => x 1.5, y 0, z 2, w 2.5
    # p3: (A=x,B=y) A -> x (index 1) wins
    assert scores == [[1.5, 0.0, 2.0, 2.5], None, None, [0.0, 1.0]]
    assert r.errors == ["prompt 1: call failed", "prompt 2: no single [[A]]/[[B]]/[[C]] verdict"]
    (requests, kw), = r.judge.asked
    assert kw == {"temperature": 0.0, "max_tokens": 1024}
    slots = [("p0", "x", "y"), ("p0", "z", "x"), ("p0", "w", "x"), ("p0", "y", "z"), ("p0", "w", "y"), ("p0", "w", "z"),
             ("p1", "x", "y"), ("p1", "z", "x"), ("p1", "y", "z"), ("p2", "u", "v"), ("p3", "x", "y")]
    assert requests == [pairwise_messages(*s) for s in slots]


def test_oracle_ranker_scores_with_the_graded_verifier():
    from selm_bench.trainers.rankers import OracleRanker

    r = OracleRanker(name="oracle", device="cuda", batch_size=2)
    prompts = [{"category": "add", "answer": "42", "prompt": "q"}, {"category": "reverse", "answer": "c b a", "prompt": "r"}]
    # "41" vs "42": one token, so characters: 1 of 2 match, ratio 2*1/4 = 0.5, half of it 0.25
    assert r.score(prompts, [["42", "41", ""], ["C B A."]]) == [[1.0, 0.25, 0.0], [1.0]]


class _FakeRMTokenizer:
    def __init__(self, pad_token=None):
        self.pad_token = pad_token
        self.eos_token = "</s>"
        self.padding_side = "left"
        self.calls = []

    @property
    def pad_token_id(self):
        return {"</s>": 2, "<pad>": 0}[self.pad_token]

    def apply_chat_template(self, conv, tokenize):
        assert tokenize is False
        return "|".join(f"{m['role']}:{m['content']}" for m in conv)

    def __call__(self, texts, **kw):
        self.calls.append((list(texts), kw))
        tok = self

        class Enc(dict):
            def to(self, device):
                tok.calls[-1] = (*tok.calls[-1], device)
                return self

        # one "token" per text: its length, so the stand-in model's reward is the text's length
        return Enc(input_ids=torch.tensor([[float(len(t))] for t in texts]))


class _FakeRM:
    def __init__(self, num_labels=1):
        self.config = types.SimpleNamespace(pad_token_id=None, num_labels=num_labels)
        self.moved, self.evaluated, self.grad = None, False, []

    def to(self, device):
        self.moved = device
        return self

    def eval(self):
        self.evaluated = True
        return self

    def __call__(self, input_ids):
        self.grad.append(torch.is_grad_enabled())
        return types.SimpleNamespace(logits=torch.cat([input_ids, -input_ids], dim=1))


def _fake_transformers(monkeypatch, **attrs):
    """A stand-in `transformers` module holding only `attrs` (the adapters import from it inside __init__)."""
    monkeypatch.setitem(sys.modules, "transformers", types.SimpleNamespace(**attrs))


def _fake_rm_stack(monkeypatch, tokenizer, model):
    loaded = {}

    class AutoTokenizer:
        @staticmethod
        def from_pretrained(path, **kw):
            loaded["tokenizer"] = (path, kw)
            return tokenizer

    class AutoModelForSequenceClassification:
        @staticmethod
        def from_pretrained(path, **kw):
            loaded["model"] = (path, kw)
            return model

    _fake_transformers(monkeypatch, AutoTokenizer=AutoTokenizer,
                       AutoModelForSequenceClassification=AutoModelForSequenceClassification)
    return loaded


def test_reward_model_ranker_with_a_stand_in_model(monkeypatch):
    from selm_bench.trainers.rankers import RewardModelRanker

    tok, model = _FakeRMTokenizer(), _FakeRM()
    loaded = _fake_rm_stack(monkeypatch, tok, model)
    r = RewardModelRanker(name="reward-model:org/rm:v1", device="cuda:1", batch_size=2, trust_remote_code=True)
    assert loaded == {"tokenizer": ("org/rm:v1", {"trust_remote_code": True}),
                      "model": ("org/rm:v1", {"trust_remote_code": True})}
    assert (tok.padding_side, tok.pad_token, model.config.pad_token_id) == ("right", "</s>", 2)
    assert (model.moved, model.evaluated) == ("cuda:1", True)
    assert r.texts("hi", "yo") == "user:hi|assistant:yo"
    scores = r.score([{"prompt": "ab"}, {"prompt": "c"}], [["1", "22", "333"], ["4444", "55555"]])
    # reward = len("user:" + prompt + "|assistant:" + candidate) = 16 + len(prompt) + len(candidate)
    assert scores == [[19.0, 20.0, 21.0], [21.0, 22.0]]
    texts = ["user:ab|assistant:1", "user:ab|assistant:22", "user:ab|assistant:333", "user:c|assistant:4444",
             "user:c|assistant:55555"]
    kw = {"return_tensors": "pt", "padding": True, "add_special_tokens": False}
    assert tok.calls == [(texts[:2], kw, "cuda:1"), (texts[2:4], kw, "cuda:1"), (texts[4:], kw, "cuda:1")]
    assert model.grad == [False, False, False]  # scored under no_grad


def test_reward_model_ranker_defaults_keep_a_set_pad_token_and_batch_by_16(monkeypatch):
    from selm_bench.trainers.rankers import RewardModelRanker

    tok, model = _FakeRMTokenizer(pad_token="<pad>"), _FakeRM()
    model.config.pad_token_id = 5
    loaded = _fake_rm_stack(monkeypatch, tok, model)
    r = RewardModelRanker(name="reward-model:rm")
    assert loaded["model"] == ("rm", {"trust_remote_code": False}) and model.moved == "cpu"
    assert (tok.pad_token, model.config.pad_token_id) == ("<pad>", 5)
    r.score([{"prompt": "p"}], [[str(i) for i in range(17)]])
    assert [len(texts) for texts, *_ in tok.calls] == [16, 1]


def test_reward_model_ranker_refuses_a_model_with_several_outputs(monkeypatch):
    from selm_bench.trainers.rankers import RewardModelRanker

    _fake_rm_stack(monkeypatch, _FakeRMTokenizer(), _FakeRM())
    with pytest.raises(ValueError) as err:
        RewardModelRanker(name="reward-model")
    assert str(err.value) == "ranker reward-model needs a model: reward-model:<hub id or local path>"
    _fake_rm_stack(monkeypatch, _FakeRMTokenizer(), _FakeRM(num_labels=2))
    with pytest.raises(ValueError) as err:
        RewardModelRanker(name="reward-model:/rm")
    assert str(err.value) == "reward-model:/rm: expected one output (a scalar reward), has 2"


# ================================================================ generation
def test_sampling_defaults_and_the_greedy_threshold():
    import dataclasses

    from selm_bench.trainers.generation import Sampling

    assert dataclasses.asdict(Sampling()) == {"n": 1, "temperature": 0.0, "top_p": 1.0, "max_new_tokens": 64, "seed": 0}
    # below 1e-4 is greedy (FastChat's convention); 1e-4 itself samples
    assert [Sampling(temperature=t).greedy for t in (0.0, 9e-5, 1e-4, 0.5, 1.0)] == [True, True, False, False, False]


class _FakeLMTokenizer:
    """Each text is one token: its index in `vocab`; token k decodes to a reply naming its prompt and sample."""

    def __init__(self, vocab, chat_template="{{ messages }}"):
        self.vocab = vocab
        self.chat_template = chat_template
        self.pad_token, self.eos_token = None, "</s>"
        self.padding_side = "right"
        self.calls, self.templated = [], []

    @property
    def pad_token_id(self):
        return 2 if self.pad_token == "</s>" else 9

    eos_token_id = 2
    bos_token_id = None  # like the tiny world's: no BOS to add

    def apply_chat_template(self, messages, **kw):
        self.templated.append(kw)
        return "<" + messages[-1]["content"] + ">"

    def __call__(self, text, **kw):
        self.calls.append((text, kw))
        return {"input_ids": [self.vocab.index(text)]}

    def pad(self, enc, return_tensors):
        class Enc(dict):
            def to(self, device):
                self.device = device
                return self

        assert return_tensors == "pt"
        return Enc(input_ids=torch.tensor(enc["input_ids"]))

    def batch_decode(self, ids, skip_special_tokens):
        assert skip_special_tokens is True
        return [f"  {self.vocab[int(row[0]) // 10]}#{int(row[0]) % 10}\n" for row in ids]


class _FakeLM:
    generation_config = None

    def __init__(self):
        self.calls, self.moved, self.evaluated = [], None, False

    def to(self, device):
        self.moved = device
        return self

    def eval(self):
        self.evaluated = True
        return self

    def generate(self, input_ids, **kw):
        self.calls.append({**kw, "grad": torch.is_grad_enabled(), "rows": input_ids[:, 0].tolist()})
        # a prompt's n samples come as n equal rows: [prompt token, new token prompt*10 + its sample index]
        rows = input_ids[:, 0].tolist()
        return torch.tensor([[k, k * 10 + sum(1 for r in rows[:j] if r == k)] for j, k in enumerate(rows)])


def _hf_backend(monkeypatch, tok, model, **kw):
    from selm_bench.trainers import generation

    loaded = {}

    class AutoTokenizer:
        @staticmethod
        def from_pretrained(path, **k):
            loaded["tokenizer"] = (path, k)
            return tok

    class AutoModelForCausalLM:
        @staticmethod
        def from_pretrained(path, **k):
            loaded["model"] = (path, k)
            return model

    _fake_transformers(monkeypatch, AutoTokenizer=AutoTokenizer, AutoModelForCausalLM=AutoModelForCausalLM,
                       LogitsProcessorList=list)
    bars = []

    class Bar:
        def advance(self, k):
            bars[-1][2].append(k)

    class Progress:
        def __init__(self, desc, total):
            bars.append((desc, total, []))

        def __enter__(self):
            return Bar()

        def __exit__(self, *a):
            return False

    monkeypatch.setattr(generation, "progress", Progress)
    return generation.HFBackend(Path("/models/m"), **kw), loaded, bars


def test_hf_backend_loads_pads_left_and_batches_longest_first(monkeypatch):
    from selm_bench.trainers.generation import Sampling

    prompts = ["bb", "a", "ccc"]
    tok, model = _FakeLMTokenizer(prompts), _FakeLM()
    be, loaded, bars = _hf_backend(monkeypatch, tok, model, batch_size=4, dtype="bfloat16", device="meta")
    assert loaded == {"tokenizer": (Path("/models/m"), {"trust_remote_code": False}),
                      "model": (Path("/models/m"), {"dtype": torch.bfloat16, "trust_remote_code": False})}
    assert (be.model_name, tok.padding_side, tok.pad_token, model.moved, model.evaluated) == (
        "/models/m", "left", "</s>", "meta", True)
    assert (be.device, be.batch_size) == ("meta", 4)

    # sampled, n=2: 4 // 2 = 2 prompts a batch, longest first: ["ccc", "bb"], then ["a"]
    got = be.complete(prompts, Sampling(n=2, temperature=0.7, top_p=0.9, max_new_tokens=7, seed=5), desc="draw")
    assert got == [["bb#0", "bb#1"], ["a#0", "a#1"], ["ccc#0", "ccc#1"]]
    # sampling is greedy decoding over SeededSampling's perturbed logits: one generator per reply
    sampled = {"max_new_tokens": 7, "pad_token_id": 2, "eos_token_id": [2], "do_sample": False, "grad": False}
    procs = [c.pop("logits_processor") for c in model.calls]
    assert model.calls == [{**sampled, "rows": [2, 2, 0, 0]}, {**sampled, "rows": [1, 1]}]
    assert [(type(p).__name__, p.temperature, p.top_p, len(p.generators)) for [p] in procs] == [
        ("SeededSampling", 0.7, 0.9, 4), ("SeededSampling", 0.7, 0.9, 2)]
    kw = {"add_special_tokens": False}
    assert tok.calls == [("ccc", kw), ("bb", kw), ("a", kw)]
    assert bars == [("draw", 3, [2, 1])]

    # greedy, n=1: all 4 fit one batch; default desc
    model.calls.clear()
    assert be.complete(prompts, Sampling(max_new_tokens=3, seed=1)) == [["bb#0"], ["a#0"], ["ccc#0"]]
    assert model.calls == [{"max_new_tokens": 3, "pad_token_id": 2, "eos_token_id": [2],
                            "do_sample": False, "grad": False, "rows": [2, 0, 1]}]  # greedy: no processor
    assert bars[-1] == ("generate", 3, [3])

    # n=3: 4 // 3 = 1 prompt a batch
    model.calls.clear()
    got = be.complete(prompts, Sampling(n=3, temperature=1.0))
    assert got == [["bb#0", "bb#1", "bb#2"], ["a#0", "a#1", "a#2"], ["ccc#0", "ccc#1", "ccc#2"]]
    assert [c["rows"] for c in model.calls] == [[2, 2, 2], [0, 0, 0], [1, 1, 1]]


def test_hf_backend_chat_renders_with_the_chat_template(monkeypatch):
    from selm_bench.trainers.generation import Sampling

    prompts = ["<q1>", "<q2>"]
    tok = _FakeLMTokenizer(prompts)
    tok.pad_token = "<pad>"
    be, loaded, bars = _hf_backend(monkeypatch, tok, _FakeLM())
    assert loaded["model"][1] == {"dtype": "auto", "trust_remote_code": False}
    assert (tok.pad_token, be.device, be.batch_size) == ("<pad>", "cpu", 64)
    convs = [[{"role": "user", "content": "q1"}], [{"role": "user", "content": "q2"}]]
    assert be.chat(convs, Sampling(), desc="y_ref") == [["<q1>#0"], ["<q2>#0"]]
    assert tok.templated == [{"tokenize": False, "add_generation_prompt": True}] * 2
    assert bars == [("y_ref", 2, [2])]
    assert be.chat(convs, Sampling()) == [["<q1>#0"], ["<q2>#0"]] and bars[-1][0] == "generate"


def test_render_prompt_uses_the_tokenizers_own_template():
    from selm_bench.trainers.generation import render_prompt

    tok = _FakeLMTokenizer([])
    assert render_prompt(tok, [{"role": "system", "content": "s"}, {"role": "user", "content": "hi"}], "vicuna") == "<hi>"
    assert tok.templated == [{"tokenize": False, "add_generation_prompt": True}]


# ================================================================ vllm backend (no worker processes)
def test_vllm_helpers_whole_error_messages(tmp_path):
    from selm_bench.trainers.vllm_backend import _last_line, gpu_groups, merge, shard

    with pytest.raises(ValueError) as err:
        shard([1], 0)
    assert str(err.value) == "need at least one shard, got 0"
    assert shard([1, 2], 1) == [[0, 1]]
    with pytest.raises(ValueError) as err:
        merge([[0], [1]], [["a"]], 2)
    assert str(err.value) == "1 shard results for 2 shards"
    with pytest.raises(ValueError) as err:
        merge([[0, 1], [2]], [["a", "b"], []], 3)
    assert str(err.value) == "shard 1 returned 0 results for 1 prompts"
    for d, tp in ((0, 1), (1, 0)):
        with pytest.raises(ValueError) as err:
            gpu_groups(d, tp, None)
        assert str(err.value) == f"data_parallel_size and tensor_parallel_size must be >= 1 (got {d}, {tp})"
    with pytest.raises(ValueError) as err:
        gpu_groups(2, 2, "0,1,2")
    assert str(err.value) == "data_parallel_size=2 x tensor_parallel_size=2 needs 4 GPUs, but CUDA_VISIBLE_DEVICES='0,1,2' lists 3"
    assert gpu_groups(1, 2, "5,,6,") == ["5,6"]  # empty entries are not GPUs
    (tmp_path / "log").write_bytes(b"first\n\xff bad bytes\n")
    assert _last_line(tmp_path / "log") == "\ufffd bad bytes"  # undecodable bytes replaced, not an error


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

    _fake_transformers(monkeypatch, AutoTokenizer=AutoTokenizer, GenerationConfig=GenerationConfig)
    return loaded


def test_vllm_backend_defaults(monkeypatch):
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


def test_vllm_complete_launches_one_worker_per_shard(monkeypatch, fake_workers):
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


def test_vllm_complete_reply_counts(monkeypatch, fake_workers):
    from selm_bench.trainers.generation import Sampling
    from selm_bench.trainers.vllm_backend import VLLMBackend

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    be = VLLMBackend("m", worker_module="w.py")
    fake_workers.script[0] = (0, 0, lambda p: [f"  {p} "], None, "")
    assert be.complete(["a", "b"], Sampling(n=3)) == [["a", "a", "a"], ["b", "b", "b"]]  # greedy: one reply, repeated
    with pytest.raises(RuntimeError) as err:
        be.complete(["a", "b"], Sampling(n=3, temperature=1.0))  # sampled: one reply is too few
    assert str(err.value) == "vllm worker returned 1 replies for prompt 0, expected 3"
    fake_workers.script[0] = (0, 0, lambda p: ["x", "y"], None, "")
    with pytest.raises(RuntimeError) as err:
        be.complete(["a"], Sampling(n=3))  # greedy, but two replies: not repeated
    assert str(err.value) == "vllm worker returned 2 replies for prompt 0, expected 3"


@pytest.mark.parametrize("err_text, log, said", [
    ("MemoryError: boom\n", "loading\nlast log line\n", "MemoryError: boom"),  # the worker's .err file first
    (None, "loading\nlast log line\n", "last log line"),  # else the log's last line
    (None, "", "no output"),
])
def test_vllm_failed_worker_stops_the_others(monkeypatch, fake_workers, err_text, log, said):
    from selm_bench.trainers.generation import Sampling
    from selm_bench.trainers.vllm_backend import VLLMBackend

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5,6")
    be = VLLMBackend("m", worker_module="w.py", data_parallel_size=2)
    fake_workers.script.update({0: (None, 0, None, None, ""), 1: (0, 3, None, err_text, log)})
    with pytest.raises(RuntimeError) as err:
        be.complete(["a", "b"], Sampling())
    assert str(err.value) == f"vllm worker 1 (CUDA_VISIBLE_DEVICES=6) exited with 3: {said}"
    w0, w1 = fake_workers.made
    # worker 0 still running: SIGTERM to its group, 30 s to end, then SIGKILL and a plain wait
    assert fake_workers.kills == [(1000, 15), (1000, 9)]
    assert (w0.waits, w1.waits) == ([30, None], [])


def test_vllm_stopping_a_worker_that_already_exited(monkeypatch, fake_workers):
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
    with pytest.raises(RuntimeError, match=r"^vllm worker 2 \(CUDA_VISIBLE_DEVICES=2\) exited with 1: Boom$"):
        be.complete(["a", "b", "c"], Sampling())
    assert fake_workers.kills == [(1001, 15)]  # the group is gone already: then it is waited for, 30 s
    assert fake_workers.made[1].waits == [30]


# ================================================================ online stages
class _OneEntryRegistry:
    """Stands in for harness.registry in the online module: one plug-in (loading every plug-in is slow)."""

    def __init__(self, kind, name, obj):
        self.kind, self.name, self.obj = kind, name, obj

    def get(self, kind, name):
        assert (kind, name) == (self.kind, self.name)
        return self.obj


class _ScriptedBackend:
    calls: list = []

    def __init__(self, model, **kw):
        _ScriptedBackend.calls.append(("init", model, kw))

    def chat(self, convs, sampling, desc=""):
        _ScriptedBackend.calls.append(("chat", [c[-1]["content"] for c in convs], sampling, desc))
        return [[f"{c[-1]['content']}/{k}" for k in range(sampling.n)] for c in convs]


def test_generate_with_a_sampled_y_ref_passes_every_setting(monkeypatch, tmp_path):
    from selm_bench.harness.core.specs import GenerateSpec, Ref
    from selm_bench.trainers import online
    from selm_bench.trainers.generation import Sampling

    monkeypatch.setattr(_ScriptedBackend, "calls", [])
    monkeypatch.setattr(online, "registry", _OneEntryRegistry("backend", "scripted", _ScriptedBackend))
    write_jsonl(tmp_path / "p.jsonl", [{"prompt": f"q{i}", "chosen": "c", "rejected": "r"} for i in range(5)])
    spec = GenerateSpec(policy=Ref(path="/pol"), prompts=Ref(path="p.jsonl"), chunk=2, chunks=2, candidates=["policy"],
                        num_samples=2, temperature=0.8, top_p=0.7, max_new_tokens=12, ref_response="sample",
                        backend="scripted", backend_options={"batch_size": 3}, device="cuda:2", seed=9)
    online.generate(spec, tmp_path, tmp_path / "out")
    assert _ScriptedBackend.calls == [
        ("init", "/pol", {"device": "cuda:2", "batch_size": 3}),
        ("chat", ["q2", "q3"], Sampling(n=1, temperature=0.8, top_p=0.7, max_new_tokens=12, seed=9), "y_ref iter-2"),
        ("chat", ["q2", "q3"], Sampling(n=2, temperature=0.8, top_p=0.7, max_new_tokens=12, seed=9), "sample iter-2")]
    rows = [json.loads(line) for line in (tmp_path / "out" / "candidates.jsonl").read_text().splitlines()]
    assert rows == [{"prompt": "q2", "chosen": "c", "rejected": "r", "candidates": ["q2/0", "q2/1", "q2/0"], "y_ref": "q2/0"},
                    {"prompt": "q3", "chosen": "c", "rejected": "r", "candidates": ["q3/0", "q3/1", "q3/0"], "y_ref": "q3/0"}]


class _PlainRanker:
    """No `accounting`, no `errors`: the stage records empty ones. Fails on prompts naming 'x'."""

    def __init__(self, **kw):
        pass

    def score(self, prompts, candidates):
        return [None if "x" in p["prompt"] else [float(len(c)) for c in cands] for p, cands in zip(prompts, candidates)]


def test_rank_stage_record_and_summary_line_for_a_plain_ranker(monkeypatch, tmp_path):
    from selm_bench.harness.core.specs import RankSpec, Ref
    from selm_bench.trainers import online

    monkeypatch.setattr(online, "registry", _OneEntryRegistry("ranker", "plain", _PlainRanker))
    said = []
    monkeypatch.setattr(online, "say", said.append)
    write_jsonl(tmp_path / "c.jsonl", [{"prompt": p, "candidates": ["a", "bb"], "y_ref": "a"} for p in ("p1", "p2", "x3", "p4")])
    spec = RankSpec(candidates=Ref(path="c.jsonl"), ranker="plain", max_failures=0.25)  # 1 of 4 failed: at the limit
    online.rank(spec, tmp_path, tmp_path / "r")
    recs = [json.loads(line) for line in (tmp_path / "r" / "generations.jsonl").read_text().splitlines()]
    ok = {"candidates": ["a", "bb"], "scores": [1.0, 2.0], "chosen": "bb", "rejected": "a", "used": True, "y_ref": "a"}
    assert recs == [{"prompt": "p1", **ok}, {"prompt": "p2", **ok},
                    {"prompt": "x3", "candidates": ["a", "bb"], "scores": None, "chosen": None, "rejected": None,
                     "used": False, "y_ref": "a"},
                    {"prompt": "p4", **ok}]
    assert json.loads((tmp_path / "r" / "stage_info.json").read_text()) == {
        "prompts": 4, "ranker": "plain", "ranker_failures": 1, "ranker_calls": {}, "ranker_failure_fraction": 0.25,
        "ranker_errors": [], "pairs": 3, "tie_pairs": 0}
    assert said == ["  3/4 prompts gave a pair (1 ranker failures)"]
    write_jsonl(tmp_path / "d.jsonl", [{"prompt": "p", "candidates": ["a", "bb"], "y_ref": "a"}])
    online.rank(spec.model_copy(update={"candidates": Ref(path="d.jsonl")}), tmp_path, tmp_path / "d")
    assert said[-1] == "  1/1 prompts gave a pair"


def test_rank_stage_counts_tie_pairs_kept_with_keep_ties(monkeypatch, tmp_path):
    """keep_ties keeps a prompt whose candidates all tie (chosen = rejected): counted in the record."""
    from selm_bench.harness.core.specs import RankSpec, Ref
    from selm_bench.trainers import online

    monkeypatch.setattr(online, "registry", _OneEntryRegistry("ranker", "plain", _PlainRanker))
    monkeypatch.setattr(online, "say", lambda line: None)
    # lengths 1, 1 (a tie), 1, 2 (not), 2, 2 (a tie)
    write_jsonl(tmp_path / "c.jsonl", [{"prompt": f"p{i}", "candidates": c, "y_ref": c[0]}
                                       for i, c in enumerate([["a", "b"], ["a", "bb"], ["cc", "dd"]])])
    spec = RankSpec(candidates=Ref(path="c.jsonl"), ranker="plain", keep_ties=True)
    online.rank(spec, tmp_path, tmp_path / "r")
    info = json.loads((tmp_path / "r" / "stage_info.json").read_text())
    assert (info["pairs"], info["tie_pairs"]) == (3, 2)


def test_build_pairs_whole_records():
    from selm_bench.trainers.online import build_pairs

    records, pairs = build_pairs([{"id": 1, "prompt": "p"}, {"id": 2, "prompt": "q"}], [["a", "b"], ["c", "d"]],
                                 [[0.1, 0.2], None])
    assert records == [
        {"id": 1, "prompt": "p", "candidates": ["a", "b"], "scores": [0.1, 0.2], "chosen": "b", "rejected": "a", "used": True},
        {"id": 2, "prompt": "q", "candidates": ["c", "d"], "scores": None, "chosen": None, "rejected": None, "used": False}]
    assert pairs == [records[0]]


# ================================================================ training glue
def _train_args(**over):
    from selm_bench.harness.core.specs import TrainArgs

    return TrainArgs(**{**dict(learning_rate=2e-5, per_device_batch_size=4, gradient_accumulation_steps=2, num_processes=1,
                               epochs=3.0, warmup_ratio=0.05, max_length=128, logging_steps=10, seed=3, device="cpu",
                               precision="fp32", gradient_checkpointing=False), **over})


def test_trainer_kwargs_whole_dict(tmp_path):
    from selm_bench.trainers.train import trainer_kwargs

    assert trainer_kwargs(_train_args(), tmp_path / "o") == {
        "output_dir": str(tmp_path / "o"), "per_device_train_batch_size": 4, "gradient_accumulation_steps": 2,
        "learning_rate": 2e-5, "num_train_epochs": 3.0, "max_steps": -1, "warmup_steps": 0.05, "weight_decay": 0.0,
        "lr_scheduler_type": "cosine", "logging_steps": 10, "save_strategy": "no", "report_to": [], "seed": 3,
        "data_seed": 3, "bf16": False, "fp16": False, "use_cpu": True, "gradient_checkpointing": False,
        "disable_tqdm": True, "dataloader_num_workers": 0, "max_length": 128, "dataset_num_proc": None}


def test_check_world_size_defaults_to_one_process(monkeypatch):
    from selm_bench.trainers.train import check_world_size

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    check_world_size(_train_args())
    with pytest.raises(RuntimeError) as err:
        check_world_size(_train_args(num_processes=4))
    assert str(err.value) == "this stage's spec is for 4 process(es) but 1 were launched"


def test_user_and_assistant_turns():
    from selm_bench.trainers.train import assistant, user

    assert user("hi") == [{"role": "user", "content": "hi"}]
    assert assistant("yo") == [{"role": "assistant", "content": "yo"}]


class _FakeTrainer:
    def __init__(self, main=True):
        self.main = main
        self.saved, self.removed = [], []
        self.state = types.SimpleNamespace(log_history=[{"loss": 1.5}])
        self.accelerator = types.SimpleNamespace(num_processes=3, distributed_type="MULTI_GPU", device="cuda:0",
                                                 mixed_precision="bf16")
        self.args = types.SimpleNamespace(learning_rate=1e-6, lr_scheduler_type="linear", optim="adamw_torch",
                                          per_device_train_batch_size=4, gradient_accumulation_steps=2,
                                          gradient_checkpointing=True)

    def save_model(self, path):
        self.saved.append(path)

    def is_world_process_zero(self):
        return self.main

    def remove_callback(self, cb):
        self.removed.append(cb)


def test_save_writes_the_model_log_and_train_info(tmp_path):
    from selm_bench.trainers.train import _save

    saved = []
    tok = types.SimpleNamespace(save_pretrained=saved.append)
    tr = _FakeTrainer()
    _save(tr, tok, tmp_path)
    assert (tr.saved, saved) == ([str(tmp_path)], [str(tmp_path)])
    assert (tmp_path / "train_log.json").read_text() == '[\n {\n  "loss": 1.5\n }\n]'  # indent=1
    assert json.loads((tmp_path / "train_info.json").read_text()) == {
        "num_processes": 3, "distributed_type": "MULTI_GPU", "device": "cuda:0", "mixed_precision": "bf16",
        "learning_rate": 1e-6, "lr_scheduler": "linear", "optim": "adamw_torch", "global_batch": 24,  # 4 x 2 x 3
        "gradient_checkpointing": True}
    assert (tmp_path / "train_info.json").read_text().startswith('{\n "num_processes": 3,\n')

    other = tmp_path / "rank1"
    other.mkdir()
    tr1 = _FakeTrainer(main=False)
    _save(tr1, tok, other)
    assert tr1.saved == [str(other)] and saved == [str(tmp_path)] and list(other.iterdir()) == []


def test_quiet_drops_the_printer_callback(monkeypatch):
    from selm_bench.trainers.train import _quiet

    class PrinterCallback:
        pass

    _fake_transformers(monkeypatch)
    monkeypatch.setitem(sys.modules, "transformers.trainer_callback", types.SimpleNamespace(PrinterCallback=PrinterCallback))
    tr = _FakeTrainer()
    assert _quiet(tr) is tr and tr.removed == [PrinterCallback]


def test_progress_callback_follows_the_steps(monkeypatch):
    from selm_bench.trainers import train

    events = []

    class Bar:
        def advance(self, k):
            events.append(("advance", k))

    class CM:
        def __init__(self, desc, total):
            events.append(("open", desc, total))

        def __enter__(self):
            return Bar()

        def __exit__(self, *exc):
            events.append(("close", exc))

    monkeypatch.setattr(train, "progress", CM)
    _fake_transformers(monkeypatch, TrainerCallback=object)
    cb = train._progress_callback("selm")
    state = types.SimpleNamespace(max_steps=2)
    cb.on_train_begin(None, state, None)
    cb.on_step_end(None, state, None)
    cb.on_step_end(None, state, None)
    cb.on_train_end(None, state, None)
    assert events == [("open", "selm", 2), ("advance", 1), ("advance", 1), ("close", (None, None, None))]


def test_pack_rows_exact_fit_and_ties_in_index_order():
    from selm_bench.trainers.train import pack_rows

    assert pack_rows([3, 5], 8) == [[0, 1]]  # 5 then 3 fills the row of 8 exactly
    assert pack_rows([2, 2, 2], 4) == [[0, 1], [2]]  # equal lengths: by index
    assert pack_rows([9, 1], 4) == [[0], [1]]  # the longest (9) sets the row size: 9 + 1 does not fit
    assert pack_rows([], 4) == []


# ================================================================ methods (stage plans)
class _FakeSources:
    def base_model(self):
        from selm_bench.harness.core.specs import Ref

        return Ref(path="base")

    def sft_data(self):
        from selm_bench.harness.core.specs import Ref

        return Ref(path="sft.jsonl")

    def offline_pairs(self):
        from selm_bench.harness.core.specs import Ref

        return Ref(path="pairs.jsonl")

    def prompts(self, t):
        from selm_bench.harness.core.specs import Ref

        return Ref(path=f"prompts-{t}.jsonl"), t + 1, 4


def _method_cfg(ranker="judge:gpt-j", dpo_start="sft", online_start="dpo", trusted=()):
    ns = types.SimpleNamespace
    return ns(seed=4, device="cpu", model=ns(pretrained="", trusts=lambda name: name in trusted),
              eval=ns(batch_size=5, judge_base_url="http://j/v1"), dpo=ns(start=dpo_start, beta=0.3),
              online=ns(start=online_start, iterations=2, candidates=("policy", "dataset"), num_samples=3, temperature=0.9,
                        top_p=0.8, max_new_tokens=20, ref_response="greedy", backend="hf", ranker=ranker, keep_ties=True,
                        max_ranker_failures=0.1, beta=0.2, alpha=0.01, nll_weight=0.5))


@pytest.fixture
def method_train_args(monkeypatch):
    """train_args (harness/run/stages.py, not under test here) replaced: the section and iteration become the seed
    and learning rate, so each stage's TrainArgs says which section it was planned from."""
    from selm_bench.trainers import methods

    sections = {"sft": 1, "dpo": 2, "online": 3}
    monkeypatch.setattr(methods, "train_args", lambda cfg, section, t=None: _train_args(
        seed=sections[section], learning_rate=float(t or 0)))
    return lambda section, t=None: _train_args(seed=sections[section], learning_rate=float(t or 0))


def test_sft_and_dpo_plans(method_train_args):
    from selm_bench.harness.run.stages import Stage
    from selm_bench.harness.core.specs import PreferenceSpec, Ref, SFTSpec
    from selm_bench.trainers.methods import DPOMethod, SFTMethod

    cfg = _method_cfg()
    assert SFTMethod().needs(cfg) == ()
    sft, = SFTMethod().plan(cfg, _FakeSources(), {}, {})
    assert sft == Stage("sft", "checkpoints/sft/model", SFTSpec(base=Ref(path="base"), data=Ref(path="sft.jsonl"),
                                                                train=method_train_args("sft"), trust_remote_code=False),
                        checkpoint="sft", method="sft")
    assert DPOMethod().needs(cfg) == ("sft",)
    dpo, = DPOMethod().plan(cfg, _FakeSources(), {"sft": sft}, {})
    start = Ref(path="checkpoints/sft/model", key=sft.key)
    assert dpo == Stage("dpo", "checkpoints/dpo/model", PreferenceSpec(
        policy=start, reference=start, pairs=Ref(path="pairs.jsonl"), loss="dpo", beta=0.3, alpha=None, nll_weight=0.0,
        train=method_train_args("dpo"), trust_remote_code=False), checkpoint="dpo", method="dpo")
    base = _method_cfg(dpo_start="base", trusted=("",))
    assert DPOMethod().needs(base) == ()
    dpo, = DPOMethod().plan(base, _FakeSources(), {}, {})
    assert (dpo.spec.policy, dpo.spec.reference, dpo.spec.trust_remote_code) == (Ref(path="base"), Ref(path="base"), True)


def test_online_plan_two_iterations_and_the_shared_first_generation(method_train_args):
    from selm_bench.harness.run.stages import Stage
    from selm_bench.harness.core.specs import GenerateSpec, PreferenceSpec, RankSpec, Ref, SFTSpec
    from selm_bench.trainers.methods import IterativeDPOMethod, SELMMethod

    cfg = _method_cfg(trusted=("gpt-j",))
    assert SELMMethod().needs(cfg) == ("dpo",) and IterativeDPOMethod().needs(_method_cfg(online_start="base")) == ()
    dpo = Stage("dpo", "checkpoints/dpo/model", SFTSpec(base=Ref(path="b"), data=Ref(path="d"), train=_train_args()),
                checkpoint="dpo", method="dpo")
    shared: dict = {}
    stages = SELMMethod().plan(cfg, _FakeSources(), {"dpo": dpo}, shared)
    assert [(s.name, s.folder, s.checkpoint, s.method, s.iteration) for s in stages] == [
        ("selm/iter-1/generate", "checkpoints/selm/iter-1/generate", None, "selm", 1),
        ("selm/iter-1/rank", "checkpoints/selm/iter-1/rank", None, "selm", 1),
        ("selm/iter-1", "checkpoints/selm/iter-1/model", "selm/iter-1", "selm", 1),
        ("selm/iter-2/generate", "checkpoints/selm/iter-2/generate", None, "selm", 2),
        ("selm/iter-2/rank", "checkpoints/selm/iter-2/rank", None, "selm", 2),
        ("selm/iter-2", "checkpoints/selm/iter-2/model", "selm/iter-2", "selm", 2)]
    g1, r1, t1, g2, r2, t2 = stages
    policy1 = Ref(path="checkpoints/dpo/model", key=dpo.key)
    assert g1.spec == GenerateSpec(policy=policy1, prompts=Ref(path="prompts-1.jsonl"), chunk=2, chunks=4,
                                   candidates=["policy", "dataset"], num_samples=3, temperature=0.9, top_p=0.8,
                                   max_new_tokens=20, ref_response="greedy", backend="hf",
                                   backend_options={"batch_size": 5}, device="cpu", seed=4001)  # 4 * 1000 + 1
    assert r1.spec == RankSpec(candidates=Ref(path="checkpoints/selm/iter-1/generate/candidates.jsonl", key=g1.key),
                               ranker="judge:gpt-j", keep_ties=True, max_failures=0.1, device="cpu", batch_size=5,
                               judge_base_url="http://j/v1", trust_remote_code=True)
    assert t1.spec == PreferenceSpec(policy=policy1, reference=policy1,
                                     pairs=Ref(path="checkpoints/selm/iter-1/rank/generations.jsonl", key=r1.key),
                                     loss="selm", beta=0.2, alpha=0.01, nll_weight=0.5, train=method_train_args("online", 1),
                                     trust_remote_code=False)
    policy2 = Ref(path="checkpoints/selm/iter-1/model", key=t1.key)
    assert (g2.spec.policy, g2.spec.seed, g2.spec.chunk, t2.spec.policy, t2.spec.reference, t2.spec.train) == (
        policy2, 4002, 3, policy2, policy2, method_train_args("online", 2))
    assert set(shared) == {g1.key, r1.key, g2.key, r2.key}

    # iterative-dpo planned after selm with the same settings: iteration 1's generation and ranking are selm's
    it1, ir1, itrain1, *_ = IterativeDPOMethod().plan(cfg, _FakeSources(), {"dpo": dpo}, shared)
    assert (it1, ir1) == (g1, r1)
    assert (itrain1.name, itrain1.method, itrain1.spec.loss, itrain1.spec.alpha) == ("iterative-dpo/iter-1", "iterative-dpo",
                                                                                    "dpo", None)


def test_online_rank_spec_for_rankers_without_a_judge(method_train_args):
    from selm_bench.harness.core.specs import Ref
    from selm_bench.trainers.methods import IterativeDPOMethod

    _, rank, *_ = IterativeDPOMethod().plan(_method_cfg(ranker="reward-model:rm", online_start="base"), _FakeSources(), {}, {})
    assert (rank.spec.ranker, rank.spec.judge_base_url, rank.spec.trust_remote_code) == ("reward-model:rm", None, False)
    _, rank, *_ = IterativeDPOMethod().plan(_method_cfg(ranker="reward-model:org/rm:v2", online_start="base",
                                                        trusted=("org/rm:v2",)), _FakeSources(), {}, {})
    assert rank.spec.trust_remote_code is True  # the model is everything after the first colon
    gen, rank, *_ = IterativeDPOMethod().plan(_method_cfg(ranker="pairrm", online_start="base", trusted=("pairrm", "")),
                                              _FakeSources(), {}, {})
    assert (rank.spec.judge_base_url, rank.spec.trust_remote_code) == (None, False)  # no ":": no model to trust
    assert gen.spec.policy == Ref(path="base") and gen.spec.backend_options == {"batch_size": 5, "trust_remote_code": True}


def test_registered_entries_and_their_help_lines():
    """What `list` shows for this package's plug-ins: each name, its class and its whole help line
    (read from the registry's table: importing the modules registers them)."""
    from selm_bench.harness.core import registry
    from selm_bench.trainers import generation, methods, pairrm, rankers, vllm_backend

    expected = {
        ("method", "sft"): (methods.SFTMethod, "supervised fine-tuning (TRL SFTTrainer); the starting policy"),
        ("method", "dpo"): (methods.DPOMethod, "offline DPO on the fixed preference set (TRL DPOTrainer, sigmoid)"),
        ("method", "iterative-dpo"): (methods.IterativeDPOMethod, "online iterations: generate, rank, DPO on best vs worst"),
        ("method", "selm"): (methods.SELMMethod, "iterative DPO plus SELM's optimism term on y_ref"),
        ("ranker", "oracle"): (rankers.OracleRanker, "the tiny world's graded verifier (needs gold answers)"),
        ("ranker", "reward-model"): (rankers.RewardModelRanker,
                                     "reward-model:<hub id or path>: a sequence-classification scalar reward"),
        ("ranker", "pairrm"): (pairrm.PairRMRanker, "pairrm[:<hub id or path>]: PairRM (default llm-blender/PairRM-hf), pairwise, in-project"),
        ("ranker", "judge"): (rankers.JudgeRanker, "judge:<model>: pairwise preference of an OpenAI-compatible LLM, cached"),
        ("backend", "hf"): (generation.HFBackend, "transformers generate(), batched with left padding (CPU or GPU)"),
        ("backend", "vllm"): (vllm_backend.VLLMBackend, "vLLM in worker subprocesses (GPU, optional extra selm-bench[vllm]); "
                                                        "data_parallel_size shards prompts over GPU groups"),
    }
    got = {(kind, name): (registry._ENTRIES[kind][name].obj, registry._ENTRIES[kind][name].help) for kind, name in expected}
    assert got == expected
    assert (methods.SELMMethod.name, methods.SELMMethod.loss, methods.IterativeDPOMethod.name,
            methods.IterativeDPOMethod.loss) == ("selm", "selm", "iterative-dpo", "dpo")


@pytest.mark.parametrize("deepspeed, precision, dtype", [
    (None, "bf16", torch.float32),  # fp32 weights, the Trainer autocasts
    ("TRUE", "bf16", torch.bfloat16),  # DeepSpeed wants half-precision weights (the flag read case-blind)
    ("true", "fp16", torch.float16),
    ("true", "fp32", torch.float32),
    ("false", "fp16", torch.float32),
])
def test_load_model_dtype_and_remote_code_default(monkeypatch, deepspeed, precision, dtype):
    from selm_bench.trainers.train import _load_model

    calls = []

    class AutoModelForCausalLM:
        @staticmethod
        def from_pretrained(path, **kw):
            calls.append((path, kw))
            return "model"

    _fake_transformers(monkeypatch, AutoModelForCausalLM=AutoModelForCausalLM)
    if deepspeed is None:
        monkeypatch.delenv("ACCELERATE_USE_DEEPSPEED", raising=False)
    else:
        monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", deepspeed)
    assert _load_model("/ckpt", _train_args(precision=precision)) == "model"
    assert calls == [("/ckpt", {"dtype": dtype, "trust_remote_code": False})]
