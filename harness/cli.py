"""The `selm-bench` command line (Typer). Human output goes to stderr; data to stdout.

Each command is thin: it checks its flags, then calls the harness. Options that several commands
share are declared once below as `Annotated` aliases; every closed set of choices is an Enum, which
Typer checks and --help lists; every failure goes through one handler (`one_line_errors`, `_fail`):
one `error:` line, exit 2 for bad input, 1 otherwise. Heavy libraries (torch, transformers, TRL,
lm-eval) are imported inside the commands that need them: list, plan, leaderboard and compare
never load them.
"""

from __future__ import annotations

import functools
import json
import sys
import traceback
import typing
import warnings
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Callable, List, Optional

import typer
from typer.core import TyperGroup

warnings.filterwarnings("ignore", message="pkg_resources is deprecated")

_state = {"debug": False}


class UsageError(Exception):
    """Bad input from the command line: one line, exit code 2."""


# Closed sets of choices: Typer rejects anything else (as one `error:` line, see `_Commands`).
class PlanFormat(str, Enum):
    text = "text"
    json = "json"


class LeaderboardFormat(str, Enum):
    table = "table"
    markdown = "markdown"
    csv = "csv"
    json = "json"
    html = "html"


class CompareFormat(str, Enum):
    text = "text"
    json = "json"
    markdown = "markdown"
    github = "github"


class Launcher(str, Enum):
    """How train-and-eval runs its training stages (the config's launch.launcher)."""

    inprocess = "inprocess"
    accelerate = "accelerate"


class SweepLauncher(str, Enum):
    local = "local"
    slurm = "slurm"


class SlurmExecutor(str, Enum):
    slurm = "slurm"
    local = "local"


# Options that several commands share, declared once.
ConfigOpt = Annotated[Optional[Path], typer.Option("--config", "-c", help="Experiment YAML (default: configs/tiny.yaml).")]
SetsOpt = Annotated[Optional[List[str]], typer.Option(
    "--set", help="Override any config option: KEY=VALUE, dotted, repeatable (e.g. online.alpha=0.01, "
                  "mt-bench.max_new_tokens=64); in a sweep, for every cell.")]
MethodsOpt = Annotated[Optional[List[str]], typer.Option(
    "--methods", help="Comma list, e.g. sft,dpo,selm: replaces the config's methods.")]
SuitesOpt = Annotated[Optional[List[str]], typer.Option(
    "--suites", help="Comma list, e.g. tiny-world,lm-eval:openllm: replaces the config's suites.")]
