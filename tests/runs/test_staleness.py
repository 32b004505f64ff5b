"""No stale stages: a change of the code a stage runs or of a library it uses is detected on
rerun (stop with one line, or --force / --keep-stale); a comment or docstring change is not."""

import json

import pytest

import yaml

from selm_bench.harness.run.staleness import code_hash, differences
from support.micro import micro
from support.cli import run as cli

MICRO = micro("micro-stale",
              methods=["sft"],
              suites=["tiny-world"],
              sft={"epochs": 1, "batch_size": 16},
              suite_options={"tiny-world": {"max_new_tokens": 4}})


def test_code_hash_ignores_comments_and_docstrings(tmp_path):
    a = tmp_path / "m.py"
    a.write_text('"""Doc."""\nimport os\n\ndef f(x):\n    """Say."""\n    return x + 1  # add\n')
    base = code_hash([a])
    a.write_text('"""Other doc."""\nimport os\n\n\ndef f(x):\n    # a comment\n    return x + 1\n')
    assert code_hash([a]) == base
    a.write_text('"""Doc."""\nimport os\n\ndef f(x):\n    return x + 2\n')
    assert code_hash([a]) != base


def test_differences_in_words():
    now = {"code": "c1", "packages": {"torch": "2.13.0", "transformers": "5.24.0"}}
    assert differences(None, now) == [] and differences(now, now) == []
    old = {"code": "c0", "packages": {"torch": "2.13.0", "transformers": "5.17.0"}}
    assert differences(old, now) == ["the project's code it runs", "transformers 5.17.0 -> 5.24.0"]


def _changes(line: str) -> list[str]:
    """The old side of each "(package old -> new; ...)" difference a stale line lists."""
    inside = line.split("(", 1)[1].split(")", 1)[0]
    return [d.split(" -> ")[0] for d in inside.split("; ")]


def test_rerun_after_a_library_change_stops_then_force_or_keep(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(MICRO))
    out = tmp_path / "run"
    first = cli("train-and-eval", "--config", str(cfg), "--out", str(out))
    assert first.returncode == 0, first.stderr[-2000:]
    record = out / "checkpoints/sft/model/stage.json"
    rec = json.loads(record.read_text())
    assert rec["env"]["packages"]["trl"] and rec["env"]["code"]
    rec["env"]["packages"]["transformers"] = "4.0.0"  # as if made under another installation
    record.write_text(json.dumps(rec))
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}

    stale = cli("train-and-eval", "--config", str(cfg), "--out", str(out))
    assert stale.returncode == 2 and stale.stderr.count("\n") == 1, stale.stderr
    assert stale.stderr.startswith("error: stage sft is stale (") and "more" not in stale.stderr  # one stale stage
    assert _changes(stale.stderr) == ["transformers 4.0.0"]
    assert "--force" in stale.stderr and "--keep-stale" in stale.stderr  # the two ways on
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == before  # nothing written
    rec["env"]["packages"]["torch"] = "1.0.0"  # two differences in one stage, and a second stale stage
    record.write_text(json.dumps(rec))
    eval_record = out / "evals/sft/tiny-world/stage.json"
    other = json.loads(eval_record.read_text())
    other["env"]["packages"]["transformers"] = "4.0.0"
    eval_record.write_text(json.dumps(other))
    two = cli("train-and-eval", "--config", str(cfg), "--out", str(out))
    assert two.returncode == 2 and two.stderr.count("\n") == 1, two.stderr
    assert two.stderr.startswith("error: stage sft is stale (") and "and 1 more" in two.stderr
    assert _changes(two.stderr) == ["torch 1.0.0", "transformers 4.0.0"]

    kept = cli("train-and-eval", "--config", str(cfg), "--out", str(out), "--keep-stale")
    assert kept.returncode == 0 and "skip sft" in kept.stderr
    assert "checkpoints/sft/model" in json.loads((out / "manifest.json").read_text())["kept_stale"]

    redo = cli("train-and-eval", "--config", str(cfg), "--out", str(out), "--force")
    assert redo.returncode == 0 and "done sft" in redo.stderr
    assert json.loads(record.read_text())["env"]["packages"]["transformers"] != "4.0.0"
    again = cli("train-and-eval", "--config", str(cfg), "--out", str(out))
    assert again.returncode == 0 and "skip sft" in again.stderr  # an unchanged rerun keeps everything


