"""The locked install: requirements.lock pins every package of `make setup`'s stack
(torch's CPU wheel and selm-bench[dev]) at one version, and this interpreter has exactly those.

`make test` installs from the lock, so a failure here means the environment drifted from it (a package
upgraded by hand, a stale venv) or the lock from pyproject.toml: the numbers of the README's default
table hold only for the locked stack. Packages installed beside the lock (other extras) are fine."""

import importlib.metadata as md
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.version import Version

REPO = Path(__file__).resolve().parents[2]
LOCK = REPO / "requirements.lock"
FIX = "run `make setup` (it installs the lock), or `make lock` where pyproject.toml changed on purpose"


def canonical(name: str) -> str:
    """PEP 503: runs of -, _ and . are one -, case folded."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_lock(path: Path = LOCK) -> dict[str, str]:
    pins: dict[str, str] = {}
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, version = line.partition("==")
        assert sep and name.strip() and version.strip() and ";" not in line, \
            f"{path.name}:{number}: {raw!r} is not `name==version`"
        name = canonical(name.strip())
        assert name not in pins, f"{path.name}:{number}: {name} pinned twice"
        pins[name] = version.strip()
    return pins


def installed() -> dict[str, md.Distribution]:
    """This interpreter's distributions by PEP 503 name; the first on sys.path wins, as for imports."""
    found: dict[str, md.Distribution] = {}
    for dist in md.distributions():
        name = dist.metadata["Name"]
        if name:
            found.setdefault(canonical(name), dist)
    return found


def matches(locked: str, have: str) -> bool:
    """Equal versions; a local label (torch's `+cpu`) is tolerated only where the lock pins the public
    version, as `pip install -r` reads `==2.13.0`; a lock pinning `+cpu` wants exactly that build."""
    lv, hv = Version(locked), Version(have)
    return hv == lv or (lv.local is None and Version(hv.public) == lv)


def test_lock_parses_and_pins_the_stack_the_numbers_depend_on():
    pins = read_lock()
    for name in ("torch", "transformers", "trl", "accelerate", "datasets", "lm-eval", "tokenizers", "numpy"):
        assert name in pins, f"{name} is not pinned in {LOCK.name}"
    assert "selm-bench" not in pins  # the project itself is installed editable, with --no-deps
    assert all(Version(v).local is None for v in pins.values())  # PyPI serves no `+cpu`: public versions only


def test_installed_versions_equal_the_lock():
    have = installed()
    drift = []
    for name, version in sorted(read_lock().items()):
        if name not in have:
            drift.append(f"{name}: locked {version}, not installed")
        elif not matches(version, have[name].version):
            drift.append(f"{name}: locked {version}, installed {have[name].version}")
    assert not drift, f"{sys.prefix} differs from {LOCK.name} ({FIX}):\n  " + "\n  ".join(drift)


def project_requirements() -> list[Requirement]:
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11; the lock is resolved for 3.11
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["dev"]]


def test_the_lock_meets_pyproject_ranges():
    """`pip install selm-bench` keeps the ranges; the lock is one point inside them."""
    pins, wrong = read_lock(), []
    for req in project_requirements():
        if req.marker and not req.marker.evaluate():
            continue
        name = canonical(req.name)
        if name not in pins:
            wrong.append(f"{req}: not in the lock")
        elif not req.specifier.contains(pins[name], prereleases=True):
            wrong.append(f"{req}: the lock has {pins[name]}")
    assert not wrong, f"{LOCK.name} is stale against pyproject.toml (run `make lock`):\n  " + "\n  ".join(wrong)


def test_the_lock_holds_every_dependency_so_pip_adds_none_unpinned():
    """Walk selm-bench[dev]'s requirements through the installed packages' metadata (extras and markers
    evaluated here): each one reached is in the lock, so `pip install -r requirements.lock` resolves
    nothing beyond it."""
    pins, have = read_lock(), installed()
    env = default_environment()
    todo = [(req, "selm-bench[dev]") for req in project_requirements()]
    seen: set[tuple[str, frozenset]] = set()
    missing = []
    while todo:
        req, via = todo.pop()
        name = canonical(req.name)
        key = (name, frozenset(canonical(e) for e in req.extras))
        if key in seen:
            continue
        seen.add(key)
        if name not in pins:
            missing.append(f"{name} (needed by {via})")
            continue
        dist = have.get(name)
        if dist is None:
            continue  # test_installed_versions_equal_the_lock names it
        for spec in dist.requires or []:
            sub = Requirement(spec)
            if sub.marker and not any(sub.marker.evaluate({**env, "extra": extra}) for extra in ["", *key[1]]):
                continue
            todo.append((sub, name + (f"[{','.join(sorted(key[1]))}]" if key[1] else "")))
    assert not missing, f"{LOCK.name} misses packages pip would add unpinned (run `make lock`):\n  " + "\n  ".join(sorted(missing))


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_setup_installs_from_the_lock_and_reruns_when_it_changes(tmp_path):
    """`make -n` only prints: with a fresh stamp nothing is to do; a newer lock (-W) re-runs the install,
    which installs torch's locked CPU wheel, then the lock, then the project without resolving again."""
    venv = tmp_path / "venv"
    venv.mkdir()
    stamp = venv / ".installed"
    stamp.touch()
    future = time.time() + 3600
    os.utime(stamp, (future, future))

    def dry(*args: str) -> str:
        res = subprocess.run(["make", "-n", *args, "setup", f"VENV={venv}"], cwd=REPO, capture_output=True, text=True)
        assert res.returncode == 0, res.stderr
        return res.stdout

    assert "pip install" not in dry()
    recipe = dry("-W", LOCK.name)
    torch = read_lock()["torch"]
    lines = [line for line in recipe.splitlines() if "pip install" in line]
    assert any(f'"torch=={torch}"' in line for line in lines), recipe
    assert any(line.endswith(f"-r {LOCK.name}") for line in lines), recipe
    assert lines[-1].endswith("--no-deps -e ."), recipe
    assert not any(".[dev]" in line for line in lines), recipe  # no second resolution from the ranges