OutOpt = Annotated[Optional[Path], typer.Option(
    "--out", "-o", help="Output folder (default, under the config's output_dir: <name> for train-and-eval, "
                        "sweeps/<name> for sweep, eval-<model name> for eval).")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Recompute every stage (eval: every suite), also those done.")]
KeepStaleOpt = Annotated[bool, typer.Option(
    "--keep-stale", help="Keep finished stages whose code or libraries changed since they ran.")]
DataDirOpt = Annotated[Optional[Path], typer.Option(
    "--data-dir", help="Local mirror of the suites' data (see docs/suites.md): MT-Bench questions and categories, "
                       "AlpacaEval's reference outputs.")]
JudgeOpt = Annotated[Optional[str], typer.Option(
    "--judge", help="Judge, e.g. openai:gpt-4 or oracle (judge: instead of the one the answers were made for).")]
MetricOpt = Annotated[Optional[List[str]], typer.Option(
    "--metric", "-m", help="SUITE/METRIC (repeatable): the columns leaderboard shows, the metrics compare gates "
                           "(default: each suite's headline).")]


def _split(values: Optional[List[str]]) -> Optional[List[str]]:
    if not values:
        return None
    return [v.strip() for item in values for v in item.split(",") if v.strip()]


def _split_suites(values: Optional[List[str]]) -> Optional[List[str]]:
    """Like `_split`, but `lm-eval:hellaswag,arc_easy` keeps its task list: after a
    `suite:arg` item, names that are not suites continue that item's argument."""
    from selm_bench.harness.core import registry

    items = _split(values)
    if not items:
        return items
    out: list[str] = []
    for v in items:
        if out and ":" in out[-1] and ":" not in v and not registry.has("suite", v):
            out[-1] += "," + v
        else:
            out.append(v)
    return out


def _set_value(sets: Optional[List[str]], key: str) -> Optional[str]:
    """The last `--set key=value` for `key`, if any."""
    found = None
    for item in sets or []:
        k, _, v = item.partition("=")
        if k.strip() == key:
            found = v.strip()
    return found


def check_run_folder(run_dir: Path, name: str) -> None:
    """`--out` must be new, empty, or a run of the same config name (its stages are reused by key)."""
    import yaml

    if run_dir.exists() and not run_dir.is_dir():
        raise UsageError(f"--out {run_dir}: exists and is not a directory")
    if not run_dir.is_dir() or not any(run_dir.iterdir()):
        return
    if not (run_dir / "manifest.json").is_file() or not (run_dir / "config.yaml").is_file():
        raise UsageError(f"--out {run_dir}: not empty and not a selm-bench run folder; choose another --out")
    try:
        previous = (yaml.safe_load((run_dir / "config.yaml").read_text()) or {}).get("name")
    except yaml.YAMLError:
        raise UsageError(f"--out {run_dir}: its config.yaml is corrupt; choose another --out") from None
    if previous is not None and previous != name:
        raise UsageError(f"--out {run_dir}: a run of config {previous!r}, not {name!r}; choose another --out")


def check_checkpoint(path: Path) -> None:
    """A local checkpoint folder that cannot load is bad input: say which file, before anything is written."""
    if path.is_file() or not (path / "config.json").is_file():
        raise UsageError(f"--model {path}: not a checkpoint folder (no config.json)")
    from safetensors import safe_open

    for f in sorted(path.glob("*.safetensors")):
        try:
            with safe_open(str(f), framework="pt"):
                pass
        except Exception as e:  # noqa: BLE001 - any unreadable weights file is the same message
            raise UsageError(f"--model {path}: {f.name} is truncated or corrupt ({str(e).splitlines()[0]})") from None


def _fail(exc: BaseException) -> None:
    """The one error handler: one `error:` line (the traceback first with --debug), exit 2 for bad
    input, else 1."""
    from selm_bench.harness.core.config import ConfigError
    from selm_bench.harness.core.registry import InputError, RegistryError
    from selm_bench.harness.reports.compare import CompareError
    from selm_bench.harness.reports.modelcard import PushError
    from selm_bench.harness.run.preflight import PreflightError
    from selm_bench.harness.run.staleness import StaleError
    from selm_bench.harness.world import DataFileError

    if _state["debug"]:
        traceback.print_exception(exc)
    bad_input = (ConfigError, UsageError, RegistryError, StaleError, DataFileError, PreflightError, PushError,
                 CompareError, InputError)
    code = 2 if isinstance(exc, bad_input) else 1
    msg = str(exc) or type(exc).__name__
    typer.echo(f"error: {msg.splitlines()[0] if msg else type(exc).__name__}", err=True)
    raise typer.Exit(code)


def one_line_errors(command: Callable[..., None]) -> Callable[..., None]:
    """A command whose every failure is one `error:` line, as `_fail` writes it, and that lets go of
    the run folders it held (`runlock.hold_run`) when it ends. Goes under `@app.command(...)`."""

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> None:
        try:
            command(*args, **kwargs)
        except typer.Exit:
            raise
        except Exception as e:  # noqa: BLE001 - every failure becomes one line
            _fail(e)
        finally:
            from selm_bench.harness.core.runlock import release_held

            release_held()

    return run


def _given(argv: List[str], opts: List[str]) -> Optional[str]:
    """The value last given to an option (any of its names `opts`) in `argv`."""
    value = None
    for i, token in enumerate(argv):
        if token == "--":
            break
        for opt in opts:
            if token == opt and i + 1 < len(argv):
                value = argv[i + 1]
            elif token.startswith(opt + "=" if opt.startswith("--") else opt) and token != opt:
                value = token[len(opt) + 1:] if opt.startswith("--") else token[len(opt):]
    return value


def _bad_choice(e: typer.BadParameter, argv: List[str]) -> Optional[str]:
    """`--format: expected text or json, got 'yaml'` when Typer rejected the value of an Enum option."""
    param, ctx = e.param, e.ctx
    callback = getattr(getattr(ctx, "command", None), "callback", None)
    if param is None or callback is None:
        return None
    try:
        hint = typing.get_type_hints(callback, include_extras=True).get(param.name)
    except Exception:  # noqa: BLE001 - not a hint we can read: Typer's own message
        return None
    args = typing.get_args(hint) if typing.get_origin(hint) is Annotated else (hint,)
    choice = next((t for t in (args[0], *typing.get_args(args[0])) if isinstance(t, type) and issubclass(t, Enum)), None)
    if choice is None:
        return None
    name = next((o for o in param.opts if o.startswith("--")), param.opts[0])
    values = [c.value for c in choice]
    given = _given(argv, list(param.opts))
    return (f"{name}: expected {', '.join(values[:-1])} or {values[-1]}"
            + (f", got {given!r}" if given is not None else ""))


class _Commands(TyperGroup):
    """The app's command group: a value Typer rejects for an Enum option is bad input like any other
    (one `error:` line, exit 2), not Typer's usage box."""

    def parse_args(self, ctx: Any, args: List[str]) -> List[str]:
        ctx.meta["selm_bench.argv"] = list(args)
        return super().parse_args(ctx, args)

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except typer.BadParameter as e:
            line = _bad_choice(e, ctx.meta.get("selm_bench.argv", []))
            if line is None:
                raise
            _fail(UsageError(line))


app = typer.Typer(
    cls=_Commands, add_completion=False, no_args_is_help=True, rich_markup_mode="markdown",
    help="Train SELM, DPO and iterative DPO; evaluate every checkpoint through one registry; compare on one leaderboard.",
)


def _quiet_libraries() -> None:
    from selm_bench.harness.core.progress import quiet_libraries

    quiet_libraries()


@app.callback()
def _root(debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks on errors.")] = False) -> None:
    from selm_bench.harness.core.progress import before_library_imports

    before_library_imports()  # thread and progress-bar settings, before any command imports torch or tqdm
    _state["debug"] = debug


@app.command("train-and-eval")
@one_line_errors
def train_and_eval_cmd(
    config: ConfigOpt = None,
    out: OutOpt = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Override the config's seed.")] = None,
    methods: MethodsOpt = None,
    suites: SuitesOpt = None,
    sets: SetsOpt = None,
    force: ForceOpt = False,
    launcher: Annotated[Optional[Launcher], typer.Option(
        "--launcher", help="inprocess (the config's default) or accelerate: each training stage under `accelerate launch`.")] = None,
    accelerate_config: Annotated[Optional[Path], typer.Option(
        "--accelerate-config", help="accelerate config file, e.g. configs/accelerate/zero3.yaml.")] = None,
    num_processes: Annotated[Optional[int], typer.Option(
        "--num-processes", help="Training processes (GPUs); the global batch is split across them.")] = None,
    keep_stale: KeepStaleOpt = False,
    push_to_hub: Annotated[Optional[str], typer.Option(
        "--push-to-hub", help="After the run, upload each checkpoint with its model card to private Hub repos "
                              "OWNER/NAME-<checkpoint> (token: `hf auth login` or HF_TOKEN).")] = None,
) -> None:
    """Train every configured method and evaluate every checkpoint on every suite.

    Examples:

    * `selm-bench train-and-eval` (the embedded tiny default; CUDA when present, else CPU; minutes)
    * `selm-bench train-and-eval --methods sft,dpo,selm --set online.alpha=0.01 --out results/alpha-0.01`
    * `selm-bench train-and-eval --launcher accelerate --num-processes 8 --accelerate-config configs/accelerate/zero3.yaml`

    Rerunning the same command resumes: finished stages are skipped.
    """
    from selm_bench.harness.core.config import load_config

    chosen = launcher.value if launcher else None
    launch = [f"launch.{k}={v}" for k, v in (("launcher", chosen), ("accelerate_config", accelerate_config),
                                              ("num_processes", num_processes)) if v is not None]
    if (accelerate_config or num_processes) and (chosen or _set_value(sets, "launch.launcher")) != "accelerate":
        raise UsageError("--accelerate-config and --num-processes need --launcher accelerate")
    cfg = load_config(config, overrides={"seed": seed, "methods": _split(methods), "suites": _split_suites(suites)},
                      sets=[*(sets or []), *launch])
    run_dir = out or Path(cfg.output_dir) / cfg.name
    check_run_folder(run_dir, cfg.name)
    _quiet_libraries()
    from selm_bench.harness.reports.leaderboard import print_table
    from selm_bench.harness.run.pipeline import train_and_eval

    if push_to_hub:  # a bad repo id or offline mode fails before training
        from selm_bench.harness.reports.modelcard import check_push

        check_push(push_to_hub)
    rows = train_and_eval(cfg, run_dir, force=force, command=sys.argv, keep_stale=keep_stale)
    print_table(rows, title=f"leaderboard: {run_dir}")
    from selm_bench.harness.reports.report import write_report

    report = write_report(run_dir)
    typer.echo(f"wrote {run_dir / 'leaderboard.csv'}, leaderboard.json and {report}", err=True)
    if push_to_hub:
        from selm_bench.harness.reports.modelcard import push_run

        for name, url in push_run(run_dir, push_to_hub).items():
            typer.echo(f"pushed {name}: {url}", err=True)


data_app = typer.Typer(help="The real suites' data: `selm-bench data pull`.", no_args_is_help=True)
app.add_typer(data_app, name="data")


@data_app.command("pull")
@one_line_errors
def data_pull_cmd(
    suites: Annotated[Optional[List[str]], typer.Option("--suites", help="Comma list (default: mt-bench,alpaca-eval).")] = None,
    to: Annotated[Optional[Path], typer.Option(
        "--to", help="Folder (default: $SELM_BENCH_DATA or ~/.cache/selm-bench/data).")] = None,
) -> None:
    """Download the real suites' data from their canonical sources (pinned commits, SHA-256
    checked) to where the suites find it without --data-dir.

    Examples: `selm-bench data pull`, `selm-bench data pull --suites mt-bench --to /data/mirror`
    """
    from selm_bench.harness.datapull import default_dir, default_suites, pull, pullable

    names = _split(suites) or default_suites()
    known = pullable()
    for name in names:
        if name not in known:
            raise UsageError(f"{name}: not a suite with data to pull (pullable: {', '.join(known)})")
    done = pull(names, to)
    for dest, how in done.items():
        typer.echo(f"{how:10s} {dest}", err=True)
    typer.echo(f"data in {to or default_dir()}", err=True)


@app.command("plan")
@one_line_errors
def plan_cmd(
    config: ConfigOpt = None,
    fmt: Annotated[PlanFormat, typer.Option("--format", "-f", help="Output format.")] = PlanFormat.text,
    methods: MethodsOpt = None,
    suites: SuitesOpt = None,
    sets: SetsOpt = None,
) -> None:
    """Print every stage a config would run, with inputs, outputs, hyperparameters, call counts,
    rough GPU-hours and judge cost, and the hub artefacts it would fetch. Downloads and runs nothing.
    `--methods` / `--suites` replace the config's lists, as in train-and-eval.

    Examples: `selm-bench plan --config configs/zephyr-7b.yaml`, `selm-bench plan -c configs/llama-3-8b-instruct.yaml -f json`,
    `selm-bench plan --methods selm --suites tiny-world`
    """
    from selm_bench.harness.core.config import load_config
    from selm_bench.harness.run.plan import describe, to_text

    d = describe(load_config(config, overrides={"methods": _split(methods), "suites": _split_suites(suites)},
                             sets=sets or []))
    sys.stdout.write(json.dumps(d, indent=1) + "\n" if fmt is PlanFormat.json else to_text(d))


@app.command("leaderboard")
@one_line_errors
def leaderboard_cmd(
    results: Annotated[Optional[List[Path]], typer.Option(
        "--results", "-r", help="A run folder or a folder of runs (repeatable; default: results).")] = None,
    suite: Annotated[Optional[str], typer.Option("--suite", "-s", help="Show every metric of this suite.")] = None,
    metric: MetricOpt = None,
    sort: Annotated[Optional[str], typer.Option("--sort", help="Sort by this SUITE/METRIC, best first.")] = None,
    show_all: Annotated[bool, typer.Option(
        "--all", help="Every metric, not just each suite's headline (json and csv: always).")] = False,
    published: Annotated[bool, typer.Option("--published/--no-published", help="Add the published reference rows.")] = True,
    fmt: Annotated[LeaderboardFormat, typer.Option("--format", "-f", help="Output format.")] = LeaderboardFormat.table,
) -> None:
    """Every run and import under the given folders beside the published rows, one compact table.

    A row per checkpoint, each suite's headline metric (± a 95% interval), what is not canonical
    (tiny world, oracle or local judge) and where each row comes from. json and csv carry every
    metric (standard errors, counts, per-turn scores) unless --suite or --metric narrows them.
    Examples: `selm-bench leaderboard --results results/tiny`, `selm-bench leaderboard --suite mt-bench`,
    `selm-bench leaderboard --format json`
    """
    from selm_bench.harness.reports import leaderboard as L

    folders = results or [Path("results")]
    for folder in folders:
        if not folder.is_dir():
            raise UsageError(f"--results {folder}: no such folder")
    rows = L.collect_many(folders, published=published)
    try:
        cols = L.select_columns(rows, suite=suite, metrics=_split(metric), show_all=show_all, fmt=fmt.value)
        if sort:
            rows = L.sort_rows(rows, sort)
    except ValueError as e:  # an unknown suite or metric
        raise UsageError(str(e)) from None
    rows = L.restrict(rows, cols)
    title = "leaderboard: " + ", ".join(str(f) for f in folders) + (" + published" if published else "")
    if fmt is LeaderboardFormat.table:
        L.print_table(rows, title=title, metric_cols=cols)
    elif fmt is LeaderboardFormat.html:
        from selm_bench.harness.reports.report import leaderboard_page

        sys.stdout.write(leaderboard_page(rows, title=title) + "\n")
    else:
        write = {LeaderboardFormat.markdown: L.to_markdown, LeaderboardFormat.csv: L.to_csv,
                 LeaderboardFormat.json: lambda r: L.to_json(r) + "\n"}[fmt]
        sys.stdout.write(write(rows))


@app.command("sweep")
@one_line_errors
def sweep_cmd(
    grid: Annotated[List[str], typer.Option("--grid", "-g", help="KEY=V1,V2,... a swept config value (repeatable).")],
    config: ConfigOpt = None,
    seeds: Annotated[Optional[str], typer.Option("--seeds", help="Comma list of seeds (default: the config's seed).")] = None,
    out: OutOpt = None,
    methods: MethodsOpt = None,
    suites: SuitesOpt = None,
    sets: SetsOpt = None,
    launcher: Annotated[SweepLauncher, typer.Option(
        "--launcher", help="local (cells one after another) or slurm (submitit jobs).")] = SweepLauncher.local,
    partition: Annotated[Optional[str], typer.Option("--partition", help="Slurm partition.")] = None,
    gpus: Annotated[int, typer.Option("--gpus", min=0, help="Slurm: GPUs per cell job.")] = 1,
    time_min: Annotated[int, typer.Option("--time", min=1, help="Slurm: time limit per cell job, minutes.")] = 24 * 60,
    mem_gb: Annotated[int, typer.Option("--mem", min=1, help="Slurm: memory per cell job, GB.")] = 64,
    cpus: Annotated[int, typer.Option("--cpus", min=1, help="Slurm: CPUs per cell job.")] = 8,
    executor: Annotated[SlurmExecutor, typer.Option(
        "--slurm-executor", hidden=True, help="submitit cluster: slurm, or local (tests).")] = SlurmExecutor.slurm,
    cache: Annotated[Optional[Path], typer.Option(
        "--cache", help="Stage cache folder (default: OUT/cache); share it between sweeps.")] = None,
) -> None:
    """Run a grid of config values × seeds on one shared stage cache; one table (mean ± std over seeds).

    Example: `selm-bench sweep --grid online.alpha=0,0.001,0.1 --seeds 0,1,2 --methods selm --suites tiny-world`
    Cells sharing a stage (same key: sft and dpo under an alpha grid) compute it once. Rerun to resume.
    """
    from selm_bench.harness.core.config import load_config
    from selm_bench.harness.run import sweep as S

    seed_list = None
    if seeds is not None:
        try:
            seed_list = [int(x) for x in seeds.split(",") if x.strip()]
        except ValueError:
            raise UsageError(f"--seeds {seeds!r}: expected integers, e.g. 0,1,2") from None
        if not seed_list or len(set(seed_list)) != len(seed_list):
            raise UsageError(f"--seeds {seeds!r}: expected distinct integers, e.g. 0,1,2")
    base = load_config(config, overrides={"methods": _split(methods), "suites": _split_suites(suites)}, sets=sets or [])
    out_dir = out or Path(base.output_dir) / "sweeps" / base.name
    if out_dir.exists() and (not out_dir.is_dir() or (any(out_dir.iterdir()) and not (out_dir / S.SWEEP_FILE).is_file())):
        raise UsageError(f"--out {out_dir}: not empty and not a sweep folder; choose another --out")
    _quiet_libraries()
    from selm_bench.harness.core.progress import say

    summary = S.sweep(config, S.parse_grid(grid), seed_list or [base.seed], out_dir, methods=_split(methods),
                      suites=_split_suites(suites), sets=sets or [], launcher=launcher.value, command=sys.argv,
                      slurm=S.SlurmOptions(partition=partition, gpus=gpus, time_min=time_min, mem_gb=mem_gb,
                                           cpus=cpus, executor=executor.value),
                      on_cell=lambda c: say(f"[bold]cell {c.name}[/bold]"), cache=cache)
    S.print_summary(summary, out_dir)
    from selm_bench.harness.reports.report import write_report

    report = write_report(out_dir)
    typer.echo(f"wrote {out_dir / 'summary.csv'}, table.csv, groups/*/seeds.json (for compare) and {report}", err=True)


@app.command("report")
@one_line_errors
def report_cmd(
    target: Annotated[Path, typer.Argument(help="A run folder or a sweep folder.")],
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="HTML file (default: TARGET/report.html).")] = None,
) -> None:
    """One self-contained HTML file: leaderboard, plots, provenance and per-suite drill-down.

    Example: `selm-bench report results/tiny` then open results/tiny/report.html in a browser.
    """
    from selm_bench.harness.core.runlock import hold_run, run_folder_of
    from selm_bench.harness.reports.report import write_report

    if output is None and target.is_dir():  # it writes TARGET/report.html: one writer per run folder
        hold_run(run_folder_of(target) or target)
    try:
        path = write_report(target, output)
    except (FileNotFoundError, ValueError) as e:  # not a run or sweep folder
        raise UsageError(str(e)) from None
    typer.echo(f"wrote {path}", err=True)


