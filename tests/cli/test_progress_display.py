"""One progress display: an lm-eval suite run through the harness prints no foreign tqdm bar on
stderr, while lm-eval called directly in the same environment does (so the check can fail)."""

import re
import subprocess
import sys

TQDM_BAR = re.compile(r"\d+%\|.*\|\s*\d+/\d+")  # tqdm's "37%|███▋      | 446/1200"

SCRIPT = """
import sys
from pathlib import Path
from selm_bench.harness.core.progress import quiet_libraries
quiet_libraries()
model, world, out, mode = sys.argv[1:5]
if mode == "harness":
    from selm_bench.evals.base import EvalContext
    from selm_bench.harness.run.evaluate import run_suite
    ctx = EvalContext(model=model, name="m", out_dir=Path(out), world_dir=Path(world), suite="lm-eval",
                      backend_options={"batch_size": 8})
    run_suite(ctx, "lm-eval")
else:
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager
    from selm_bench.evals.lm_eval_suite import write_tinyworld_task
    name = write_tinyworld_task(Path(world), Path(out))
    lm_eval.simple_evaluate(model=HFLM(pretrained=model, device="cpu", batch_size=8), tasks=[name],
                            task_manager=TaskManager(include_path=out, include_defaults=False))
"""


def _stderr(mode, tiny_model, tiny_world, tmp_path):
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(tiny_model), str(tiny_world), str(tmp_path / mode), mode],
                          capture_output=True, text=True, timeout=300, env={"HF_HUB_OFFLINE": "1", "PATH": ""})
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stderr


def test_harness_lm_eval_run_shows_no_foreign_bar(tiny_model, tiny_world, tmp_path):
    assert TQDM_BAR.search(_stderr("direct", tiny_model, tiny_world, tmp_path))  # lm-eval's own bars
    err = _stderr("harness", tiny_model, tiny_world, tmp_path)
    assert not TQDM_BAR.search(err), err[-2000:]
    assert (tmp_path / "harness" / "metrics.json").exists()


def test_thread_settings_only_before_torch_loads():
    """OpenMP's wait policy is read when torch loads: set before it, left alone after it."""
    import subprocess
    import sys

    probe = ("import os, sys; os.environ.pop('OMP_WAIT_POLICY', None); os.environ.pop('GOMP_SPINCOUNT', None); {first}"
             "from selm_bench.harness.core import progress; print(os.environ.get('OMP_WAIT_POLICY'), "
             "os.environ.get('GOMP_SPINCOUNT'), os.environ.get('TOKENIZERS_PARALLELISM'))")
    before = subprocess.run([sys.executable, "-c", probe.format(first="")], capture_output=True, text=True)
    after = subprocess.run([sys.executable, "-c", probe.format(first="import torch; ")], capture_output=True, text=True)
    assert before.stdout.split() == ["PASSIVE", "10000", "false"], before.stderr[-500:]
    assert after.stdout.split() == ["None", "None", "false"], after.stderr[-500:]


def test_one_bar_on_a_terminal_none_elsewhere(monkeypatch):
    """A bar only on a terminal, without SELM_BENCH_QUIET, and never nested inside another."""
    from selm_bench.harness.core import progress as P

    monkeypatch.delenv("SELM_BENCH_QUIET", raising=False)
    monkeypatch.setattr(P.sys.stderr, "isatty", lambda: False, raising=False)
    with P.progress("x", 3) as bar:
        assert bar._p is None and P._active == []
    monkeypatch.setattr(P.sys, "stderr", type("TTY", (), {"isatty": lambda self: True, "write": lambda self, s: None,
                                                         "flush": lambda self: None})())
    with P.progress("outer", 3) as bar:
        assert bar._p is not None and P._active == [bar._p]
        with P.progress("inner", 2) as inner:
            assert inner._p is None  # one display at a time
        bar.advance(2)
        assert bar._p.tasks[0].completed == 2 and bar._p.tasks[0].description == "outer"
    assert P._active == []
    monkeypatch.setenv("SELM_BENCH_QUIET", "1")
    with P.progress("x", 3) as bar:
        assert bar._p is None
