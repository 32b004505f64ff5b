"""Rich progress bars and one-line stage summaries, quiet when not on a terminal."""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

# Everything human-facing goes to stderr so `--format json` keeps stdout clean.
console = Console(stderr=True, width=None if sys.stderr.isatty() else 200)


class _Bar:
    def __init__(self, progress: Progress | None, task_id: int | None):
        self._p, self._t = progress, task_id

    def advance(self, n: int = 1) -> None:
        if self._p is not None:
            self._p.advance(self._t, n)


_active: list[Progress] = []


@contextlib.contextmanager
def progress(desc: str, total: int | None) -> Iterator[_Bar]:
    if os.environ.get("SELM_BENCH_QUIET") or not sys.stderr.isatty() or _active:
        yield _Bar(None, None)
        return
    p = Progress(
        TextColumn("[bold blue]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console, transient=True,
    )
    _active.append(p)
    try:
        with p:
            yield _Bar(p, p.add_task(desc, total=total))
    finally:
        _active.pop()


def say(msg: str) -> None:
    console.print(msg, highlight=False)


def before_library_imports() -> None:
    """Settings read once, when a library loads: so this runs when this module is imported (the
    plug-in modules import it before torch) and again from quiet_libraries."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if "tqdm" not in sys.modules:  # tqdm reads TQDM_* when it is imported
        os.environ.setdefault("TQDM_DISABLE", "1")
    # OpenMP threads spin briefly, then sleep (read when torch loads): on a shared 2-core machine
    # threads that keep spinning starve each other (a training stage ran 6-10x slower), while
    # sleeping at once costs a wake-up per op (an SFT epoch 7.1 s vs 5.4 s with the short spin).
    if "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        os.environ.setdefault("GOMP_SPINCOUNT", "10000")


before_library_imports()


def quiet_libraries() -> None:
    """Libraries' own bars, warnings and log lines off: progress is ours, logs go to files."""
    before_library_imports()
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
