"""`selm-bench eval` runs each suite as an eval stage through the pipeline, as train-and-eval does:
a done record per suite with its env in the manifest, atomic suite folders, a rerun that skips the
suites done, a stop (nothing written) when a finished suite's libraries changed, and a crashed
suite left as a `failed` record only, redone by the next run. In-process (typer's runner)."""

import dataclasses
import json
import shutil
from pathlib import Path

import pytest

from selm_bench.harness.core import registry
from selm_bench.harness.core.specs import from_json, spec_key
from selm_bench.harness.run.staleness import stage_env
from support.cli import invoke


def cli(*args) -> tuple[int, list[str]]:
    result = invoke(*args)
    return result.exit_code, [line for line in result.stderr.splitlines() if line.strip()]


def files(root: Path) -> dict[str, tuple[bytes, int]]:
    """Every file's bytes and mtime (the run folder's lock file aside: it exists while a command runs)."""
    return {str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != ".lock"}


def stages(out: Path) -> dict[str, dict]:
    return json.loads((out / "manifest.json").read_text())["stages"]


@pytest.fixture(scope="module")
def evaluate(tiny_model, tiny_world):
    """argv of `selm-bench eval` on the tiny model into `out`, extra flags after."""
    def argv(out: Path, suites: str = "tiny-world", *extra: str) -> list:
        return ["eval", "--model", tiny_model, "--suites", suites, "--world", tiny_world, "--out", out,
                "--set", "tiny-world.limit=4", "--set", "mt-bench.limit=1", *extra]
    return argv


@pytest.fixture(scope="module")
def done(tmp_path_factory, evaluate):
    out = tmp_path_factory.mktemp("eval") / "out"
    code, lines = cli(*evaluate(out))
    assert code == 0, lines
    return out


def copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_each_suite_is_a_stage_with_a_done_record_and_its_env(done, tiny_model):
    rec = stages(done)["tiny-world"]
    spec = from_json((done / "tiny-world" / "spec.json").read_text())
    assert (spec.kind, spec.suite, spec.name) == ("eval", "tiny-world", tiny_model.name)
    assert rec["status"] == "done" and rec["key"] == spec_key(spec)
    assert rec["env"] == stage_env(spec) and rec["env"]["packages"]["torch"]
    assert json.loads((done / "tiny-world" / "stage.json").read_text())["key"] == rec["key"]
    # the eval folder's layout: <suite>/metrics.json and items.jsonl, the leaderboard beside them
    metrics = json.loads((done / "tiny-world" / "metrics.json").read_text())
    assert (metrics["suite"], metrics["checkpoint"], metrics["method"]) == ("tiny-world", tiny_model.name, "external")
    assert len((done / "tiny-world" / "items.jsonl").read_text().splitlines()) == 4
    row = json.loads((done / "leaderboard.json").read_text())[0]
    assert (row["checkpoint"], row["method"], row["tiny-world/accuracy"]) == (tiny_model.name, "external",
                                                                             metrics["metrics"]["accuracy"])
    assert not [p for p in done.iterdir() if p.name.startswith(".") and p.name != ".lock"]  # no temp folders


def test_a_rerun_skips_the_suites_done(done, evaluate, tmp_path):
    out = copy(done, tmp_path / "out")
    before = files(out / "tiny-world")
    code, lines = cli(*evaluate(out))
    assert code == 0 and any(line.startswith("skip ") and "tiny-world" in line for line in lines), lines
    assert files(out / "tiny-world") == before
    assert stages(out)["tiny-world"]["status"] == "done"


def test_a_changed_library_stops_the_rerun_until_force_or_keep_stale(done, evaluate, tmp_path):
    out = copy(done, tmp_path / "out")
    record = out / "tiny-world" / "stage.json"
    rec = json.loads(record.read_text())
    rec["env"]["packages"]["torch"] = "0.0.1"
    record.write_text(json.dumps(rec))
    before = files(out)
    code, lines = cli(*evaluate(out))
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: stage eval ")
    assert "tiny-world" in lines[0] and "stale" in lines[0] and "torch 0.0.1" in lines[0]  # the suite and what changed
    assert files(out) == before  # nothing written
    # --keep-stale: the old result stays, and the manifest says it was kept
    code, lines = cli(*evaluate(out, "tiny-world", "--keep-stale"))
    assert code == 0, lines
    assert files(out / "tiny-world") == {k[len("tiny-world/"):]: v for k, v in before.items()
                                         if k.startswith("tiny-world/")}
    assert list(json.loads((out / "manifest.json").read_text())["kept_stale"]) == ["tiny-world"]
    # --force: redone, recorded with this installation's env
    code, lines = cli(*evaluate(out, "tiny-world", "--force"))
    assert code == 0 and any(line.startswith("done ") for line in lines), lines
    assert json.loads(record.read_text())["env"]["packages"]["torch"] != "0.0.1"


def test_a_crashed_suite_leaves_a_failed_record_and_no_folder_and_is_redone(done, evaluate, tmp_path, monkeypatch):
    out = copy(done, tmp_path / "out")
    real = registry.entry("suite", "mt-bench")

    def crashes(ctx):
        (ctx.out_dir / "model_answer").mkdir(parents=True)
        (ctx.out_dir / "model_answer" / "half.jsonl").write_text('{"question_id": 1}\n')  # half its files
        raise RuntimeError("suite crashed")

    monkeypatch.setitem(registry._ENTRIES["suite"], "mt-bench", dataclasses.replace(real, obj=crashes))
    code, lines = cli(*evaluate(out, "tiny-world,mt-bench"))
    assert code == 1 and lines[-1] == "error: suite crashed"
    assert {name: rec["status"] for name, rec in stages(out).items()} == {"tiny-world": "done", "mt-bench": "failed"}
    assert not (out / "mt-bench").exists()
    assert not [p for p in out.iterdir() if p.name.startswith(".") and p.name != ".lock"]  # no temp folder either
    monkeypatch.undo()
    code, lines = cli(*evaluate(out, "tiny-world,mt-bench"))
    assert code == 0, lines
    assert any(line.startswith("skip ") and "tiny-world" in line for line in lines)
    assert any(line.startswith("done ") and "mt-bench" in line for line in lines)
    assert stages(out)["mt-bench"]["status"] == "done" and (out / "mt-bench" / "metrics.json").is_file()


def test_answers_saved_with_no_judge_are_judged_by_a_rerun_or_by_judge(evaluate, tmp_path):
    first = tmp_path / "a"
    code, lines = cli(*evaluate(first, "mt-bench", "--no-judge"))
    assert code == 0, lines
    assert "score" not in json.loads((first / "mt-bench" / "metrics.json").read_text())["metrics"]
    assert stages(first)["mt-bench"]["unjudged"] is True
    second = copy(first, tmp_path / "b")
    code, lines = cli(*evaluate(first, "mt-bench", "--no-judge"))  # still answers only: skipped
    assert code == 0 and any(line.startswith("skip ") for line in lines), lines
    code, lines = cli(*evaluate(first, "mt-bench"))  # without --no-judge: its saved answers are judged
    assert code == 0 and any(line.startswith("judged ") for line in lines), lines
    assert "unjudged" not in stages(first)["mt-bench"]
    code, lines = cli("judge", second)  # or `selm-bench judge` on the folder
    assert code == 0, lines
    judged = [json.loads((out / "mt-bench" / "metrics.json").read_text())["metrics"] for out in (first, second)]
    assert judged[0] == judged[1] and judged[0]["score"] is not None
