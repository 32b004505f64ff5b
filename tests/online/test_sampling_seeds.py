"""The hf backend samples with a seed per prompt, as the vllm backend does: a sampled reply depends on
its prompt, its index in the call and the seed, never on the batch it lands in, and it is a draw from
softmax(logits / T) restricted to the top-p nucleus. Also the backend's loading, padding and batching
(with a stand-in model and tokenizer), and the online generate stage's calls and candidates."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from selm_bench.harness.world import write_jsonl
from selm_bench.trainers.generation import HFBackend, Sampling, SeededSampling
from support.stand_ins import OneEntryRegistry, fake_loaders


def test_sampled_replies_do_not_depend_on_the_batch(tiny_model):
    convs = [[{"role": "user", "content": f"add {i} and {i + 3}"}] for i in range(10)]
    sampling = Sampling(n=3, temperature=1.0, top_p=0.9, max_new_tokens=10, seed=5)
    one_by_one = HFBackend(str(tiny_model), batch_size=1).chat(convs, sampling)
    batched = HFBackend(str(tiny_model), batch_size=64).chat(convs, sampling)
    assert one_by_one == batched
    assert all(len(set(r)) > 1 for r in batched[:3])  # a prompt's n samples are different draws
    other_seed = HFBackend(str(tiny_model), batch_size=64).chat(convs, Sampling(**{**sampling.__dict__, "seed": 6}))
    assert other_seed != batched


def _frequencies(logits: list[float], temperature: float, top_p: float, draws: int = 6000) -> list[float]:
    sampler = SeededSampling(seed=0, indices=list(range(draws)), n=1, temperature=temperature, top_p=top_p)
    scores = torch.tensor([logits] * draws)
    picks = sampler(torch.zeros(draws, 1, dtype=torch.long), scores).argmax(dim=-1)
    return [float((picks == t).float().mean()) for t in range(len(logits))]


@pytest.mark.parametrize("temperature, top_p, expected", [
    # softmax([2, 1, 0, -1]) by hand
    (1.0, 1.0, [math.exp(x) / sum(math.exp(y) for y in (2, 1, 0, -1)) for x in (2, 1, 0, -1)]),
    # T = 0.5 doubles the logits
    (0.5, 1.0, [math.exp(2 * x) / sum(math.exp(2 * y) for y in (2, 1, 0, -1)) for x in (2, 1, 0, -1)]),
    # top-p 0.8: the first token's mass (0.644) is short of 0.8, the first two (0.881) reach it -> renormalised
    (1.0, 0.8, [math.exp(2) / (math.exp(2) + math.exp(1)), math.exp(1) / (math.exp(2) + math.exp(1)), 0.0, 0.0]),
])
def test_a_seeded_draw_follows_the_tempered_nucleus_distribution(temperature, top_p, expected):
    freq = _frequencies([2.0, 1.0, 0.0, -1.0], temperature, top_p)
    assert freq == pytest.approx(expected, abs=0.02)


def test_sampling_defaults_to_one_greedy_reply_and_below_1e_4_is_greedy():
    import dataclasses

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

    loaded = fake_loaders(monkeypatch, tok, "AutoModelForCausalLM", model, LogitsProcessorList=list)
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


def test_the_hf_backend_pads_left_batches_longest_first_and_returns_replies_in_prompt_order(monkeypatch):
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


def test_the_hf_backend_renders_conversations_with_the_chat_template(monkeypatch):
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


def test_a_prompt_is_rendered_with_the_tokenizers_own_template():
    from selm_bench.trainers.generation import render_prompt

    tok = _FakeLMTokenizer([])
    assert render_prompt(tok, [{"role": "system", "content": "s"}, {"role": "user", "content": "hi"}], "vicuna") == "<hi>"
    assert tok.templated == [{"tokenize": False, "add_generation_prompt": True}]




class _ScriptedBackend:
    calls: list = []

    def __init__(self, model, **kw):
        _ScriptedBackend.calls.append(("init", model, kw))

    def chat(self, convs, sampling, desc=""):
        _ScriptedBackend.calls.append(("chat", [c[-1]["content"] for c in convs], sampling, desc))
        return [[f"{c[-1]['content']}/{k}" for k in range(sampling.n)] for c in convs]


def test_the_generate_stage_passes_every_setting_and_can_sample_y_ref(monkeypatch, tmp_path):
    from selm_bench.harness.core.specs import GenerateSpec, Ref
    from selm_bench.trainers import online

    monkeypatch.setattr(_ScriptedBackend, "calls", [])
    monkeypatch.setattr(online, "registry", OneEntryRegistry("backend", "scripted", _ScriptedBackend))
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