def test_each_stage_records_the_libraries_it_runs():
    """Issue 10's list: torch and transformers everywhere; trl, accelerate, datasets for training;
    lm-eval, alpaca-eval and fschat for evaluation."""
    from selm_bench.harness.core.config import load_config
    from selm_bench.harness.run.stages import plan
    from selm_bench.harness.run.staleness import stage_env

    stages, evals = plan(load_config(None, sets=["methods=[sft]", "suites=[tiny-world]"]))
    sft = stage_env(next(s.spec for s in stages if s.name == "sft"))["packages"]
    assert set(sft) == {"torch", "transformers", "trl", "accelerate", "datasets"}
    ev = stage_env(evals[0].spec)["packages"]
    assert {"torch", "transformers", "lm_eval", "alpaca_eval", "fschat"} <= set(ev) and "trl" not in ev


def test_code_hash_details(tmp_path):
    a, b = tmp_path / "a.py", tmp_path / "b.py"
    a.write_text('class C:\n    """Doc."""\n\n\ndef f():\n    """Only a docstring."""\n')
    b.write_text("x = 1\n")
    base = code_hash([a, b])
    assert code_hash([b, a]) == base  # order of the list does not matter
    assert len(base) == 16
    a.write_text("class C:\n    pass\n\n\ndef f():\n    pass\n")  # docstring-only bodies are `pass`
    assert code_hash([a, b]) == base
    a.write_text("class C:\n    pass\n\n\ndef f():\n    return None\n")
    assert code_hash([a, b]) != base
    c = tmp_path / "c.py"
    c.write_text("x = 1\n")
    a.write_text("class C:\n    pass\n\n\ndef f():\n    pass\n")
    assert code_hash([a, c]) != base  # the same code under another file name is another module
    s = tmp_path / "s.py"
    s.write_text('x = "not a docstring"\n"""Neither is this."""\n')
    first = code_hash([s])
    s.write_text('x = "not a docstring"\n"""Nor this, changed."""\n')
    assert code_hash([s]) != first  # only a leading string is a docstring


def test_differences_name_absent_packages_and_each_kind_has_its_libraries():
    from selm_bench.harness.run.staleness import KIND_ENTRY, KIND_PACKAGES, module_file

    now = {"code": "c", "packages": {"torch": "2.13.0", "vllm": None, "openai": "1.0"}}
    old = {"code": "c", "packages": {"torch": "2.13.0", "vllm": "0.6.0"}}
    assert differences(old, now) == ["vllm 0.6.0 -> absent", "openai absent -> 1.0"]
    assert differences({}, now) == []
    assert sorted(KIND_PACKAGES) == sorted(KIND_ENTRY) == ["data", "eval", "generate", "preference", "rank", "sft", "world"]
    assert all(module_file(m) is not None for m in KIND_ENTRY.values())
    assert KIND_PACKAGES["generate"] == ("vllm",) and KIND_PACKAGES["rank"] == ("openai",)
    assert KIND_PACKAGES["data"] == ("datasets",)
    assert KIND_PACKAGES["eval"] == ("lm_eval", "alpaca_eval", "fschat", "openai", "vllm")


def _specs():
    """One spec per stage kind, from real plans: the tiny default (sft, dpo, selm; tiny-world and
    mt-bench evals) and a real-prompt plan with a PairRM ranker."""
    from selm_bench.harness.core.config import load_config
    from selm_bench.harness.run.stages import plan

    stages, evals = plan(load_config(None, sets=["methods=[sft, dpo, selm]", "suites=[tiny-world, mt-bench]",
                                                 "online.iterations=1"]))
    by = {s.spec.kind: s.spec for s in stages}
    by["eval tiny-world"] = next(e.spec for e in evals if e.spec.suite == "tiny-world")
    by["eval mt-bench"] = next(e.spec for e in evals if e.spec.suite == "mt-bench")
    real, _ = plan(load_config(None, sets=["model.pretrained=someorg/model", "data.prompts=someorg/prompts", "methods=[selm]",
                                           "online.start=base", "online.ranker=pairrm", "suites=[]", "online.iterations=1"]))
    by["data"] = next(s.spec for s in real if s.spec.kind == "data")
    by["rank pairrm"] = next(s.spec for s in real if s.spec.kind == "rank")
    return by


