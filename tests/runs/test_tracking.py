"""Experiment tracking: `report_to` sends every training stage's TRL logs and each
checkpoint's eval metrics and the leaderboard to TensorBoard, Weights & Biases, MLflow and Trackio,
all under the run folder; it is a runtime field, so it changes no stage key.

A micro train-and-eval (sft and dpo in seconds, tiny-world) runs once through the real CLI with every
tracker installed here (tensorboard is in the `dev` extra, so always; wandb offline, mlflow's file
store and trackio when installed), from an empty working folder and HOME: its event files are read
back with tensorboard's own reader, wandb's offline run files record by record, MLflow's store with
its client and Trackio's database with sqlite. A rerun without `report_to` then skips every stage."""

import importlib.util
import json
import math
import os
import sqlite3
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from selm_bench.harness.run import tracking
from selm_bench.harness.core.config import TRACKERS, ConfigError, load_config
from selm_bench.harness.run.stages import Stage, plan
from selm_bench.harness.core.specs import EvalSpec, Ref
from support.micro import micro
from support.cli import run

OPTIONAL = [t for t in ("wandb", "mlflow", "trackio") if importlib.util.find_spec(t)]
MICRO = micro("track",
              methods=["sft", "dpo"],
              suites=["tiny-world"],
              sft={"epochs": 1, "batch_size": 8, "logging_steps": 1},  # 4 steps: a loss curve
              dpo={"epochs": 1, "batch_size": 4, "logging_steps": 1},  # 2 steps
              suite_options={"tiny-world": {"max_new_tokens": 4}})
CHECKPOINTS = ["sft", "dpo"]
TRACKER_VARS = ("TENSORBOARD_LOGGING_DIR", "WANDB_DIR", "WANDB_PROJECT", "WANDB_RUN_GROUP", "WANDB_CACHE_DIR",
                "WANDB_DATA_DIR", "MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_ALLOW_FILE_STORE", "TRACKIO_DIR",
                tracking.REPORT_TO_ENV, tracking.NAME_ENV, tracking.PROJECT_ENV)


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in TRACKER_VARS}
    return {**env, "HF_HUB_OFFLINE": "1", **extra}


def cli(cfg: Path, out: Path, *extra: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return run("train-and-eval", "--config", cfg, "--out", out, *extra, cwd=cwd, env=env)


def accumulator(folder: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder))
    acc.Reload()
    return acc


def text(acc, tag: str) -> str:
    return acc.Tensors(f"{tag}/text_summary")[-1].tensor_proto.string_val[0].decode()


def metrics_json(run: Path, ckpt: str) -> dict:
    return json.loads((run / "evals" / ckpt / "tiny-world" / "metrics.json").read_text())


@pytest.fixture(scope="module")
def micro(tmp_path_factory):
    """One run with every installed tracker, then a rerun without any; from an empty folder and HOME."""
    pytest.importorskip("tensorboard")
    root = tmp_path_factory.mktemp("tracking")
    cfg = root / "micro.yaml"
    cfg.write_text(yaml.safe_dump(MICRO))
    (root / "cwd").mkdir()
    (root / "home").mkdir()
    env = clean_env(WANDB_MODE="offline", HOME=str(root / "home"), MLFLOW_DISABLE_TELEMETRY="true")
    run = root / "run"
    names = ["tensorboard", *OPTIONAL]
    first = cli(cfg, run, "--set", f"report_to=[{', '.join(names)}]", cwd=root / "cwd", env=env)
    assert first.returncode == 0, first.stderr[-3000:]
    # report_to=[]: the same stage keys. (--keep-stale: code edited between the two commands, as by someone
    # working beside this test, would stop the rerun; keys are compared all the same.)
    again = cli(cfg, run, "--keep-stale", cwd=root / "cwd", env=env)
    assert again.returncode == 0, again.stderr[-3000:]
    return {"run": run, "root": root, "first": first, "again": again, "names": names}


