"""Experiment tracking (`report_to`): TensorBoard, Weights & Biases, MLflow and Trackio, all under the run.

Two halves:

- Training: every training stage (sft, dpo, each online iteration) passes `report_to` to its TRL config,
  so TRL's own callbacks log the loss curve, learning rate, rewards, ... `report_to` is a runtime field:
  it is in no spec (no stage key changes), so the pipeline hands it to a training stage through the
  environment (`training_env`): SELM_BENCH_REPORT_TO and SELM_BENCH_TRACKING_NAME, which
  trainers/train.py reads, plus each tracker's own variables. In-process stages see it, and so do the
  processes of `accelerate launch`, which inherit the environment.
- Results: each checkpoint's eval metrics and the leaderboard (`Trackers`, from the pipeline process,
  as each eval stage finishes and after the leaderboard is written; `selm-bench eval` too): one tracker
  run per checkpoint, with its checkpoint, method, iteration and the stage keys (each suite's eval stage
  and the checkpoint's own) as tags or params, and one for the leaderboard.

Where each tracker writes (RUN = the run folder; a variable the user set wins, except TensorBoard's):

| tracker | training stage | results |
| --- | --- | --- |
| tensorboard | RUN/tracking/train/<stage> (TENSORBOARD_LOGGING_DIR) | RUN/tracking/evals/<checkpoint>, RUN/tracking/leaderboard |
| wandb | WANDB_DIR (RUN/tracking; WANDB_CACHE_DIR and WANDB_DATA_DIR beside it) | the same; project WANDB_PROJECT (selm-bench), group WANDB_RUN_GROUP (the run's folder name); online unless WANDB_MODE=offline |
| mlflow | MLFLOW_TRACKING_URI (file:RUN/tracking/mlruns, with MLFLOW_ALLOW_FILE_STORE=true that MLflow 3 asks for) | the same; experiment MLFLOW_EXPERIMENT_NAME (selm-bench) |
| trackio | TRACKIO_DIR (RUN/tracking/trackio), project selm-bench | the same |

Tracker runs are named `<run folder>/<stage>` (`tiny/selm/iter-1`), `<run folder>/evals/<checkpoint>` and
`<run folder>/leaderboard`. A training stage that runs again starts its TensorBoard folder afresh; one
that is skipped, or taken from a sweep's stage cache, logs nothing. An eval stage's results are logged
when it finishes in this command (a skipped one was logged when it ran), the leaderboard each time it is
written. A missing tracker package stops the command before anything runs (`check_installed`); a
tracker that fails while logging results is reported in one line and left out from then on: the
results on disk stand. Known limits: Trackio reads TRACKIO_DIR once per process, so the cells of a
sweep (one process) share the first cell's Trackio folder; MLflow 3 keeps an installation id in
~/.config/mlflow unless MLFLOW_DISABLE_TELEMETRY=true.
"""

from __future__ import annotations

import contextlib
import importlib.util
import math
import os
import re
import shutil
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from selm_bench.harness.core.config import TRACKERS

PROJECT = "selm-bench"  # wandb project, MLflow experiment and Trackio project unless the user names one
# What a training stage reads (trainers/train.py reads these names itself: see tracking_kwargs there).
REPORT_TO_ENV = "SELM_BENCH_REPORT_TO"
NAME_ENV = "SELM_BENCH_TRACKING_NAME"
PROJECT_ENV = "SELM_BENCH_TRACKING_PROJECT"
# The package each tracker needs (TensorBoard: torch.utils.tensorboard needs `tensorboard`; tensorboardX also does).
PACKAGES = {"tensorboard": ("tensorboard", "tensorboardX"), "wandb": ("wandb",), "mlflow": ("mlflow",), "trackio": ("trackio",)}


def tracking_dir(root: Path) -> Path:
    return Path(root).resolve() / "tracking"


