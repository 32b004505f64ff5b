"""The registry (harness/core/registry.py): typed entries, duplicates refused, one clear line for an unknown name."""

from __future__ import annotations

import dataclasses

import pytest
from pydantic import BaseModel

from selm_bench.harness.core import registry
from selm_bench.harness.core.registry import RegistryError


def test_unknown_name_lists_what_is_registered_and_the_closest():
    with pytest.raises(RegistryError) as e:
        registry.entry("suite", "mt-bnech")
    msg = str(e.value)
    assert msg.startswith("unknown suite 'mt-bnech' ")
    assert msg.split("(registered: ")[1].split(")")[0].split(", ") == [
        "alpaca-eval", "brainteaser", "lm-eval", "mt-bench", "tiny-world"]
    assert msg.endswith("did you mean 'mt-bench'?")


def test_unknown_name_of_an_empty_kind_says_none(monkeypatch):
    registry.load_all()
    monkeypatch.setitem(registry._ENTRIES, "backend", {})
    monkeypatch.setitem(registry.BUILTINS, "backend", {})
    with pytest.raises(RegistryError) as e:
        registry.get("backend", "hf")
    assert str(e.value).startswith("unknown backend 'hf' ") and str(e.value).endswith("(registered: none)")


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
    with pytest.raises(ValueError, match="registered twice") as err:
        registry.register_judge("dup-test")(Second)
    assert "'dup-test'" in str(err.value)
    with pytest.raises(ValueError) as err:
        registry.register("metric", "x")
    assert "'metric'" in str(err.value)
    assert all(f"'{kind}'" in str(err.value) for kind in ("method", "suite", "judge", "ranker", "backend"))  # the known kinds
    with pytest.raises(TypeError, match="BaseModel"):
        registry.register_suite("bad-suite", options=dict)

    class Options(BaseModel):
        pass

    with pytest.raises(TypeError, match="paired"):
        registry.register_suite("bad-suite", options=Options, paired="score")


def test_an_entry_is_frozen_and_has_no_hooks_by_default():
    e = registry.Entry("judge", "x", object, "help")
    assert (e.options, e.headline, e.paired) == (None, None, None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        e.help = "other"


class _TwoLines:
    """First line.
    Second line."""


class _NoDoc:
    pass


@pytest.mark.parametrize("kind,register", [
    ("judge", lambda name, **kw: registry.register("judge", name, **kw)), ("judge", registry.register_judge),
    ("ranker", registry.register_ranker), ("backend", registry.register_backend), ("method", registry.register_method),
])
def test_help_comes_from_the_argument_else_the_first_docstring_line(kind, register, monkeypatch):
    monkeypatch.setitem(registry._ENTRIES, kind, dict(registry._ENTRIES[kind]))
    register("two-lines")(_TwoLines)
    register("no-doc")(_NoDoc)
    register("explicit", help="Given help.")(_TwoLines)
    got = {n: registry.entry(kind, n) for n in ("two-lines", "no-doc", "explicit")}
    assert {n: e.help for n, e in got.items()} == {"two-lines": "First line.", "no-doc": "", "explicit": "Given help."}
    assert {e.kind for e in got.values()} == {kind} and got["no-doc"].obj is _NoDoc


def test_a_suite_reports_score_and_pairs_by_mean_score_by_default(monkeypatch):
    monkeypatch.setitem(registry._ENTRIES, "suite", dict(registry._ENTRIES["suite"]))

    class Options(BaseModel):
        pass

    registry.register_suite("default-suite", options=Options)(_TwoLines)
    e = registry.entry("suite", "default-suite")
    assert (e.kind, e.help, e.options, e.headline, e.paired) == ("suite", "First line.", Options, "score",
                                                                 registry.mean_score)


def test_a_preset_has_its_base_suites_options_and_an_unknown_suite_none():
    lm = registry.entry("suite", "lm-eval").options
    assert lm is not None and registry.suite_options("lm-eval:openllm") is lm
    assert registry.suite_options("nope") is None


def test_entries_are_listed_by_kind_then_name(monkeypatch):
    registry.load_all()
    fake = {k: {} for k in registry.KINDS}
    for kind, name in [("backend", "c"), ("judge", "b"), ("method", "z"), ("judge", "a"), ("method", "y")]:
        fake[kind][name] = registry.Entry(kind, name, object, "")
    monkeypatch.setattr(registry, "_ENTRIES", fake)
    assert [(e.kind, e.name) for e in registry.entries()] == [
        ("method", "y"), ("method", "z"), ("judge", "a"), ("judge", "b"), ("backend", "c")]


def test_the_trainers_plug_ins_are_registered_with_a_one_line_help():
    """What `list` shows for the trainers' plug-ins: each name's class, and a help line naming what it
    runs or the name's parameter syntax (read from the registry's table: importing the modules registers them)."""
    from selm_bench.trainers import generation, methods, pairrm, rankers, vllm_backend

    expected = {
        ("method", "sft"): (methods.SFTMethod, "SFTTrainer"),
        ("method", "dpo"): (methods.DPOMethod, "DPOTrainer"),
        ("method", "iterative-dpo"): (methods.IterativeDPOMethod, "best vs worst"),
        ("method", "selm"): (methods.SELMMethod, "y_ref"),
        ("ranker", "oracle"): (rankers.OracleRanker, "verifier"),
        ("ranker", "reward-model"): (rankers.RewardModelRanker, "reward-model:<hub id or path>"),
        ("ranker", "pairrm"): (pairrm.PairRMRanker, "llm-blender/PairRM-hf"),
        ("ranker", "judge"): (rankers.JudgeRanker, "judge:<model>"),
        ("backend", "hf"): (generation.HFBackend, "left padding"),
        ("backend", "vllm"): (vllm_backend.VLLMBackend, "data_parallel_size"),
    }
    for (kind, name), (obj, token) in expected.items():
        entry = registry._ENTRIES[kind][name]
        assert entry.obj is obj and token in entry.help and "\n" not in entry.help, (kind, name)
    assert (methods.SELMMethod.name, methods.SELMMethod.loss, methods.IterativeDPOMethod.name,
            methods.IterativeDPOMethod.loss) == ("selm", "selm", "iterative-dpo", "dpo")