def test_tensorboard_has_each_training_stages_loss_curve_and_each_checkpoints_accuracy(micro):
    run = micro["run"]
    base = run / "tracking"
    for stage, steps in (("sft", 4), ("dpo", 2)):
        acc = accumulator(base / "train" / stage)
        loss = acc.Scalars("train/loss")
        assert [e.step for e in loss] == list(range(1, steps + 1))
        log = json.loads((run / "checkpoints" / stage / "model" / "train_log.json").read_text())
        assert [e.value for e in loss] == pytest.approx([e["loss"] for e in log if "loss" in e], rel=1e-6)
    for ckpt in CHECKPOINTS:
        acc = accumulator(base / "evals" / ckpt)
        data = metrics_json(run, ckpt)
        for name, value in data["metrics"].items():  # every number of metrics.json, the accuracy first
            assert acc.Scalars(f"tiny-world/{name}")[-1].value == pytest.approx(value), name
        tags = text(acc, "tags")
        rec = json.loads((run / "evals" / ckpt / "tiny-world" / "stage.json").read_text())
        model = json.loads((run / "checkpoints" / ckpt / "model" / "stage.json").read_text())
        for line in (f"checkpoint: `{ckpt}`", f"method: `{ckpt}`", f"checkpoint_key: `{model['key']}`"):
            assert line in tags, tags
        assert text(acc, "tiny-world/stage_key") == f"`{rec['key']}`"
    board = text(accumulator(base / "leaderboard"), "leaderboard")
    assert board.startswith("| checkpoint |") and "| sft |" in board and "| dpo |" in board


def test_everything_stays_in_the_run_folder(micro):
    """No `runs/`, `wandb/` or `mlruns/` in the working folder, nothing in HOME from a tracker."""
    root = micro["root"]
    assert not list((root / "cwd").iterdir())
    home = [p for p in (root / "home").rglob("*") if p.is_file() and "matplotlib" not in p.parts]
    assert not home, home
    assert {p.name for p in (micro["run"] / "tracking").iterdir()} >= {"train", "evals", "leaderboard"}


def test_report_to_changes_no_stage_key_a_rerun_without_it_skips_every_stage(micro):
    err = micro["again"].stderr
    for name in ["world", *CHECKPOINTS, *(f"eval {c} tiny-world" for c in CHECKPOINTS)]:
        assert f"skip {name} (done)" in err, err[-2000:]
    assert "done " not in err.replace("(done)", "")


def test_report_to_is_a_runtime_field_the_plans_keys_are_identical():
    base = load_config(sets=["methods=[sft, dpo, iterative-dpo, selm]"])
    tracked = load_config(sets=["methods=[sft, dpo, iterative-dpo, selm]", f"report_to=[{', '.join(TRACKERS)}]"])
    assert tracked.report_to == list(TRACKERS)
    keys = [[(s.name, s.key) for s in (*stages, *evals)] for stages, evals in (plan(base), plan(tracked))]
    assert keys[0] == keys[1] and len(keys[0]) > 10


def test_report_to_is_validated():
    assert load_config().report_to == []
    assert load_config(sets=["report_to=tensorboard"]).report_to == ["tensorboard"]  # one name: a list of one
    assert load_config(sets=["report_to=[wandb, mlflow, wandb]"]).report_to == ["wandb", "mlflow"]
    with pytest.raises(ConfigError) as err:
        load_config(sets=["report_to=[wandb, tensorbord]"])
    msg = str(err.value)
    assert msg.startswith("report_to[1]: ") and "'tensorbord'" in msg
    assert msg.rpartition("(known: ")[2].rstrip(")").split(", ") == ["tensorboard", "wandb", "mlflow", "trackio"]


