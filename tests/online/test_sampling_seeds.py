"""The hf backend samples with a seed per prompt, as the vllm backend does: a sampled reply depends on
its prompt, its index in the call and the seed, never on the batch it lands in, and it is a draw from
softmax(logits / T) restricted to the top-p nucleus."""

from __future__ import annotations

import math

import pytest
import torch

from selm_bench.trainers.generation import HFBackend, Sampling, SeededSampling


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
