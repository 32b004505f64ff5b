"""A non-editable install: the wheel holds one namespace (`selm_bench.*`) plus the default configs and
the published reference rows, and its CLI runs the default config from any directory."""

import json
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    res = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                          "-w", str(out), str(REPO)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
    (whl,) = out.glob("selm_bench-*.whl")
    return whl


def test_wheel_has_one_namespace_and_the_package_data(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == {"selm_bench", f"{wheel.name.split('-')[0]}-{wheel.name.split('-')[1]}.dist-info"}
    for module in ("harness/cli.py", "harness/run/pipeline.py", "trainers/selm_trainer.py", "evals/mt_bench.py"):
        assert f"selm_bench/{module}" in names
    for data in ("configs/tiny.yaml", "configs/zephyr-7b.yaml", "configs/llama-3-8b-instruct.yaml",
                 "configs/accelerate/zero3.yaml", "results/reference/published.csv"):
        assert f"selm_bench/{data}" in names, data
    entry = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "selm-bench = selm_bench.harness.cli:main" in entry
    assert not any(n.startswith(("harness/", "evals/", "trainers/")) for n in names)  # nothing top-level to shadow


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """A fresh venv with the wheel installed (not editable); the heavy dependencies come from this
    interpreter's site-packages through a path file, which does not bring this checkout's editable finder."""
    venv = tmp_path_factory.mktemp("venv") / "v"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = Path(subprocess.run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    (site / "_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    res = subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "-q",
                          "--no-deps", "--no-index", str(wheel)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
    return venv


def test_installed_cli_runs_the_default_config_from_any_directory(installed, tmp_path):
    where = subprocess.run([str(installed / "bin" / "python"), "-c", "import selm_bench.harness.cli as c; print(c.__file__)"],
                           capture_output=True, text=True, cwd=tmp_path)
    assert str(installed) in where.stdout, where.stdout + where.stderr  # the installed copy, not this checkout
    env = {"HF_HUB_OFFLINE": "1", "SELM_BENCH_QUIET": "1", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    plan = subprocess.run([str(installed / "bin" / "selm-bench"), "plan"], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert plan.returncode == 0, plan.stderr[-2000:]
    assert "selm/iter-2" in plan.stdout + plan.stderr  # the shipped default config's plan
    small = ["--methods", "sft", "--suites", "tiny-world", "--set", "world.n_sft=64", "--set", "world.n_eval=8",
             "--set", "sft.epochs=1", "--set", "model.hidden_size=32", "--set", "model.num_layers=1",
             "--set", "model.num_heads=2", "--set", "model.intermediate_size=64", "--set", "tiny-world.max_new_tokens=4"]
    res = subprocess.run([str(installed / "bin" / "selm-bench"), "train-and-eval", *small], capture_output=True,
                         text=True, cwd=tmp_path, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    board = json.loads((tmp_path / "results" / "tiny" / "leaderboard.json").read_text())
    assert [r["checkpoint"] for r in board] == ["sft"]
    published = subprocess.run([str(installed / "bin" / "selm-bench"), "leaderboard", "--results", "results/tiny",
                                "--format", "csv"], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert published.returncode == 0 and "SELM-Zephyr-7B-iter-3" in published.stdout  # published.csv shipped