def test_a_training_stages_environment_names_its_folders_and_keeps_the_users_settings(tmp_path):
    run = tmp_path / "myrun"
    env = tracking.stage_env(list(TRACKERS), run, "selm/iter-1", environ={})
    assert env[tracking.REPORT_TO_ENV] == "tensorboard,wandb,mlflow,trackio"
    assert env[tracking.NAME_ENV] == "myrun/selm/iter-1"
    assert env["TENSORBOARD_LOGGING_DIR"] == str(run.resolve() / "tracking" / "train" / "selm-iter-1")
    assert env["WANDB_DIR"] == str(run.resolve() / "tracking") and env["WANDB_RUN_GROUP"] == "myrun"
    assert env["MLFLOW_TRACKING_URI"] == f"file:{run.resolve() / 'tracking' / 'mlruns'}"
    assert env["MLFLOW_ALLOW_FILE_STORE"] == "true" and env["TRACKIO_DIR"] == str(run.resolve() / "tracking" / "trackio")
    for k, v in env.items():  # every folder is in the run
        if k.endswith("_DIR"):
            assert Path(v).is_relative_to(run.resolve()), k
    user = {"MLFLOW_TRACKING_URI": "http://mlflow.example:5000", "WANDB_DIR": "/elsewhere",
            "TENSORBOARD_LOGGING_DIR": "/one/for/all"}
    mine = tracking.stage_env(list(TRACKERS), run, "sft", environ=user)
    assert "MLFLOW_TRACKING_URI" not in mine and "MLFLOW_ALLOW_FILE_STORE" not in mine and "WANDB_DIR" not in mine
    assert mine["TENSORBOARD_LOGGING_DIR"].endswith("/tracking/train/sft")  # per stage, always
    only_tb = tracking.stage_env(["tensorboard"], run, "sft", environ={})
    assert set(only_tb) == {tracking.REPORT_TO_ENV, tracking.NAME_ENV, tracking.PROJECT_ENV, "TENSORBOARD_LOGGING_DIR"}


def test_trl_gets_report_to_from_the_stages_environment(monkeypatch, tmp_path):
    """trainers/train.py reads the names harness/run/tracking.py sets (it does not import it: see tracking_kwargs)."""
    from selm_bench.trainers.train import tracking_kwargs

    for k in TRACKER_VARS:
        monkeypatch.delenv(k, raising=False)
    assert tracking_kwargs() == {"report_to": []}
    for k, v in tracking.stage_env(["tensorboard", "wandb"], tmp_path / "r", "dpo", environ={}).items():
        monkeypatch.setenv(k, v)
    assert tracking_kwargs() == {"report_to": ["tensorboard", "wandb"], "run_name": "r/dpo", "project": "selm-bench"}


def _stage(kind: str, name: str = "sft") -> Stage:
    return Stage(name, name, SimpleNamespace(kind=kind), method=name)


def test_training_env_is_set_for_training_stages_only_and_put_back(monkeypatch, tmp_path):
    monkeypatch.delenv("TENSORBOARD_LOGGING_DIR", raising=False)
    monkeypatch.setenv(tracking.REPORT_TO_ENV, "before")
    old = tmp_path / "tracking" / "train" / "sft"
    old.mkdir(parents=True)
    (old / "events.out.tfevents.old").write_text("an earlier attempt")
    with tracking.training_env(["tensorboard"], tmp_path, _stage("sft")):
        assert os.environ[tracking.REPORT_TO_ENV] == "tensorboard"
        assert os.environ["TENSORBOARD_LOGGING_DIR"] == str(old.resolve())
        assert not old.exists()  # the stage is computed afresh, so is its curve
    assert os.environ[tracking.REPORT_TO_ENV] == "before" and "TENSORBOARD_LOGGING_DIR" not in os.environ
    with tracking.training_env(["tensorboard"], tmp_path, _stage("eval")):
        assert os.environ[tracking.REPORT_TO_ENV] == "before"
    with tracking.training_env([], tmp_path, _stage("sft")):
        assert os.environ[tracking.REPORT_TO_ENV] == "before"


