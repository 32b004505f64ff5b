"""Run any stage from its spec: `python -m selm_bench.harness.run.run_stage SPEC.json --root RUN --out DIR`.

The pipeline calls `run_stage` in-process for the default; under `--launcher accelerate`
every training process runs this module on the same spec file. `--root` is the run folder
that the spec's relative inputs live in, `--out` the folder to write; `--runtime` (JSON)
carries settings that cannot change the outputs (a judge's concurrency, retries, timeout).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Callable

from selm_bench.harness.core.specs import from_json


def _world(spec, root: Path, out: Path, runtime: dict[str, Any]) -> None:
    from selm_bench.harness.core.store import atomic_write_json
    from selm_bench.harness.world import build_base_model, build_tokenizer, build_world

    counts = build_world(spec.world, seed=spec.seed, out=out / "data")
    if spec.tiny_model is not None:
        tok = build_tokenizer(out / "base-model")
        build_base_model(spec.tiny_model, tok, spec.seed, out / "base-model")
    atomic_write_json(out / "counts.json", counts)


def _data(spec, root: Path, out: Path, runtime: dict[str, Any]) -> None:
    from selm_bench.harness.data import prepare

    prepare(spec, root, out)


def _sft(spec, root: Path, out: Path, runtime: dict[str, Any]) -> None:
    from selm_bench.trainers.train import train_sft

    train_sft(spec, root, out)


def _preference(spec, root: Path, out: Path, runtime: dict[str, Any]) -> None:
    from selm_bench.trainers.train import train_preference

    train_preference(spec, root, out)


def _generate(spec, root: Path, out: Path, runtime: dict[str, Any]) -> None:
    from selm_bench.trainers.online import generate

    generate(spec, root, out)


def _rank(spec, root: Path, out: Path, runtime: dict[str, Any]) -> None:
    from selm_bench.trainers.online import rank

    rank(spec, root, out, runtime)


def _eval(spec, root: Path, out: Path, runtime: dict[str, Any]) -> None:
    from selm_bench.harness.run.evaluate import eval_context, run_suite

    run_suite(eval_context(spec, root, out, runtime), spec.suite)


RUNNERS: dict[str, Callable[..., None]] = {
    "world": _world, "data": _data, "sft": _sft, "preference": _preference, "generate": _generate, "rank": _rank, "eval": _eval,
}


def run_stage(spec: Any, root: Path, out: Path, runtime: dict[str, Any] | None = None) -> None:
    """Write the stage's outputs into `out` (the caller makes it atomic)."""
    Path(out).mkdir(parents=True, exist_ok=True)
    RUNNERS[spec.kind](spec, Path(root), Path(out), runtime or {})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m selm_bench.harness.run.run_stage", description=__doc__.splitlines()[0])
    parser.add_argument("spec", type=Path, help="the stage's spec (JSON)")
    parser.add_argument("--root", type=Path, required=True, help="the run folder (inputs' relative paths)")
    parser.add_argument("--out", type=Path, required=True, help="the folder to write")
    parser.add_argument("--runtime", default="{}", help="JSON: settings that cannot change outputs")
    args = parser.parse_args(argv)
    from selm_bench.harness.core.progress import quiet_libraries

    quiet_libraries()
    run_stage(from_json(args.spec.read_text()), args.root, args.out, json.loads(args.runtime))


if __name__ == "__main__":
    main()
