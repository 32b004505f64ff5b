"""Run `selm-bench` from a test: `run` in a subprocess (a real process: exit code, both streams, its
own imports), `invoke` in-process through Typer's runner (fast; stdout and stderr apart)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner


def run(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`python -m selm_bench.harness.cli ARGS` in a subprocess, output captured as text."""
    return subprocess.run([sys.executable, "-m", "selm_bench.harness.cli", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, env=env)


def invoke(*args: object):
    """The command in-process; the result has exit_code, stdout and stderr."""
    from selm_bench.harness.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])