@app.command("compare")
@one_line_errors
def compare_cmd(
    base: Annotated[str, typer.Argument(help="RUN_DIR[:checkpoint] (default checkpoint: the run's last).")],
    new: Annotated[str, typer.Argument(help="RUN_DIR[:checkpoint], compared against BASE.")],
    metric: MetricOpt = None,
    threshold: Annotated[Optional[List[str]], typer.Option(
        "--threshold", "-t", help="M=DELTA: a regression of M counts only beyond DELTA (repeatable).")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Bootstrap seed (same seed, same intervals).")] = 0,
    resamples: Annotated[int, typer.Option("--resamples", min=100, help="Bootstrap resamples.")] = 1000,
    fmt: Annotated[CompareFormat, typer.Option(
        "--format", "-f", help="markdown: the gated metrics' table, for a pull request; github: GitHub Actions "
                               "annotations, then the table (also appended to $GITHUB_STEP_SUMMARY when set).")
    ] = CompareFormat.text,
) -> None:
    """Paired comparison of two runs, item by item, with bootstrap intervals and verdicts.

    Exit 0: no gated metric regressed significantly beyond its threshold; 1: one did; 2: bad input.
    Example: `selm-bench compare results/base results/new:selm/iter-2 --threshold tiny-world/accuracy=0.01`;
    in CI: `selm-bench compare ci/baseline results/ci --format github`
    """
    from selm_bench.harness.reports import compare as C

    thresholds: dict[str, float] = {}
    for t in threshold or []:
        key, eq, value = t.partition("=")
        try:
            thresholds[key.strip()] = float(value)
        except ValueError:
            raise UsageError(f"--threshold {t!r}: expected METRIC=DELTA with a number, e.g. tiny-world/accuracy=0.01") from None
        if not eq or thresholds[key.strip()] < 0:
            raise UsageError(f"--threshold {t!r}: expected METRIC=DELTA with DELTA >= 0")
    b, w = C.parse_side(base), C.parse_side(new)
    results = C.compare(b, w, gated=_split(metric), thresholds=thresholds, seed=seed, resamples=resamples)
    if fmt is CompareFormat.json:
        sys.stdout.write(C.to_json(b, w, results, seed) + "\n")
    elif fmt is CompareFormat.markdown:
        sys.stdout.write(C.to_markdown(b, w, results))
    elif fmt is CompareFormat.github:
        sys.stdout.write(C.to_github(b, w, results))
        try:
            C.append_step_summary(C.to_markdown(b, w, results))
        except OSError as e:  # the comparison stands; only the job summary is missing
            typer.echo(f"warning: GITHUB_STEP_SUMMARY not written: {e}", err=True)
    else:
        sys.stdout.write(C.to_text(b, w, results))
    raise typer.Exit(1 if C.failed(results) else 0)


def _model_name(model: str) -> str:
    p = Path(model)
    if p.name == "model" and p.parent.name:  # a run's checkpoint: .../checkpoints/<name>/model
        parts = p.parts
        if "checkpoints" in parts:
            return "/".join(parts[parts.index("checkpoints") + 1 : -1])
        return p.parent.name
    return p.name or model


def _detect_world(model: str) -> Optional[Path]:
    """A checkpoint inside a run directory evaluates on that run's tiny world by default."""
    p = Path(model).resolve()
    for parent in p.parents:
        if (parent / "world" / "data" / "eval.jsonl").is_file():
            return parent / "world" / "data"
    return None


def _local_ref(path: Path) -> "Ref":
    """A local input of `eval` (the model, the world's data, the SFT reference) by its absolute path,
    keyed by what it holds, so a suite done on it is redone when it changes: the key of the run
    stage that made it (its stage.json; a world's data: its parent's), else its files' fingerprint."""
    from selm_bench.harness.core.specs import Ref
    from selm_bench.harness.core.store import read_json, stable_hash

    path = path.resolve()
    for folder in (path, path.parent):
        rec = read_json(folder / "stage.json") if (folder / "stage.json").is_file() else None
        if isinstance(rec, dict) and rec.get("status") == "done" and rec.get("key"):
            return Ref(path=str(path), key=rec["key"])
    files = sorted(f for f in path.rglob("*") if f.is_file() and not f.name.startswith("."))
    return Ref(path=str(path), key=stable_hash([[str(f.relative_to(path)), f.stat().st_size, f.stat().st_mtime_ns]
                                                for f in files]))


def _check_model(model: str, trust: bool) -> None:
    """`eval --model`: a local checkpoint that loads (and runs foreign code only if trusted), or a
    hub id that resolves; else bad input, before anything is written."""
    if not Path(model).exists():
        if model.startswith((".", "/", "~")) or model.count("/") > 1:
            raise UsageError(f"--model {model}: no such local checkpoint")
        from transformers import AutoConfig

        AutoConfig.from_pretrained(model, trust_remote_code=trust)  # a hub id: fail here
        return
    check_checkpoint(Path(model))
    from selm_bench.harness.core.config import needs_remote_code

    if needs_remote_code(model) and not trust:
        raise UsageError(f"--model {model}: it ships its own code (auto_map in config.json); to run it, "
                         f"name it in model.trust_remote_code (--set 'model.trust_remote_code=[{model}]')")


@app.command("eval")
@one_line_errors
def eval_cmd(
    model: Annotated[str, typer.Option("--model", "-m", help="Local checkpoint path or hub id.")],
    suites: Annotated[List[str], typer.Option(
        "--suites", "-s", help="Comma list, e.g. mt-bench,alpaca-eval,lm-eval:openllm,brainteaser.")],
    out: OutOpt = None,
    data_dir: DataDirOpt = None,
    judge: JudgeOpt = None,
    sets: SetsOpt = None,
    no_judge: Annotated[bool, typer.Option(
        "--no-judge", help="Generate and save answers only; judge later with `selm-bench judge` "
                           "(or rerun without --no-judge).")] = False,
    world: Annotated[Optional[Path], typer.Option(
        "--world", help="Tiny-world data folder (run the suites' embedded mode).")] = None,
    name: Annotated[Optional[str], typer.Option("--name", help="Row label (default: the model's name).")] = None,
    config: ConfigOpt = None,
    force: ForceOpt = False,
    keep_stale: KeepStaleOpt = False,
) -> None:
    """Evaluate one model on the given suites.

    Examples:

    * `selm-bench eval --model results/tiny/checkpoints/selm/iter-2/model --suites tiny-world,mt-bench`
    * `selm-bench eval --model HuggingFaceH4/zephyr-7b-beta --suites mt-bench,alpaca-eval --data-dir ../shared/data --judge openai:gpt-4`

    Each suite runs as an eval stage, as in train-and-eval: rerunning the same command skips the
    suites done (and judges answers saved with --no-judge).
    """
    from selm_bench.harness.core import registry
    from selm_bench.harness.core.config import load_config

    suite_list = _split_suites(suites) or []
    for s in suite_list:
        if not registry.has("suite", s):
            raise UsageError(f"--suites: unknown suite {s!r} (known: {', '.join(registry.names('suite'))})")
    if judge and not registry.has("judge", judge):
        raise UsageError(f"--judge: unknown judge {judge!r} (known: {', '.join(registry.names('judge'))})")
    cfg = load_config(config, sets=sets or [])
    if data_dir is not None and not data_dir.is_dir():
        raise UsageError(f"--data-dir {data_dir}: not a directory")
    if world is not None and not (world / "eval.jsonl").is_file():
        raise UsageError(f"--world {world}: no eval.jsonl there (pass a run's world/data folder)")
    if data_dir is not None:
        cfg.eval.data_dir = str(data_dir.resolve())
    world_dir = world.resolve() if world else (None if data_dir else _detect_world(model))
    label = name or _model_name(model)
    run_dir = out or Path(cfg.output_dir) / f"eval-{label.replace('/', '-')}"
    _quiet_libraries()
    from selm_bench.harness.core.specs import Ref
    from selm_bench.harness.core.store import RunStore
    from selm_bench.harness.reports.leaderboard import refresh
    from selm_bench.harness.run.pipeline import check_before_writing, run_evals
    from selm_bench.harness.run.stages import Stage, eval_spec, judge_runtime

    trust = cfg.model.trusts(model)  # the model's own code runs only when the config names --model as it is given
    _check_model(model, trust)
    refs = {}
    if world_dir is not None and (world_dir.parent.parent / "checkpoints" / "sft" / "model").is_dir():
        refs["sft"] = _local_ref(world_dir.parent.parent / "checkpoints" / "sft" / "model")
    # --judge, else a judge named in --set or --config, else oracle in the tiny world / gpt-4 on real data
    chosen_judge = (judge or _set_value(sets, "eval.judge") or (cfg.eval.judge if config else None)
                    or ("oracle" if world_dir else "openai:gpt-4"))
    model_ref = _local_ref(Path(model)) if Path(model).exists() else Ref(path=model)
    world_ref = _local_ref(world_dir) if world_dir else None
    stages = [Stage(f"eval {label} {suite}", suite, eval_spec(cfg, model_ref, label, suite, world_ref, refs, trust)
                    .model_copy(update={"judge": chosen_judge}), method="external")
              for suite in suite_list]  # bad suite options fail here, before anything is written
    runtime = {**judge_runtime(cfg), "method": "external", **({"no_judge": True} if no_judge else {})}
    # preflight sees what this command reads: not the config's own model and prompts
    reads = cfg.model_copy(update={"model": cfg.model.model_copy(update={"pretrained": ""}),
                                   "data": cfg.data.model_copy(update={"prompts": ""})})
    created = not run_dir.exists()  # a failure before any suite finishes leaves nothing behind
    with RunStore(run_dir, force=force) as store:
        stale = check_before_writing(reads, store, stages, runtime, keep_stale)
        store.manifest["results"] = [st.folder for st in stages]
        store.start({"model": model, "suites": suite_list, "config": cfg.to_dict()}, cfg.seed, sys.argv)
        if stale:
            store.manifest["kept_stale"] = {st.folder: diff for st, diff in stale}
        try:
            run_evals(store, stages, cfg, runtime)
        except BaseException:
            if created and not any(store.is_done(st.folder, st.key) for st in stages):
                import shutil

                store.close()
                shutil.rmtree(run_dir, ignore_errors=True)
            raise
        store.finish()
        refresh(run_dir, title=f"eval: {label}")


def _recorded_judge_runtime(run: Path) -> dict[str, Any]:
    """The judge settings that change no judgment (concurrency, retries, timeout) that `run` was made
    with: its config.yaml's eval section (`selm-bench eval` records its config under `config`); the
    defaults where it has none."""
    import yaml

    from selm_bench.harness.core.config import RUNTIME, EvalConfig, ExperimentConfig
    from selm_bench.harness.run.stages import judge_runtime

    recorded = yaml.safe_load((run / "config.yaml").read_text()) if (run / "config.yaml").is_file() else None
    recorded = recorded.get("config", recorded) if isinstance(recorded, dict) else {}
    section = (recorded.get("eval") if isinstance(recorded, dict) else None) or {}
    runtime_fields = {k for k, f in EvalConfig.model_fields.items() if f.json_schema_extra == RUNTIME}
    return judge_runtime(ExperimentConfig(eval=EvalConfig(**{k: v for k, v in section.items() if k in runtime_fields})))


@app.command("judge")
@one_line_errors
def judge_cmd(
    directory: Annotated[Path, typer.Argument(help="An eval folder written with --no-judge (or any eval folder).")],
    judge: JudgeOpt = None,
) -> None:
    """Judge answers saved earlier (`--no-judge`); cached judgments are reused.

    Each suite's context is rebuilt from its stage's spec.json (inputs relative to its run folder)
    and the run's judge settings, as a rerun of the run does.
    Example: `selm-bench eval --model M --suites mt-bench --no-judge -o out/m && selm-bench judge out/m`
    """
    from selm_bench.harness.core.runlock import hold_run, run_folder_of
    from selm_bench.harness.core.specs import from_json
    from selm_bench.harness.reports.leaderboard import refresh
    from selm_bench.harness.run.evaluate import eval_context, judge_hook, write_suite_result

    files = sorted(directory.rglob("metrics.json")) if directory.is_dir() else []
    if not files:
        raise UsageError(f"{directory}: no suite results (metrics.json) found")
    hold_run(run_folder_of(directory) or directory)  # one writer per run folder
    _quiet_libraries()
    judged = 0
    for f in files:
        spec = from_json((f.parent / "spec.json").read_text()) if (f.parent / "spec.json").is_file() else None
        hook = judge_hook(spec.suite) if spec is not None and spec.kind == "eval" else None
        if hook is None:
            continue  # not an eval stage's result, or a suite without a judge (lm-eval, brainteaser, tiny-world)
        if judge:
            spec = spec.model_copy(update={"judge": judge})
        run = run_folder_of(f.parent) or directory
        ctx = eval_context(spec, run, f.parent, _recorded_judge_runtime(run))
        write_suite_result(f.parent, spec.suite, ctx, hook(ctx), json.loads(f.read_text()).get("method"))
        judged += 1
        typer.echo(f"judged {spec.suite} for {ctx.name}", err=True)
    if not judged:
        raise UsageError(f"{directory}: nothing to judge (no mt-bench or alpaca-eval answers)")
    root = directory if (directory / "manifest.json").is_file() else files[0].parent.parent
    refresh(root, title=f"judged: {root}")
    from selm_bench.harness.reports.modelcard import write_model_cards

    write_model_cards(root)  # the checkpoints' cards show the new judgments


@app.command("import")
@one_line_errors
def import_cmd(
    file: Annotated[Path, typer.Argument(help="alpaca_eval annotations.json or FastChat judgment .jsonl.")],
    suite: Annotated[str, typer.Option("--suite", help="alpaca-eval or mt-bench.")],
    model: Annotated[Optional[str], typer.Option("--model", help="Model name (required for alpaca-eval).")] = None,
    results: Annotated[Path, typer.Option("--results", "-r", help="Leaderboard folder to add rows to.")] = Path("results"),
    data_dir: DataDirOpt = None,
) -> None:
    """Recompute a suite's metrics from published artefacts and add them as reference rows.

    Examples:

    * `selm-bench import --suite alpaca-eval --model OpenHermes-2.5-Mistral-7B annotations.json`
    * `selm-bench import --suite mt-bench gpt-4_single.jsonl --data-dir ../shared/data`
    """
    from selm_bench.harness.core import registry
    from selm_bench.harness.core.runlock import hold_run
    from selm_bench.harness.core.store import atomic_write_json
    from selm_bench.harness.reports.leaderboard import refresh

    if not file.is_file():
        raise UsageError(f"{file}: file not found")
    _quiet_libraries()
    importable = [n for n in registry.names("suite") if registry.entry("suite", n).import_file]
    if suite not in importable:
        names = " and ".join([", ".join(importable[:-1]), importable[-1]] if len(importable) > 1 else importable)
        raise UsageError(f"--suite: import supports {names}, got {suite!r}")
    # the suite reads its own published artefacts (its registered `import_file`; InputError: bad input)
    found = registry.entry("suite", suite).import_file(file, model, data_dir)
    hold_run(results)  # one writer per results folder
    for name, (metrics, info) in found.items():
        dest = results / "imports" / suite / name.replace("/", "-") / "metrics.json"
        atomic_write_json(dest, {"suite": suite, "checkpoint": name, "method": "reference", "metrics": metrics,
                                 "info": {**info, "source": str(file.resolve())}})
        typer.echo(f"imported {suite} for {name} -> {dest}", err=True)
    refresh(results, title=f"leaderboard: {results}")


@app.command("list")
@one_line_errors
def list_cmd() -> None:
    """List everything registered: methods, suites, judges, rankers, backends.

    Example: `selm-bench list` (a new suite or ranker module under evals/ or trainers/ shows up here)
    """
    from selm_bench.harness.core import registry

    for e in registry.entries():
        typer.echo(f"{e.kind:8s} {e.name:16s} {e.help}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
