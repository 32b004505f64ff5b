"""The CLI's smaller contracts: the sweep, compare, train-and-eval, eval and data-pull checks the
bad-input table does not list (exit 2, one `error:` line naming what was wrong, nothing written),
the closed choices Typer checks and --help lists, `--set` lookups, and how `eval` names a model and
finds its run's tiny world. In-process (typer's runner); nothing here trains or loads a model."""

import json
import re
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from selm_bench.harness.cli import _detect_world, _model_name, _set_value, _split, app, check_run_folder, UsageError


def run_cli(args: list[str]) -> tuple[int, list[str], str]:
    result = CliRunner().invoke(app, args)
    return result.exit_code, [line for line in result.stderr.splitlines() if line.strip()], result.stdout


def bad_input(code: int, lines: list[str], *tokens: str) -> bool:
    """Rejected as bad input: exit 2, one `error:` line naming each token."""
    return code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and all(t in lines[0] for t in tokens)


@pytest.fixture
def here(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    return tmp_path


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


SWEEP = ["sweep", "--grid", "online.alpha=0,0.1", "--methods", "selm", "--suites", "tiny-world"]
# (case, argv, what the error line names: the flag and the value at fault)
ROWS = [
    ("sweep: unknown submitit executor", [*SWEEP, "--slurm-executor", "k8s"], ("--slurm-executor", "'k8s'")),
    ("sweep: seeds not integers", [*SWEEP, "--seeds", "0,one"], ("--seeds", "'0,one'")),
    ("sweep: a repeated seed", [*SWEEP, "--seeds", "1,2,1"], ("--seeds", "'1,2,1'")),
    ("sweep: no seed at all", [*SWEEP, "--seeds", " , "], ("--seeds", "' , '")),
    ("compare: unknown format, short flag", ["compare", "a", "b", "-fcsv"], ("--format", "'csv'")),
    ("train-and-eval: unknown launcher, flag=value", ["train-and-eval", "--launcher=slurm"], ("--launcher", "'slurm'")),
    ("compare: threshold not a number", ["compare", "a", "b", "--threshold", "tiny-world/accuracy=lots"],
     ("--threshold", "'tiny-world/accuracy=lots'")),
    ("compare: threshold without =", ["compare", "a", "b", "--threshold", "tiny-world/accuracy"],
     ("--threshold", "'tiny-world/accuracy'")),
    ("compare: negative threshold", ["compare", "a", "b", "--threshold", "tiny-world/accuracy=-0.5"],
     ("--threshold", "'tiny-world/accuracy=-0.5'")),
    ("data pull: one unknown suite among known ones", ["data", "pull", "--suites", "mt-bench,gsm8k", "--to", "pulled"],
     ("gsm8k",)),
]


@pytest.mark.parametrize("case,argv,tokens", ROWS, ids=[r[0] for r in ROWS])
def test_usage_errors_name_the_flag_and_write_nothing(here, case, argv, tokens):
    code, lines, stdout = run_cli(argv)
    assert bad_input(code, lines, *tokens) and stdout == "", (case, lines)
    assert snapshot(here) == {}, f"{case}: something was written"


# (the command with its required arguments, a flag with a closed set of choices, them in --help's order)
CHOICES = [
    (["plan"], "--format", ["text", "json"]),
    (["leaderboard"], "--format", ["table", "markdown", "csv", "json", "html"]),
    (["compare", "a", "b"], "--format", ["text", "json", "markdown", "github"]),
    (SWEEP, "--launcher", ["local", "slurm"]),
    (["train-and-eval"], "--launcher", ["inprocess", "accelerate"]),
]


@pytest.mark.parametrize("command,flag,choices", CHOICES, ids=[f"{c[0][0]} {c[1]}" for c in CHOICES])
def test_closed_choices_are_listed_by_help_and_checked(here, command, flag, choices):
    res = CliRunner(env={"COLUMNS": "300"}).invoke(app, [command[0], "--help"])  # wide: no option line wraps
    listed = [re.findall(r"[\w-]+", m) for line in res.stdout.splitlines() if re.search(rf"{flag}\b", line)
              for m in re.findall(r"[<\[]([\w|-]+)[>\]]", line) if "|" in m]
    assert res.exit_code == 0 and listed == [choices], listed
    # another value is bad input naming the flag and the value, and nothing is written
    code, lines, stdout = run_cli([*command, flag, "nope"])
    assert bad_input(code, lines, flag, "'nope'") and stdout == "", lines
    assert snapshot(here) == {}
    # each listed choice gets past the check (here the command then stops: a bad seed, no runs, no folder)
    for choice in choices:
        code, lines, _ = run_cli([*command, flag, choice, *(["--set", "seed=-1"] if command[0] != "compare" else [])])
        assert not any(line.startswith(f"error: {flag}") for line in lines), (choice, lines)


@pytest.mark.parametrize("case,there,out,named", [
    ("someone else's folder", {"mine/notes.txt": b"keep"}, ["--out", "mine"], "--out mine"),
    ("a file", {"plain": b"x"}, ["--out", "plain"], "--out plain"),
    ("the default <output_dir>/sweeps/<config name>, taken", {"results/sweeps/tiny/notes.txt": b"keep"}, [],
     "--out results/sweeps/tiny"),
], ids=["someone else's folder", "a file", "the default folder"])
def test_sweep_refuses_an_out_that_is_not_a_sweep_folder(here, case, there, out, named):
    for rel, data in there.items():
        (here / rel).parent.mkdir(parents=True, exist_ok=True)
        (here / rel).write_bytes(data)
    code, lines, _ = run_cli([*SWEEP, *out])
    assert bad_input(code, lines, named), (case, lines)
    assert snapshot(here) == there  # untouched


# (argv, what it calls that fails here: "module:attribute"), every command but eval (see the next tests)
FAILING = [
    (["list"], "selm_bench.harness.core.registry:entries"),
    (["plan"], "selm_bench.harness.run.plan:describe"),
    (["leaderboard", "-r", "."], "selm_bench.harness.reports.leaderboard:collect_many"),
    (["report", "."], "selm_bench.harness.reports.report:write_report"),
    (["compare", "a", "b"], "selm_bench.harness.reports.compare:parse_side"),
    (["data", "pull", "--to", "pulled"], "selm_bench.harness.datapull:pull"),
    (["sweep", "--grid", "online.alpha=0,0.1"], "selm_bench.harness.run.sweep:sweep"),
    (["train-and-eval"], "selm_bench.harness.run.pipeline:train_and_eval"),
    (["import", "--suite", "mt-bench", "judgments.jsonl"], "selm_bench.harness.core.registry:names"),
    (["judge", "ev"], "selm_bench.harness.core.specs:from_json"),
]


@pytest.mark.parametrize("argv,fails", FAILING, ids=[" ".join(f[0][:2]) for f in FAILING])
def test_an_unexpected_failure_is_one_line_and_exit_1(here, monkeypatch, argv, fails):
    """Any command: a failure that is not bad input is one `error:` line with its message, exit 1,
    and the run folder it held (report, judge) is let go: no lock file stays."""
    import importlib

    from selm_bench.harness.core.runlock import RUN_LOCK

    def boom(*args, **kwargs):
        raise RuntimeError("boom")

    module, attr = fails.split(":")
    monkeypatch.setattr(importlib.import_module(module), attr, boom)
    (here / "judgments.jsonl").write_text("")
    (here / "ev" / "mt-bench").mkdir(parents=True)
    for name in ("metrics.json", "spec.json"):
        (here / "ev" / "mt-bench" / name).write_text("{}")
    code, lines, stdout = run_cli(argv)
    assert (code, lines, stdout) == (1, ["error: boom"], ""), argv
    assert not list(here.rglob(RUN_LOCK))


def test_eval_data_dir_and_world_checks(here):
    (here / "file").write_text("x")
    (here / "world").mkdir()
    (here / "world" / "dev.jsonl").write_text("")
    code, lines, _ = run_cli(["eval", "--model", "m", "--suites", "tiny-world", "--data-dir", "file"])
    assert bad_input(code, lines, "--data-dir file")
    code, lines, _ = run_cli(["eval", "--model", "m", "--suites", "tiny-world", "--world", "world"])
    assert bad_input(code, lines, "--world world", "eval.jsonl")
    assert sorted(snapshot(here)) == ["file", "world/dev.jsonl"]


def test_run_folder_with_a_corrupt_config(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "manifest.json").write_text("{}")
    (run / "config.yaml").write_text("name: [tiny\n")
    with pytest.raises(UsageError) as e:
        check_run_folder(run, "tiny")
    assert str(e.value).startswith(f"--out {run}: ") and "config.yaml" in str(e.value)


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
    with pytest.raises(UsageError) as e:  # a run of another config
        check_run_folder(run, "other")
    assert str(e.value).startswith(f"--out {run}: ") and "'tiny'" in str(e.value) and "'other'" in str(e.value)
    (run / "manifest.json").unlink()
    with pytest.raises(UsageError) as e:  # not empty, and no manifest: not a run folder
        check_run_folder(run, "tiny")
    assert str(e.value).startswith(f"--out {run}: ")


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
    assert bad_input(code, lines, "--num-processes", "--launcher")


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


def test_eval_judge_from_set_overrides_the_worlds_oracle(here, tiny_model, tiny_world):
    # with --world the default judge is the oracle; --set eval.judge picks the OpenAI judge, which tiny-mode
    # MT-Bench refuses (its answers are graded by the verifier)
    code, lines, _ = run_cli(["eval", "--model", str(tiny_model), "--suites", "mt-bench", "--world", str(tiny_world),
                              "--set", "eval.judge=openai:gpt-4", "--out", "ev"])
    assert bad_input(code, lines, "mt-bench", "'openai:gpt-4'")
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


def test_eval_preflight_ignores_the_configs_own_model_and_prompts(here, tiny_model, tiny_world, monkeypatch):
    """`eval --config` takes only settings from the config: its model.pretrained and data.prompts (a hub model
    and dataset not in the cache, offline) are not what `eval` reads, so they do not stop it."""
    from selm_bench.evals.base import SuiteResult
    from selm_bench.harness.run import evaluate

    def stand_in_run_suite(ctx, suite, method=None):
        result = SuiteResult(metrics={"accuracy": 0.5})
        evaluate.write_suite_result(ctx.out_dir, suite, ctx, result, method)
        return result

    monkeypatch.setattr(evaluate, "run_suite", stand_in_run_suite)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # a valid config on hub data must start DPO from model.pretrained and rank without the tiny world's oracle
    Path("c.yaml").write_text(yaml.safe_dump({"name": "other", "model": {"pretrained": "nobody/uncached-model"},
                                              "methods": ["dpo"], "dpo": {"start": "base"},
                                              "online": {"ranker": "pairrm"}, "data": {"prompts": "nobody/uncached-prompts"}}))
    code, lines, _ = run_cli(["eval", "--model", str(tiny_model), "--suites", "tiny-world", "--world", str(tiny_world),
                              "--config", "c.yaml", "--out", "ev"])
    assert code == 0, lines
    assert json.loads((here / "ev" / "manifest.json").read_text())["stages"]["tiny-world"]["status"] == "done"