def folder_name(name: str) -> str:
    """A stage or checkpoint name as one folder name (`selm/iter-1` -> `selm-iter-1`)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name)


def missing_packages(report_to: list[str]) -> list[str]:
    return [f"report_to: {name} is not installed (pip install {PACKAGES[name][0]}; every tracker: pip install "
            "'selm-bench[tracking]')"
            for name in report_to if not any(importlib.util.find_spec(p) for p in PACKAGES[name])]


def tracker_env(report_to: list[str], root: Path, environ: dict[str, str] | None = None) -> dict[str, str]:
    """The trackers' own variables for a run: where each writes, unless the user set it."""
    environ = os.environ if environ is None else environ
    base, label = tracking_dir(root), Path(root).resolve().name
    defaults: dict[str, str] = {}
    if "wandb" in report_to:
        defaults |= {"WANDB_DIR": str(base), "WANDB_CACHE_DIR": str(base / "wandb-cache"),  # its debug logs, too
                     "WANDB_DATA_DIR": str(base / "wandb-data"), "WANDB_PROJECT": PROJECT, "WANDB_RUN_GROUP": label}
    if "mlflow" in report_to:
        defaults["MLFLOW_EXPERIMENT_NAME"] = PROJECT
        if not environ.get("MLFLOW_TRACKING_URI"):  # ours: a file store in the run (MLflow 3 refuses one unless allowed)
            defaults |= {"MLFLOW_TRACKING_URI": f"file:{base / 'mlruns'}", "MLFLOW_ALLOW_FILE_STORE": "true"}
    if "trackio" in report_to:
        defaults["TRACKIO_DIR"] = str(base / "trackio")
    return {k: v for k, v in defaults.items() if not environ.get(k)}


