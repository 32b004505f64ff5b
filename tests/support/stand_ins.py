"""Stand-ins shared by the trainers' tests: a `transformers` module holding only the classes a test
gives it, and a training stage's arguments with every required field filled."""

from __future__ import annotations

import sys
import types
from typing import Any


def fake_transformers(monkeypatch, **attrs: Any) -> None:
    """A stand-in `transformers` module holding only `attrs` (the adapters import from it inside
    __init__), for this test only."""
    monkeypatch.setitem(sys.modules, "transformers", types.SimpleNamespace(**attrs))


def fake_loaders(monkeypatch, tokenizer: Any, model_class: str, model: Any, **attrs: Any) -> dict[str, tuple]:
    """A stand-in `transformers` whose AutoTokenizer and `model_class` (e.g. AutoModelForCausalLM)
    return `tokenizer` and `model`; the returned dict records each `from_pretrained(path, **kwargs)`."""
    loaded: dict[str, tuple] = {}

    def loader(key: str, obj: Any) -> Any:
        def from_pretrained(path: Any, **kw: Any) -> Any:
            loaded[key] = (path, kw)
            return obj
        return type(key, (), {"from_pretrained": staticmethod(from_pretrained)})

    fake_transformers(monkeypatch, AutoTokenizer=loader("tokenizer", tokenizer), **{model_class: loader("model", model)},
                      **attrs)
    return loaded


def train_args(**over: Any):
    """A TrainArgs with hand-picked values (fp32 on CPU, one process); `over` replaces any field."""
    from selm_bench.harness.core.specs import TrainArgs

    return TrainArgs(**{**dict(learning_rate=2e-5, per_device_batch_size=4, gradient_accumulation_steps=2, num_processes=1,
                               epochs=3.0, warmup_ratio=0.05, max_length=128, logging_steps=10, seed=3, device="cpu",
                               precision="fp32", gradient_checkpointing=False), **over})


class OneEntryRegistry:
    """Stands in for harness.registry in a module that looks up one plug-in (loading every plug-in is
    slow): `get(kind, name)` answers only the one it was made with."""

    def __init__(self, kind: str, name: str, obj: Any):
        self.kind, self.name, self.obj = kind, name, obj

    def get(self, kind: str, name: str) -> Any:
        assert (kind, name) == (self.kind, self.name)
        return self.obj