@pytest.mark.parametrize("module, stale", [
    # hand-derived from what each module does, not from the closure code under test
    ("trainers/train.py", {"sft", "preference", "generate", "rank", "rank pairrm"}),  # online.py: train.user()
    ("trainers/losses.py", {"sft", "preference", "generate", "rank", "rank pairrm"}),
    ("trainers/pairrm.py", {"rank pairrm"}),  # only the stage whose ranker it is
    ("trainers/rankers.py", {"rank"}),  # the tiny world's oracle ranker
    ("evals/mt_bench.py", {"eval mt-bench"}),  # not the tiny-world eval
    ("evals/tiny_world.py", {"eval tiny-world"}),
    ("harness/data.py", {"data"}),
    ("harness/core/specs.py", {"data", "sft", "preference", "generate", "rank", "rank pairrm", "eval tiny-world", "eval mt-bench"}),
    ("harness/cli.py", set()),  # commands do not change what a stage computes
    ("harness/reports/leaderboard.py", set()),
])
def test_editing_a_module_stales_exactly_the_stages_that_run_it(tmp_path, module, stale):
    """In a temporary copy of the code, one module gets a new statement; exactly the stages whose
    code imports it (at any depth, or as the plug-in the spec names) change their code hash."""
    import shutil

    from selm_bench.harness.run.staleness import REPO, stage_env

    for d in ("harness", "trainers", "evals"):
        shutil.copytree(REPO / d, tmp_path / d)
    specs = _specs()
    before = {name: stage_env(spec, tmp_path)["code"] for name, spec in specs.items()}
    with open(tmp_path / module, "a") as f:
        f.write("\n_EDITED = 1\n")
    from selm_bench.harness.run import staleness

    staleness._code.cache_clear()
    after = {name: stage_env(spec, tmp_path)["code"] for name, spec in specs.items()}
    assert {n for n in specs if before[n] != after[n]} == stale


def _installed(dist: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(dist.replace("_", "-"))
    except metadata.PackageNotFoundError:
        return None


def test_an_eval_records_its_suites_own_code_and_the_eval_libraries():
    from types import SimpleNamespace

    from selm_bench.harness.run.staleness import stage_env

    env = stage_env(SimpleNamespace(kind="eval", suite="lm-eval:openllm"))
    libs = ["torch", "transformers", "lm_eval", "alpaca_eval", "fschat", "openai", "vllm"]
    assert list(env) == ["code", "packages"] and list(env["packages"]) == libs
    assert env["packages"] == {p: _installed(p) for p in libs}
    others = {stage_env(SimpleNamespace(kind="eval", suite=s))["code"] for s in ("tiny-world", "mt-bench", "nope")}
    assert env["code"] not in others and len(others) == 3  # each suite's own module counts; an unknown one adds none


def test_a_distribution_named_with_underscores_has_its_version_recorded():
    from importlib import metadata

    from selm_bench.harness.run.staleness import _version

    assert _version("huggingface_hub") == metadata.version("huggingface-hub")
    assert _version("no_such_dist_xyz") is None


def test_a_stage_naming_the_vllm_backend_is_staled_by_an_edit_of_that_backend(tmp_path):
    """A generate or eval stage whose spec names backend vllm counts the vLLM backend module in its
    code: editing trainers/vllm_backend.py (in a temporary copy) changes its code hash, while the
    same stages with backend hf (which never load that module) keep theirs."""
    import shutil
    from types import SimpleNamespace

    from selm_bench.harness.run import staleness

    for d in ("harness", "trainers", "evals"):
        shutil.copytree(staleness.REPO / d, tmp_path / d)
    specs = {(kind, backend): SimpleNamespace(kind=kind, backend=backend, suite="tiny-world" if kind == "eval" else None)
             for kind in ("generate", "eval") for backend in ("hf", "vllm")}
    staleness._code.cache_clear()
    before = {k: staleness.stage_env(s, tmp_path)["code"] for k, s in specs.items()}
    with open(tmp_path / "trainers" / "vllm_backend.py", "a") as f:
        f.write("\n_EDITED = 1\n")
    staleness._code.cache_clear()
    after = {k: staleness.stage_env(s, tmp_path)["code"] for k, s in specs.items()}
    assert {k for k in specs if before[k] != after[k]} == {("generate", "vllm"), ("eval", "vllm")}
