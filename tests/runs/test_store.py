"""The run store's building blocks: atomic files and folders, hashes, versions, git state and
stage records, each checked against the standard library or hand-written values."""

import hashlib
import json
import subprocess
from importlib import metadata
from pathlib import Path

import pytest
import yaml

from selm_bench.harness.core import store as S


def test_atomic_files(tmp_path):
    S.atomic_write_text(tmp_path / "a" / "b.txt", "hello")
    assert (tmp_path / "a" / "b.txt").read_text() == "hello" and [p.name for p in (tmp_path / "a").iterdir()] == ["b.txt"]
    with pytest.raises(TypeError):
        S.atomic_write_text(tmp_path / "a" / "b.txt", 42)
    assert (tmp_path / "a" / "b.txt").read_text() == "hello" and [p.name for p in (tmp_path / "a").iterdir()] == ["b.txt"]
    S.atomic_write_json(tmp_path / "x.json", {"p": Path("/q"), "n": float("nan"), "l": [1]})
    assert (tmp_path / "x.json").read_text() == '{\n  "p": "/q",\n  "n": NaN,\n  "l": [\n    1\n  ]\n}\n'
    assert S.read_json(tmp_path / "none.json") is None and S.read_json(tmp_path / "none.json", {}) == {}
    assert S.read_json(tmp_path / "x.json")["p"] == "/q"


def test_atomic_dir(tmp_path):
    final = tmp_path / "ckpt"
    (tmp_path / ".ckpt.old.tmp").mkdir()  # left by a killed run
    (tmp_path / ".ckpt.old2.tmp").write_text("x")
    with S.atomic_dir(final) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".ckpt.") and tmp.name.endswith(".tmp")
        (tmp / "w").write_text("1")
        assert not final.exists()
    assert (final / "w").read_text() == "1" and sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]
    with pytest.raises(RuntimeError):
        with S.atomic_dir(final) as tmp:
            (tmp / "w").write_text("2")
            raise RuntimeError("killed halfway")
    assert (final / "w").read_text() == "1" and sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]
    with S.atomic_dir(final) as tmp:
        (tmp / "v").write_text("3")
    assert sorted(p.name for p in final.iterdir()) == ["v"]  # swapped in whole


def test_hash_versions_and_git(monkeypatch):
    obj = {"b": [1, 2], "a": Path("/x")}
    assert S.stable_hash(obj) == hashlib.sha256(b'{"a": "/x", "b": [1, 2]}').hexdigest()[:16]
    assert S.stable_hash({"a": Path("/x"), "b": [1, 2]}) == S.stable_hash(obj)
    versions = S.package_versions()
    assert list(versions) == S.PACKAGES and versions["torch"] == metadata.version("torch")
    assert versions["lm_eval"] == metadata.version("lm-eval") and versions["alpaca_eval"] == metadata.version("alpaca-eval")
    monkeypatch.setattr(S, "PACKAGES", ["no-such-package-xyz"])
    assert S.package_versions() == {"no-such-package-xyz": None}
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(S.__file__).parent, capture_output=True, text=True)
    if head.returncode == 0:  # a checkout (an installed wheel has no git)
        assert S.git_state()["git_commit"] == head.stdout.strip()

    def no_git(*a, **k):
        raise FileNotFoundError("git")

    monkeypatch.setattr(S.subprocess, "run", no_git)
    assert S.git_state() == {"git_commit": None, "git_dirty": None}


def test_run_store_records(tmp_path, monkeypatch):
    monkeypatch.setattr(S, "git_state", lambda: {"git_commit": "abc", "git_dirty": False})
    monkeypatch.setattr(S, "now", lambda: "T")
    st = S.RunStore(tmp_path / "run")
    st.start({"name": "x", "seed": 1}, 1, ["selm-bench", "train-and-eval"])
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text()) == {"name": "x", "seed": 1}
    assert (tmp_path / "run" / "config.yaml").read_text() == "name: x\nseed: 1\n"  # the config's own key order
    m = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert {k: m[k] for k in ("stages", "created", "git_commit", "git_dirty", "seed", "command", "started", "finished")} == {
        "stages": {}, "created": "T", "git_commit": "abc", "git_dirty": False, "seed": 1,
        "command": ["selm-bench", "train-and-eval"], "started": "T", "finished": None}
    assert not st.is_done("sft", "k1")
    st.record("sft", "k1", "running", 0.0)
    assert not (tmp_path / "run" / "sft" / "stage.json").exists() and st.manifest["stages"]["sft"]["status"] == "running"
    st.record("sft", "k1", "done", 0.0, cached=True)
    rec = json.loads((tmp_path / "run" / "sft" / "stage.json").read_text())
    assert {k: rec[k] for k in ("stage", "key", "status", "cached", "git_commit", "git_dirty", "ended")} == {
        "stage": "sft", "key": "k1", "status": "done", "cached": True, "git_commit": "abc", "git_dirty": False, "ended": "T"}
    assert st.is_done("sft", "k1") and not st.is_done("sft", "k2")
    st.finish()
    assert json.loads((tmp_path / "run" / "manifest.json").read_text())["finished"] == "T"
    forced = S.RunStore(tmp_path / "run", force=True)
    assert not forced.is_done("sft", "k1")  # --force: redone once in this run
    forced.record("sft", "k1", "done", 0.0)
    assert forced.is_done("sft", "k1")  # then done
    assert S.RunStore(tmp_path / "run").manifest["created"] == "T"
