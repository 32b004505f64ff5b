"""The registry (harness/registry.py): typed entries, duplicates refused, one clear line for an unknown name."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from selm_bench.harness import registry
from selm_bench.harness.registry import RegistryError


def test_unknown_name_lists_what_is_registered():
    with pytest.raises(RegistryError) as e:
        registry.entry("suite", "mt-bnech")
    assert str(e.value) == ("unknown suite 'mt-bnech' (registered: alpaca-eval, brainteaser, lm-eval, mt-bench, "
                            "tiny-world)")


def test_unknown_name_of_an_empty_kind_says_none(monkeypatch):
    registry.load_all()
    monkeypatch.setitem(registry._ENTRIES, "backend", {})
    with pytest.raises(RegistryError, match=r"^unknown backend 'hf' \(registered: none\)$"):
        registry.get("backend", "hf")


def test_parameterised_names_resolve_to_their_entry():
    assert registry.base_name("judge", "openai:gpt-4") == "openai"
    assert registry.base_name("ranker", "reward-model:org/rm:v2") == "reward-model"
    assert registry.base_name("suite", "lm-eval:openllm") == "lm-eval"
    assert registry.base_name("method", "selm:x") == "selm:x"  # methods take no parameter
    assert registry.has("judge", "openai:gpt-4") and not registry.has("method", "selm:x")


def test_duplicates_and_untyped_entries_are_refused(monkeypatch):
    monkeypatch.setitem(registry._ENTRIES, "judge", dict(registry._ENTRIES["judge"]))

    class First:
        pass

    class Second:
        pass

    registry.register_judge("dup-test")(First)
    registry.register_judge("dup-test")(First)  # the same object again (a module imported twice) is fine
    with pytest.raises(ValueError, match="judge 'dup-test' is registered twice"):
        registry.register_judge("dup-test")(Second)
    with pytest.raises(ValueError, match="unknown registry kind 'metric'"):
        registry.register("metric", "x")
    with pytest.raises(TypeError, match="options must be a pydantic BaseModel subclass"):
        registry.register_suite("bad-suite", options=dict)

    class Options(BaseModel):
        pass

    with pytest.raises(TypeError, match="paired must map items to metrics"):
        registry.register_suite("bad-suite", options=Options, paired="score")


def test_help_defaults_to_the_first_docstring_line(monkeypatch):
    monkeypatch.setitem(registry._ENTRIES, "judge", dict(registry._ENTRIES["judge"]))

    class Documented:
        """One line of help.

        More detail."""

    registry.register_judge("doc-test")(Documented)
    assert registry.entry("judge", "doc-test").help == "One line of help."