def _eval_folder(tmp_path: Path, ckpt: str, suite: str, metrics: dict) -> Path:
    folder = tmp_path / "evals" / ckpt / suite
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps({"suite": suite, "checkpoint": ckpt, "metrics": metrics}))
    return folder


def _eval_stage(ckpt: str, suite: str, method: str, iteration: int | None) -> Stage:
    spec = EvalSpec.model_construct(kind="eval", name=ckpt, suite=suite, model=Ref(path=f"checkpoints/{ckpt}",
                                                                                  key=f"model-{ckpt}"))
    return Stage(f"eval {ckpt} {suite}", f"evals/{ckpt}/{suite}", spec, method=method, iteration=iteration)


def test_tensorboard_results_per_checkpoint_with_the_iteration_as_step(tmp_path, monkeypatch):
    pytest.importorskip("tensorboard")
    monkeypatch.setattr(Stage, "key", property(lambda self: f"key-{self.name}"))
    t = tracking.Trackers(["tensorboard"], tmp_path)
    runs = [("selm/iter-1", "selm", 1, "tiny-world", {"accuracy": 0.25, "accuracy/add": 0.5, "n": 8, "flag": True,
                                                      "bad": float("nan")}),
            ("selm/iter-1", "selm", 1, "mt-bench", {"score": 6.5}),
            ("selm/iter-2", "selm", 2, "tiny-world", {"accuracy": 0.375})]
    for ckpt, method, it, suite, m in runs:
        t.log_eval(_eval_folder(tmp_path, ckpt, suite, m), _eval_stage(ckpt, suite, method, it))
    t.close()
    one = accumulator(tmp_path / "tracking" / "evals" / "selm-iter-1")
    got = {tag: [(e.step, e.value) for e in one.Scalars(tag)] for tag in one.Tags()["scalars"]}
    assert got == {"tiny-world/accuracy": [(1, 0.25)], "tiny-world/accuracy/add": [(1, 0.5)], "tiny-world/n": [(1, 8.0)],
                   "mt-bench/score": [(1, 6.5)]}  # numbers only: no flag, no NaN
    tags = text(one, "tags")
    assert "iteration: `1`" in tags and "checkpoint_key: `model-selm/iter-1`" in tags and "method: `selm`" in tags
    assert text(one, "tiny-world/stage_key") == "`key-eval selm/iter-1 tiny-world`"
    assert text(one, "mt-bench/stage_key") == "`key-eval selm/iter-1 mt-bench`"
    two = accumulator(tmp_path / "tracking" / "evals" / "selm-iter-2")
    assert [(e.step, e.value) for e in two.Scalars("tiny-world/accuracy")] == [(2, 0.375)]


def test_a_failing_tracker_is_left_out_in_one_line_and_the_others_go_on(tmp_path, monkeypatch, capsys):
    calls = []
    reason = "no route to the tracking server"

    class Broken:
        def __init__(self, root):
            pass

        def begin(self, ck, label):
            raise ConnectionError(reason + "\nand more lines")

    class Fine:
        def __init__(self, root):
            pass

        def begin(self, ck, label):
            calls.append(("begin", ck.name, label))

        def log(self, ck, suite, metrics, key):
            calls.append(("log", ck.name, suite, metrics, key))

        def end(self, ck):
            calls.append(("end", ck.name))

        def leaderboard(self, rows, run_dir, label):
            calls.append(("leaderboard", len(rows), label))

    monkeypatch.setattr(tracking, "ADAPTERS", {"wandb": Broken, "mlflow": Fine})
    monkeypatch.setattr(Stage, "key", property(lambda self: "k"))
    t = tracking.Trackers(["wandb", "mlflow"], tmp_path / "myrun")
    t.log_eval(_eval_folder(tmp_path / "myrun", "sft", "tiny-world", {"accuracy": 0.5}), _eval_stage("sft", "tiny-world", "sft", None))
    t.log_leaderboard([{"checkpoint": "sft"}])
    err = capsys.readouterr().err
    (line,) = [line for line in err.splitlines() if "wandb" in line]
    assert "left out" in line and line.endswith(f"ConnectionError: {reason}") and "and more lines" not in err
    assert calls == [("begin", "sft", "myrun"), ("log", "sft", "tiny-world", {"accuracy": 0.5}, "k"), ("end", "sft"),
                     ("leaderboard", 1, "myrun")]
    t.close()  # nothing open: nothing ended twice
    assert len(calls) == 4


