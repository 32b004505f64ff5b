"""The `selm-bench` command line (Typer). Human output goes to stderr; data to stdout."""

from __future__ import annotations

import json
import os
import sys
import traceback
import warnings
from pathlib import Path
from typing import List, Optional

import typer

warnings.filterwarnings("ignore", message="pkg_resources is deprecated")

app = typer.Typer(
    add_completion=False, no_args_is_help=True, rich_markup_mode="markdown",
    help="Train SELM, DPO and iterative DPO; evaluate every checkpoint through one registry; compare on one leaderboard.",
)
_state = {"debug": False}


class UsageError(Exception):
    """Bad input from the command line: one line, exit code 2."""


def _split(values: Optional[List[str]]) -> Optional[List[str]]:
    if not values:
        return None
    return [v.strip() for item in values for v in item.split(",") if v.strip()]


def _fail(exc: BaseException) -> None:
    from harness.config import ConfigError
    from harness.registry import RegistryError

    if _state["debug"]:
        traceback.print_exception(exc)
    code = 2 if isinstance(exc, (ConfigError, UsageError, RegistryError)) else 1
    msg = str(exc) or type(exc).__name__
    typer.echo(f"error: {msg.splitlines()[0] if msg else type(exc).__name__}", err=True)
    raise typer.Exit(code)


def _quiet_libraries() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TQDM_DISABLE", "1")  # libraries' tqdm bars; ours are rich
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    for name in ("transformers", "datasets", "lm_eval", "trl", "accelerate", "alpaca_eval", "httpx"):
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        import datasets
        import transformers

        transformers.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
        datasets.disable_progress_bars()
    except ImportError:  # the CLI's light commands (list, leaderboard) do not need them
        pass


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors.")) -> None:
    _state["debug"] = debug


@app.command("train-and-eval")
def train_and_eval_cmd(
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="Experiment YAML (default: configs/tiny.yaml)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Run directory (default: results/<name>)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Override the config's seed."),
    methods: Optional[List[str]] = typer.Option(None, "--methods", help="Comma list, e.g. sft,dpo,selm."),
    suites: Optional[List[str]] = typer.Option(None, "--suites", help="Comma list, e.g. tiny-world,lm-eval."),
    sets: Optional[List[str]] = typer.Option(None, "--set", help="Override any option: KEY=VALUE (dotted)."),
    force: bool = typer.Option(False, "--force", help="Recompute every stage."),
) -> None:
    """Train every configured method and evaluate every checkpoint on every suite.

    Examples:

    * `selm-bench train-and-eval` (the embedded tiny default, CPU, minutes)
    * `selm-bench train-and-eval --methods sft,dpo,selm --set online.alpha=0.01 --out results/alpha-0.01`

    Rerunning the same command resumes: finished stages are skipped.
    """
    try:
        from harness.config import load_config

        cfg = load_config(config, overrides={"seed": seed, "methods": _split(methods), "suites": _split(suites)},
                          sets=sets or [])
        run_dir = out or Path(cfg.output_dir) / cfg.name
        if run_dir.exists() and not run_dir.is_dir():
            raise UsageError(f"--out {run_dir}: exists and is not a directory")
        _quiet_libraries()
        from harness.leaderboard import print_table
        from harness.pipeline import train_and_eval

        rows = train_and_eval(cfg, run_dir, force=force, command=sys.argv)
        print_table(rows, title=f"leaderboard: {run_dir}")
        typer.echo(f"wrote {run_dir / 'leaderboard.csv'} and leaderboard.json", err=True)
    except typer.Exit:
        raise
    except Exception as e:  # noqa: BLE001 - every failure becomes one line (traceback with --debug)
        _fail(e)


@app.command("leaderboard")
def leaderboard_cmd(
    results: Path = typer.Option(Path("results"), "--results", "-r", help="A run directory or a folder of runs."),
    fmt: str = typer.Option("table", "--format", "-f", help="table | markdown | csv | json."),
) -> None:
    """Print the leaderboard of a run (or of every run in a folder, with a `run` column).

    Examples: `selm-bench leaderboard --results results/tiny`, `selm-bench leaderboard --format json`
    """
    try:
        from harness.leaderboard import collect_rows, print_table, to_csv, to_json, to_markdown

        if fmt not in ("table", "markdown", "csv", "json"):
            raise UsageError(f"--format: expected table, markdown, csv or json, got {fmt!r}")
        rows = collect_rows(results)
        if fmt == "table":
            print_table(rows, title=f"leaderboard: {results}")
        else:
            sys.stdout.write({"markdown": to_markdown, "csv": to_csv, "json": lambda r: to_json(r) + "\n"}[fmt](rows))
    except Exception as e:  # noqa: BLE001
        _fail(e)


@app.command("list")
def list_cmd() -> None:
    """List everything registered: methods, suites, judges, rankers, backends."""
    from harness import registry

    for e in registry.entries():
        typer.echo(f"{e.kind:8s} {e.name:16s} {e.help}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
