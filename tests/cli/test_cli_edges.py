"""The CLI's smaller contracts, each line in full: the sweep, compare, judge, eval and data-pull
checks the bad-input table does not list, `--set` lookups, and how `eval` names a model and finds
its run's tiny world. In-process (typer's runner); nothing here trains or loads a model."""

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from selm_bench.harness.cli import _detect_world, _model_name, _set_value, _split, app, check_run_folder, UsageError


def run_cli(args: list[str]) -> tuple[int, list[str], str]:
    result = CliRunner().invoke(app, args)
    return result.exit_code, [line for line in result.stderr.splitlines() if line.strip()], result.stdout


@pytest.fixture
def here(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    return tmp_path


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


SWEEP = ["sweep", "--grid", "online.alpha=0,0.1", "--methods", "selm", "--suites", "tiny-world"]
ROWS = [
    ("sweep: unknown launcher", [*SWEEP, "--launcher", "pbs"], "--launcher: expected local or slurm, got 'pbs'"),
    ("sweep: unknown submitit executor", [*SWEEP, "--slurm-executor", "k8s"],
     "--slurm-executor: expected slurm or local, got 'k8s'"),
    ("sweep: seeds not integers", [*SWEEP, "--seeds", "0,one"], "--seeds '0,one': expected integers, e.g. 0,1,2"),
    ("sweep: a repeated seed", [*SWEEP, "--seeds", "1,2,1"], "--seeds '1,2,1': expected distinct integers, e.g. 0,1,2"),
    ("sweep: no seed at all", [*SWEEP, "--seeds", " , "], "--seeds ' , ': expected distinct integers, e.g. 0,1,2"),
    ("compare: unknown format", ["compare", "a", "b", "--format", "csv"], "--format: expected text, json, markdown or github, got 'csv'"),
    ("compare: threshold not a number", ["compare", "a", "b", "--threshold", "tiny-world/accuracy=lots"],
     "--threshold 'tiny-world/accuracy=lots': expected METRIC=DELTA with a number, e.g. tiny-world/accuracy=0.01"),
    ("compare: threshold without =", ["compare", "a", "b", "--threshold", "tiny-world/accuracy"],
     "--threshold 'tiny-world/accuracy': expected METRIC=DELTA with a number, e.g. tiny-world/accuracy=0.01"),
    ("compare: negative threshold", ["compare", "a", "b", "--threshold", "tiny-world/accuracy=-0.5"],
     "--threshold 'tiny-world/accuracy=-0.5': expected METRIC=DELTA with DELTA >= 0"),
    ("data pull: one unknown suite among known ones", ["data", "pull", "--suites", "mt-bench,gsm8k", "--to", "pulled"],
     "gsm8k: not a suite with data to pull (pullable: mt-bench, alpaca-eval, brainteaser)"),
]


@pytest.mark.parametrize("case,argv,message", ROWS, ids=[r[0] for r in ROWS])
def test_usage_errors_in_full(here, case, argv, message):
    code, lines, stdout = run_cli(argv)
    assert (code, lines, stdout) == (2, [f"error: {message}"], ""), case
    assert snapshot(here) == {}, f"{case}: something was written"


def test_sweep_out_that_is_someone_elses_folder(here):
    (here / "mine").mkdir()
    (here / "mine" / "notes.txt").write_text("keep")
    code, lines, _ = run_cli([*SWEEP, "--out", "mine"])
    assert (code, lines) == (2, ["error: --out mine: not empty and not a sweep folder; choose another --out"])
    assert snapshot(here) == {"mine/notes.txt": b"keep"}


def test_sweep_out_that_is_a_file(here):
    (here / "plain").write_text("x")
    code, lines, _ = run_cli([*SWEEP, "--out", "plain"])
    assert (code, lines) == (2, ["error: --out plain: not empty and not a sweep folder; choose another --out"])


def test_judge_folder_without_results(here):
    (here / "empty").mkdir()
    code, lines, _ = run_cli(["judge", "empty"])
    assert (code, lines) == (2, ["error: empty: no suite results (metrics.json) found"])
    code, lines, _ = run_cli(["judge", "absent"])
    assert (code, lines) == (2, ["error: absent: no suite results (metrics.json) found"])


def test_judge_folder_with_only_unjudged_suites(here):
    # a tiny-world result (no judge) and a metrics.json without a recorded context: nothing to judge
    (here / "ev" / "tiny-world").mkdir(parents=True)
    (here / "ev" / "tiny-world" / "metrics.json").write_text(json.dumps({"suite": "tiny-world", "context": {}}))
    (here / "ev" / "old").mkdir()
    (here / "ev" / "old" / "metrics.json").write_text(json.dumps({"suite": "mt-bench"}))
    before = snapshot(here)
    code, lines, _ = run_cli(["judge", "ev"])
    assert (code, lines) == (2, ["error: ev: nothing to judge (no mt-bench or alpaca-eval answers)"])
    assert snapshot(here) == before


def test_eval_data_dir_and_world_checks(here):
    (here / "file").write_text("x")
    (here / "world").mkdir()
    (here / "world" / "dev.jsonl").write_text("")
    code, lines, _ = run_cli(["eval", "--model", "m", "--suites", "tiny-world", "--data-dir", "file"])
    assert (code, lines) == (2, ["error: --data-dir file: not a directory"])
    code, lines, _ = run_cli(["eval", "--model", "m", "--suites", "tiny-world", "--world", "world"])
    assert (code, lines) == (2, ["error: --world world: no eval.jsonl there (pass a run's world/data folder)"])
    assert sorted(snapshot(here)) == ["file", "world/dev.jsonl"]


def test_run_folder_with_a_corrupt_config(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "manifest.json").write_text("{}")
    (run / "config.yaml").write_text("name: [tiny\n")
    with pytest.raises(UsageError) as e:
        check_run_folder(run, "tiny")
    assert str(e.value) == f"--out {run}: its config.yaml is corrupt; choose another --out"


def test_run_folder_checks_pass_for_the_same_config_and_empty_or_nameless_folders(tmp_path):
    run = tmp_path / "run"
    check_run_folder(run, "tiny")  # absent: fine
    run.mkdir()
    check_run_folder(run, "tiny")  # empty: fine
    (run / "manifest.json").write_text("{}")
    (run / "config.yaml").write_text(yaml.safe_dump({"name": "tiny"}))
    check_run_folder(run, "tiny")
    (run / "config.yaml").write_text("")  # no name recorded: reused
    check_run_folder(run, "other")
    (run / "config.yaml").write_text(yaml.safe_dump({"name": "tiny"}))
    with pytest.raises(UsageError) as e:
        check_run_folder(run, "other")
    assert str(e.value) == f"--out {run}: a run of config 'tiny', not 'other'; choose another --out"
    (run / "manifest.json").unlink()
    with pytest.raises(UsageError) as e:
        check_run_folder(run, "tiny")
    assert str(e.value) == f"--out {run}: not empty and not a selm-bench run folder; choose another --out"


def test_set_value_is_the_last_one_for_the_key():
    sets = ["launch.launcher=slurm", " launch.launcher = accelerate ", "launch.launchers=x", "seed=3"]
    assert _set_value(sets, "launch.launcher") == "accelerate"
    assert _set_value(sets, "seed") == "3"
    assert _set_value(sets, "eval.judge") is None
    assert _set_value(None, "seed") is None
    assert _set_value(["seed"], "seed") == ""  # no "=": an empty value, the config loader rejects it later


def test_last_set_decides_whether_launcher_flags_are_allowed(here):
    code, lines, _ = run_cli(["train-and-eval", "--set", "launch.launcher=accelerate", "--set", "launch.launcher=local",
                              "--num-processes", "2"])
    assert (code, lines) == (2, ["error: --accelerate-config and --num-processes need --launcher accelerate"])


def test_split_trims_and_drops_empty_items():
    assert _split(None) is None
    assert _split([]) is None
    assert _split(["a, b", ",c,", " "]) == ["a", "b", "c"]


@pytest.mark.parametrize("model,name", [
    ("results/tiny/checkpoints/selm/iter-2/model", "selm/iter-2"),
    ("results/tiny/checkpoints/sft/model", "sft"),
    ("elsewhere/dpo/model", "dpo"),
    ("HuggingFaceH4/zephyr-7b-beta", "zephyr-7b-beta"),
    ("/", "/"),
])
def test_model_name_labels(model, name):
    assert _model_name(model) == name


def test_detect_world_finds_the_nearest_run(tmp_path):
    run = tmp_path / "run"
    (run / "world" / "data").mkdir(parents=True)
    (run / "world" / "data" / "eval.jsonl").write_text("")
    model = run / "checkpoints" / "sft" / "model"
    model.mkdir(parents=True)
    assert _detect_world(str(model)) == (run / "world" / "data").resolve()
    assert _detect_world(str(tmp_path / "other" / "model")) is None


def test_sweep_default_folder_is_results_sweeps_name(here):
    (here / "results" / "sweeps" / "tiny").mkdir(parents=True)
    (here / "results" / "sweeps" / "tiny" / "notes.txt").write_text("keep")
    code, lines, _ = run_cli(SWEEP)  # no --out: <output_dir>/sweeps/<config name>, default results/ and tiny
    assert (code, lines) == (2, ["error: --out results/sweeps/tiny: not empty and not a sweep folder; choose another --out"])


def test_eval_judge_from_set_overrides_the_worlds_oracle(here, tiny_model, tiny_world):
    # with --world the default judge is the oracle; --set eval.judge picks the OpenAI judge, which tiny-mode
    # MT-Bench refuses (its answers are graded by the verifier)
    code, lines, _ = run_cli(["eval", "--model", str(tiny_model), "--suites", "mt-bench", "--world", str(tiny_world),
                              "--set", "eval.judge=openai:gpt-4", "--out", "ev"])
    assert code != 0 and len(lines) == 1
    assert lines[0].startswith("error: before any stage: mt-bench on the tiny world is graded by the oracle judge, "
                               "not 'openai:gpt-4'")
    assert not (here / "ev").exists()


def test_eval_records_running_then_done_or_failed(here, tiny_model, tiny_world, monkeypatch):
    # each suite is an eval stage (harness/run/pipeline.py): its record's key is its spec's
    from selm_bench.evals.base import SuiteResult
    from selm_bench.harness.run import evaluate

    seen, out = [], {"dir": "ev"}

    def stand_in_run_suite(ctx, suite, method=None):
        stages = json.loads((here / out["dir"] / "manifest.json").read_text())["stages"]
        seen.append({name: s["status"] for name, s in stages.items()})
        if suite == "mt-bench":
            raise RuntimeError("suite broke")
        result = SuiteResult(metrics={"accuracy": 0.5, "accuracy_stderr": 0.125})
        evaluate.write_suite_result(ctx.out_dir, suite, ctx, result, method)
        return result

    def keys(folder: str) -> dict[str, tuple[str, str]]:
        from selm_bench.harness.core.specs import from_json, spec_key

        stages = json.loads((here / folder / "manifest.json").read_text())["stages"]
        return {name: (s["status"], s["key"] == spec_key(from_json((here / folder / name / "spec.json").read_text()))
                       if (here / folder / name / "spec.json").is_file() else None) for name, s in stages.items()}

    monkeypatch.setattr(evaluate, "run_suite", stand_in_run_suite)
    code, lines, _ = run_cli(["eval", "--model", str(tiny_model), "--suites", "tiny-world", "--world", str(tiny_world),
                              "--out", "ev"])
    assert code == 0 and lines[0].startswith(f"done eval {tiny_model.name} tiny-world in ")
    assert lines[1].split() == [tiny_model.name, "tiny-world:", "accuracy=0.500,", "accuracy_stderr=0.125"]
    assert seen == [{"tiny-world": "running"}]
    assert keys("ev") == {"tiny-world": ("done", True)}
    # a second suite fails after the first finished: the folder stays, the failure is recorded
    seen.clear()
    out["dir"] = "ev2"
    code, lines, _ = run_cli(["eval", "--model", str(tiny_model), "--suites", "tiny-world,mt-bench", "--world",
                              str(tiny_world), "--out", "ev2"])
    assert code == 1 and lines[-1] == "error: suite broke"
    assert seen == [{"tiny-world": "running"}, {"tiny-world": "done", "mt-bench": "running"}]
    assert keys("ev2") == {"tiny-world": ("done", True), "mt-bench": ("failed", None)}
    # the first suite fails in a new folder: nothing is left behind
    out["dir"] = "ev3"
    code, lines, _ = run_cli(["eval", "--model", str(tiny_model), "--suites", "mt-bench", "--world", str(tiny_world),
                              "--out", "ev3"])
    assert (code, lines) == (1, ["error: suite broke"]) and not (here / "ev3").exists()