def test_a_missing_tracker_package_stops_the_command_before_anything_runs(monkeypatch):
    from selm_bench.harness.run.preflight import PreflightError

    real = importlib.util.find_spec
    monkeypatch.setattr(tracking.importlib.util, "find_spec", lambda n, *a: None if n == "wandb" else real(n, *a))
    tracking.check_installed(["tensorboard"] if real("tensorboard") or real("tensorboardX") else [])
    with pytest.raises(PreflightError) as err:
        tracking.check_installed(["wandb"])
    assert str(err.value).startswith("report_to: wandb ") and "pip install wandb" in str(err.value)


def test_mlflow_names_keep_nested_metrics_apart():
    assert tracking.mlflow_name("tiny-world/accuracy") == "tiny-world.accuracy"
    assert tracking.mlflow_name("lm-eval/arc_easy/acc,none") == "lm-eval.arc_easy.acc_none"


# --- the optional trackers, each when installed ---------------------------------------------------------

def wandb_records(path: Path) -> list:
    """The records of an offline run file (`run-*.wandb`): a 7-byte header, then LevelDB-log chunks in
    32 KiB blocks (checksum 4, length 2, type 1: full, first, middle, last), each record a protobuf."""
    from wandb.proto import wandb_internal_pb2 as pb

    data, out, buf, pos = path.read_bytes(), [], b"", 7
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        left = 32768 - pos % 32768
        if left < 7:
            pos += left
            continue
        length, kind = int.from_bytes(data[pos + 4:pos + 6], "little"), data[pos + 6]
        if kind == 0:  # the zero padding of a block
            pos += left
            continue
        buf += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            rec = pb.Record()
            rec.ParseFromString(buf)
            out.append(rec)
            buf = b""
    return out


def wandb_runs(base: Path) -> dict[str, dict]:
    runs = {}
    for f in base.glob("wandb/offline-run-*/run-*.wandb"):
        info = {"history": {}, "config": {}}
        for r in wandb_records(f):
            kind = r.WhichOneof("record_type")
            if kind == "run":
                info |= {"name": r.run.display_name, "group": r.run.run_group, "tags": list(r.run.tags)}
                info["config"] |= {i.key: json.loads(i.value_json) for i in r.run.config.update}
            elif kind == "config":
                info["config"] |= {i.key: json.loads(i.value_json) for i in r.config.update}
            elif kind == "history":
                for i in r.history.item:
                    info["history"].setdefault(i.key or "/".join(i.nested_key), []).append(json.loads(i.value_json))
        runs[info["name"]] = info
    return runs


@pytest.mark.skipif("wandb" not in OPTIONAL, reason="wandb is not installed (pip install 'selm-bench[tracking]')")
def test_wandb_offline_runs_in_the_run_folder(micro):
    run = micro["run"]
    runs = wandb_runs(run / "tracking")
    assert set(runs) == {"run/sft", "run/dpo", "run/evals/sft", "run/evals/dpo", "run/leaderboard"}
    assert {r["group"] for r in runs.values()} == {"run"}
    for stage in ("sft", "dpo"):
        log = json.loads((run / "checkpoints" / stage / "model" / "train_log.json").read_text())
        assert runs[f"run/{stage}"]["history"]["train/loss"] == pytest.approx([e["loss"] for e in log if "loss" in e])
    for ckpt in CHECKPOINTS:
        r = runs[f"run/evals/{ckpt}"]
        assert r["history"]["tiny-world/accuracy"] == [metrics_json(run, ckpt)["metrics"]["accuracy"]]
        key = json.loads((run / "evals" / ckpt / "tiny-world" / "stage.json").read_text())["key"]
        assert r["config"]["checkpoint"] == ckpt and r["config"]["method"] == ckpt
        assert r["config"]["stage_key/tiny-world"] == key and ckpt in r["tags"]


