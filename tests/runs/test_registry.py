"""The registry (harness/core/registry.py): typed entries, duplicates refused, one clear line for an unknown name."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from selm_bench.harness.core import registry
from selm_bench.harness.core.registry import RegistryError


def test_unknown_name_lists_what_is_registered_and_the_closest():
    with pytest.raises(RegistryError) as e:
        registry.entry("suite", "mt-bnech")
    assert str(e.value) == ("unknown suite 'mt-bnech' (registered: alpaca-eval, brainteaser, lm-eval, mt-bench, "
                            "tiny-world); did you mean 'mt-bench'?")


def test_unknown_name_of_an_empty_kind_says_none(monkeypatch):
    registry.load_all()
    monkeypatch.setitem(registry._ENTRIES, "backend", {})
    monkeypatch.setitem(registry.BUILTINS, "backend", {})
    with pytest.raises(RegistryError, match=r"^unknown backend 'hf' \(registered: none\)$"):
        registry.get("backend", "hf")


def test_the_builtin_table_is_what_the_modules_register():
    """Every lazy "module:object" name imports to the object its decorator registers, and nothing
    registers itself outside the table."""
    import importlib

    registry.load_all()
    for kind, table in registry.BUILTINS.items():
        modules = {t.split(":")[0] for t in table.values()}
        builtin = [n for n, e in registry._ENTRIES[kind].items() if getattr(e.obj, "__module__", None) in modules]
        assert sorted(builtin) == sorted(table), kind  # (tests may register their own entries elsewhere)
        for name, target in table.items():
            module, obj = target.split(":")
            assert registry.get(kind, name) is getattr(importlib.import_module(module), obj), (kind, name)


def test_commands_that_read_results_import_no_engine(tmp_path):
    """list, plan, leaderboard and compare know every name from the table and import no torch,
    transformers, TRL, lm-eval, fastchat or alpaca_eval (seconds each): measured in a fresh interpreter."""
    import json
    import subprocess
    import sys

    for name in ("base", "new"):
        folder = tmp_path / name / "evals" / "sft" / "tiny-world"
        folder.mkdir(parents=True)
        (folder / "metrics.json").write_text(json.dumps({"suite": "tiny-world", "checkpoint": "sft",
                                                         "metrics": {"accuracy": 0.5, "score": 0.5}, "info": {}}))
        (folder / "items.jsonl").write_text("".join(json.dumps({"id": str(i), "score": float(i % 2), "correct": i % 2 == 1}) + "\n"
                                                    for i in range(20)))
        (tmp_path / name / "manifest.json").write_text(json.dumps({"results": ["evals/sft/tiny-world"], "stages": {}}))
    probe = ("import sys, runpy\nsys.argv = ['selm-bench', *sys.argv[1:]]\n"
             "try:\n    runpy.run_module('selm_bench.harness.cli', run_name='__main__')\n"
             "except SystemExit as e:\n    code = e.code\nelse:\n    code = 0\n"
             "heavy = [m for m in ('torch', 'transformers', 'trl', 'lm_eval', 'fastchat', 'alpaca_eval', 'datasets')"
             " if m in sys.modules]\nprint('HEAVY=' + ','.join(heavy), 'CODE=' + str(code), file=sys.stderr)\n")
    commands = [["list"], ["plan"], ["plan", "--config", "configs/zephyr-7b.yaml", "--format", "json"],
                ["leaderboard", "--results", str(tmp_path)], ["compare", str(tmp_path / "base"), str(tmp_path / "new")]]
    for argv in commands:
        res = subprocess.run([sys.executable, "-c", probe, *argv], capture_output=True, text=True,
                             env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"})
        last = res.stderr.strip().splitlines()[-1]
        assert last == "HEAVY= CODE=0", (argv, res.stderr[-1500:])
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