def stage_env(report_to: list[str], root: Path, stage_name: str,
              environ: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of one training stage: what trainers/train.py passes to TRL, and where TRL's loggers write."""
    env = {REPORT_TO_ENV: ",".join(report_to), NAME_ENV: f"{Path(root).resolve().name}/{stage_name}",
           PROJECT_ENV: PROJECT, **tracker_env(report_to, root, environ)}
    if "tensorboard" in report_to:
        env["TENSORBOARD_LOGGING_DIR"] = str(tracking_dir(root) / "train" / folder_name(stage_name))
    return env


@contextmanager
def environment(env: dict[str, str]) -> Iterator[None]:
    """`env` set in os.environ for the block, then put back as it was."""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextmanager
def training_env(report_to: list[str], root: Path, stage: Any) -> Iterator[None]:
    """Around one stage of the pipeline: for a training stage with trackers, their environment (it reaches
    `accelerate launch` workers too); anything else runs as it is."""
    from selm_bench.harness.core.specs import TRAINING_KINDS

    if not report_to or stage.spec.kind not in TRAINING_KINDS:
        yield
        return
    env = stage_env(report_to, root, stage.name)
    if "TENSORBOARD_LOGGING_DIR" in env:  # the stage is computed afresh: so is its curve
        shutil.rmtree(env["TENSORBOARD_LOGGING_DIR"], ignore_errors=True)
    try:
        with environment(env):
            yield
    finally:
        wandb = sys.modules.get("wandb")  # in-process: TRL's WandbCallback leaves its run open at the end of
        if wandb is not None and getattr(wandb, "run", None) is not None:  # training; the next stage would reuse it
            wandb.finish()


def numbers(metrics: dict[str, Any]) -> dict[str, float]:
    """A metrics dict's finite numbers (no flags, counts as floats)."""
    return {k: float(v) for k, v in metrics.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}


class Checkpoint:
    """The checkpoint whose eval results a tracker run holds, and what identifies it."""

    def __init__(self, name: str, method: str | None, iteration: int | None, model_key: str):
        self.name, self.method, self.iteration, self.model_key = name, method, iteration, model_key

    @property
    def step(self) -> int:
        return self.iteration or 0

    def tags(self) -> dict[str, str]:
        return {"checkpoint": self.name, "method": self.method or "",
                "iteration": "" if self.iteration is None else str(self.iteration), "checkpoint_key": self.model_key}


def scoped(suite: str, metrics: dict[str, float]) -> dict[str, float]:
    return {f"{suite}/{name}": value for name, value in metrics.items()}


def _cell(v: Any) -> Any:
    return None if isinstance(v, float) and not math.isfinite(v) else v


def _table(rows: list[dict[str, Any]]) -> tuple[list[str], list[list[Any]]]:
    from selm_bench.harness.reports.leaderboard import columns

    cols = columns(rows, files=True)
    return cols, [[_cell(r.get(c)) for c in cols] for r in rows]


# One adapter per tracker. A checkpoint's results: begin (its tracker run, tagged), log (each suite's
# metrics and its eval stage's key, as the stage finishes), end; the leaderboard: one run of its own.

class TensorBoard:
    def __init__(self, root: Path):
        self.base, self.w = tracking_dir(root), None

    @staticmethod
    def writer(log_dir: Path) -> Any:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # torch's needs the tensorboard package; tensorboardX is standalone
            from tensorboardX import SummaryWriter
        return SummaryWriter(log_dir=str(log_dir))

    def begin(self, ck: Checkpoint, label: str) -> None:
        self.w = self.writer(self.base / "evals" / folder_name(ck.name))
        self.w.add_text("tags", "\n".join(f"- {k}: `{v}`" for k, v in ck.tags().items()), ck.step)

    def log(self, ck: Checkpoint, suite: str, metrics: dict[str, float], key: str) -> None:
        for tag, value in scoped(suite, metrics).items():
            self.w.add_scalar(tag, value, ck.step)
        self.w.add_text(f"{suite}/stage_key", f"`{key}`", ck.step)
        self.w.flush()

    def end(self, ck: Checkpoint) -> None:
        self.w.close()

    def leaderboard(self, rows: list[dict[str, Any]], run_dir: Path, label: str) -> None:
        from selm_bench.harness.reports.leaderboard import to_markdown

        w = self.writer(self.base / "leaderboard")
        w.add_text("leaderboard", to_markdown(rows))
        w.close()


class Wandb:
    def __init__(self, root: Path):
        import wandb

        self.wandb, self.run = wandb, None

    def _init(self, name: str, **kw: Any) -> Any:
        return self.wandb.init(project=os.environ.get("WANDB_PROJECT"), group=os.environ.get("WANDB_RUN_GROUP"),
                               dir=os.environ.get("WANDB_DIR"), name=name, settings=self.wandb.Settings(quiet=True), **kw)

    def begin(self, ck: Checkpoint, label: str) -> None:
        self.run = self._init(f"{label}/evals/{ck.name}", job_type="eval", config=ck.tags(),
                              tags=list(dict.fromkeys(t for t in (ck.name, ck.method) if t)))

    def log(self, ck: Checkpoint, suite: str, metrics: dict[str, float], key: str) -> None:
        self.run.config.update({f"stage_key/{suite}": key})
        self.run.log(scoped(suite, metrics))
        self.run.summary.update(scoped(suite, metrics))

    def end(self, ck: Checkpoint) -> None:
        self.run.finish()

    def leaderboard(self, rows: list[dict[str, Any]], run_dir: Path, label: str) -> None:
        cols, data = _table(rows)
        run = self._init(f"{label}/leaderboard", job_type="leaderboard")
        run.log({"leaderboard": self.wandb.Table(columns=cols, data=data)})
        run.finish()


def mlflow_name(name: str) -> str:
    """An MLflow metric, param or tag name: letters, digits, `_ - . :` and spaces. `/` becomes `.`: its file
    store keeps `a/b` as a file in folder `a`, so `tiny-world/accuracy` and `tiny-world/accuracy/add` collide."""
    return re.sub(r"[^A-Za-z0-9_\-.: ]", "_", name.replace("/", "."))


class MLflow:
    def __init__(self, root: Path):
        import mlflow

        self.mlflow = mlflow
        if os.environ.get("MLFLOW_TRACKING_URI"):
            mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
        mlflow.set_experiment(os.environ.get("MLFLOW_EXPERIMENT_NAME") or PROJECT)

    def begin(self, ck: Checkpoint, label: str) -> None:
        self.mlflow.start_run(run_name=f"{label}/evals/{ck.name}", tags=ck.tags())
        self.mlflow.log_params({k: ck.tags()[k] for k in ("checkpoint", "method", "iteration")})

    def log(self, ck: Checkpoint, suite: str, metrics: dict[str, float], key: str) -> None:
        self.mlflow.set_tag(mlflow_name(f"stage_key/{suite}"), key)
        self.mlflow.log_metrics({mlflow_name(k): v for k, v in scoped(suite, metrics).items()}, step=ck.step)

    def end(self, ck: Checkpoint) -> None:
        self.mlflow.end_run()

    def leaderboard(self, rows: list[dict[str, Any]], run_dir: Path, label: str) -> None:
        with self.mlflow.start_run(run_name=f"{label}/leaderboard", tags={"kind": "leaderboard"}):
            for name in ("leaderboard.csv", "leaderboard.json"):
                if (run_dir / name).is_file():
                    self.mlflow.log_artifact(str(run_dir / name))


class Trackio:
    def __init__(self, root: Path):
        import trackio

        self.trackio = trackio

    def _init(self, label: str, name: str, config: dict[str, Any] | None = None) -> None:
        import inspect

        kw = {"project": PROJECT, "name": f"{label}/{name}", "group": label, "config": config,
              "auto_log_cpu": False, "auto_log_gpu": False}
        accepted = inspect.signature(self.trackio.init).parameters
        with contextlib.redirect_stdout(sys.stderr):  # its banner; stdout stays the command's own
            self.trackio.init(**{k: v for k, v in kw.items() if k in accepted and v is not None})

    def begin(self, ck: Checkpoint, label: str) -> None:
        self._init(label, f"evals/{ck.name}", ck.tags())

    def log(self, ck: Checkpoint, suite: str, metrics: dict[str, float], key: str) -> None:
        self.trackio.config.update({f"stage_key/{suite}": key})
        self.trackio.log(scoped(suite, metrics), step=ck.step)

    def end(self, ck: Checkpoint) -> None:
        self._finish()

    def _finish(self) -> None:
        with contextlib.redirect_stdout(sys.stderr):
            self.trackio.finish()

    def leaderboard(self, rows: list[dict[str, Any]], run_dir: Path, label: str) -> None:
        if not hasattr(self.trackio, "Table"):
            return
        cols, data = _table(rows)
        self._init(label, "leaderboard")
        self.trackio.log({"leaderboard": self.trackio.Table(columns=cols, data=data)})
        self._finish()


ADAPTERS = {"tensorboard": TensorBoard, "wandb": Wandb, "mlflow": MLflow, "trackio": Trackio}
assert set(ADAPTERS) == set(TRACKERS)


def _left_out(name: str, e: Exception) -> str:
    first = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"[yellow]tracking[/yellow] {name} left out: {type(e).__name__}" + (f": {first}" if first else "")


class Trackers:
    """The run's results to each tracker of `report_to`, as they come: `log_eval` after each eval stage
    that finished (a checkpoint's tracker run opens at its first suite and closes at the next checkpoint's
    or at `close`), `log_leaderboard` after the leaderboard is written. With no trackers nothing happens."""

    def __init__(self, report_to: list[str], root: Path):
        self.names, self.root, self.label = list(report_to), Path(root), Path(root).resolve().name
        self.env = tracker_env(self.names, root)
        self._adapters: dict[str, Any] | None = None
        self._open: Checkpoint | None = None

    def _each(self, call: str, *args: Any) -> None:
        from selm_bench.harness.core.progress import say

        with environment(self.env):
            if self._adapters is None:
                self._adapters = {}
                for name in self.names:
                    try:
                        self._adapters[name] = ADAPTERS[name](self.root)
                    except Exception as e:  # noqa: BLE001 - results stand without a tracker
                        say(_left_out(name, e))
            for name, adapter in list(self._adapters.items()):
                try:
                    getattr(adapter, call)(*args)
                except Exception as e:  # noqa: BLE001
                    del self._adapters[name]
                    say(_left_out(name, e))

    def log_eval(self, folder: Path, stage: Any) -> None:
        """A finished eval stage (`stage`: its plan entry) whose metrics.json is in `folder`."""
        if not self.names:
            return
        from selm_bench.harness.core.store import read_json

        data = read_json(Path(folder) / "metrics.json") or {}
        name = data.get("checkpoint") or stage.spec.name
        if self._open is not None and self._open.name != name:
            self.close()
        if self._open is None:
            self._open = Checkpoint(name, stage.method, stage.iteration, stage.spec.model.key)
            self._each("begin", self._open, self.label)
        self._each("log", self._open, data.get("suite") or stage.spec.suite, numbers(data.get("metrics") or {}), stage.key)

    def log_leaderboard(self, rows: list[dict[str, Any]]) -> None:
        if self.names:
            self.close()
            self._each("leaderboard", rows, self.root, self.label)

    def close(self) -> None:
        """Ends the open checkpoint's tracker run."""
        if self._open is not None:
            self._each("end", self._open)
            self._open = None


def check_installed(report_to: list[str]) -> None:
    """A tracker whose package is missing stops the command before anything is written."""
    from selm_bench.harness.run.preflight import PreflightError

    problems = missing_packages(report_to)
    if problems:
        raise PreflightError("; ".join(problems))