@pytest.mark.skipif("mlflow" not in OPTIONAL, reason="mlflow is not installed (pip install 'selm-bench[tracking]')")
def test_mlflow_file_store_in_the_run_folder(micro, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 reads a file store only when allowed
    run = micro["run"]
    client = MlflowClient(f"file:{run / 'tracking' / 'mlruns'}")
    exp = client.get_experiment_by_name("selm-bench")
    runs = {r.info.run_name: r for r in client.search_runs([exp.experiment_id])}
    assert set(runs) == {"run/sft", "run/dpo", "run/evals/sft", "run/evals/dpo", "run/leaderboard"}
    for stage in ("sft", "dpo"):
        log = json.loads((run / "checkpoints" / stage / "model" / "train_log.json").read_text())
        history = client.get_metric_history(runs[f"run/{stage}"].info.run_id, "loss")
        assert [m.value for m in sorted(history, key=lambda m: m.step)] == pytest.approx([e["loss"] for e in log if "loss" in e])
    for ckpt in CHECKPOINTS:
        r = runs[f"run/evals/{ckpt}"]
        key = json.loads((run / "evals" / ckpt / "tiny-world" / "stage.json").read_text())["key"]
        assert r.data.metrics["tiny-world.accuracy"] == metrics_json(run, ckpt)["metrics"]["accuracy"]
        assert r.data.tags["checkpoint"] == ckpt and r.data.tags["method"] == ckpt
        assert r.data.tags["stage_key.tiny-world"] == key and r.data.params["checkpoint"] == ckpt
    artifacts = {a.path for a in client.list_artifacts(runs["run/leaderboard"].info.run_id)}
    assert artifacts == {"leaderboard.csv", "leaderboard.json"}


@pytest.mark.skipif("trackio" not in OPTIONAL, reason="trackio is not installed")
def test_trackio_database_in_the_run_folder(micro):
    run = micro["run"]
    db = sqlite3.connect(run / "tracking" / "trackio" / "selm-bench.db")
    rows = db.execute("SELECT run_name, step, metrics FROM metrics").fetchall()
    by: dict[str, list] = {}
    for name, step, metrics in rows:
        by.setdefault(name, []).append((step, json.loads(metrics)))
    assert {"run/sft", "run/dpo", "run/evals/sft", "run/evals/dpo"} <= set(by)
    assert len([m for _, m in by["run/sft"] if "train/loss" in m]) == 4
    for ckpt in CHECKPOINTS:
        [(step, m)] = by[f"run/evals/{ckpt}"]
        assert step == 0 and m["tiny-world/accuracy"] == metrics_json(run, ckpt)["metrics"]["accuracy"]


def test_accelerate_launched_stages_get_report_to_too(tmp_path):
    """The stage's environment reaches `accelerate launch`'s worker: its loss curve is in the run's folder."""
    pytest.importorskip("tensorboard")
    cfg = tmp_path / "micro.yaml"
    cfg.write_text(yaml.safe_dump({**MICRO, "methods": ["sft"], "suites": []}))
    res = cli(cfg, tmp_path / "run", "--launcher", "accelerate", "--set", "report_to=[tensorboard]", cwd=tmp_path,
              env=clean_env())
    assert res.returncode == 0, res.stderr[-3000:]
    loss = accumulator(tmp_path / "run" / "tracking" / "train" / "sft").Scalars("train/loss")
    assert len(loss) == 4 and all(math.isfinite(e.value) for e in loss)
