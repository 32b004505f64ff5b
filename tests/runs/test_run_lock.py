"""One writer per run folder: a second command on a run folder that another
process is writing stops at once with one line naming the holder and exit 1, computes nothing
and leaves the manifest as it was; a holder killed with SIGKILL blocks nothing; the same process
may open its run twice; two processes that miss the same stage-cache key compute it once."""

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import yaml
from support.micro import micro

MICRO = micro("lock",
              methods=["sft"],
              suites=["tiny-world"],
              world={"n_sft": 16, "n_pref": 8, "n_prompts": 8, "n_dev": 4, "n_eval": 4, "n_two_turn": 2, "n_mc": 4},
              sft={"epochs": 1, "batch_size": 16},
              suite_options={"tiny-world": {"max_new_tokens": 4}})
STAGES = {"world", "checkpoints/sft/model", "evals/sft/tiny-world"}

# A writer that opens the run (as every writing command does, through RunStore), says so, and stays.
HOLDER = textwrap.dedent("""
    import sys, time
    from selm_bench.harness.core.store import RunStore
    store = RunStore(sys.argv[1])
    store.start({"name": "lock"}, 0, ["holder"])
    print("holding", flush=True)
    time.sleep(300)
""")


@pytest.fixture
def config(tmp_path) -> Path:
    path = tmp_path / "micro.yaml"
    path.write_text(yaml.safe_dump(MICRO))
    return path


def train_and_eval(config: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "selm_bench.harness.cli", "train-and-eval", "--config", str(config), "--out", str(out)]


def start_holder(out: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(out)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "holding"
    return proc


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=30)


def error_line(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], stderr[-2000:]
    return errors[0]


def manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


def test_a_second_writer_stops_at_once_naming_the_holder(config, tmp_path):
    out = tmp_path / "run"
    holder = start_holder(out)
    try:
        before = (out / "manifest.json").read_bytes()
        t0 = time.time()
        res = subprocess.run(train_and_eval(config, out), capture_output=True, text=True, timeout=120)
        took = time.time() - t0
        assert res.returncode == 1, res.stderr[-2000:]
        line = error_line(res.stderr)
        assert f"pid {holder.pid} on {socket.gethostname()}" in line and str(out) in line, line
        assert res.stdout == ""
        assert took < 60, took  # the CLI's imports, then the refusal: nothing planned is run
        assert (out / "manifest.json").read_bytes() == before  # the holder's manifest, untouched
        assert sorted(p.name for p in out.iterdir()) == [".lock", "config.yaml", "manifest.json"]  # no stage
    finally:
        stop(holder)


def test_a_holder_killed_with_sigkill_does_not_block_the_next_run(config, tmp_path):
    out = tmp_path / "run"
    holder = start_holder(out)
    os.kill(holder.pid, signal.SIGKILL)
    stop(holder)
    assert holder.returncode == -signal.SIGKILL and (out / ".lock").is_file()  # its lock file stays behind
    res = subprocess.run(train_and_eval(config, out), capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    m = manifest(out)
    assert {name for name, rec in m["stages"].items() if rec["status"] == "done"} == STAGES and m["finished"]
    assert not (out / ".lock").exists()  # removed by the writer that ended normally


def test_two_commands_at_once_give_one_finished_run_and_one_refusal(config, tmp_path):
    out = tmp_path / "run"
    procs = [subprocess.Popen(train_and_eval(config, out), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    results = [(p.pid, *p.communicate(timeout=600)[1:], p.returncode) for p in procs]
    assert sorted(rc for *_, rc in results) == [0, 1], [r[1][-800:] for r in results]
    (winner, _, _), (_, refused, _) = sorted(results, key=lambda r: r[2])
    assert f"pid {winner} " in error_line(refused)
    m = manifest(out)
    assert set(m["stages"]) == STAGES and all(r["status"] == "done" for r in m["stages"].values()) and m["finished"]
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # no half-made folder left


def test_the_same_process_may_open_its_run_again(tmp_path):
    from selm_bench.harness.core.store import RunStore

    out = tmp_path / "run"
    probe = [sys.executable, "-c", "import sys; from selm_bench.harness.core.store import RunStore; RunStore(sys.argv[1])",
             str(out)]
    first = RunStore(out)
    first.start({"name": "lock"}, 0, ["first"])
    first.record("a", "k1", "done", time.time())
    second = RunStore(out)  # e.g. train-and-eval, then another writer in this process: no deadlock
    assert second.manifest["stages"]["a"]["key"] == "k1"
    second.record("b", "k2", "done", time.time())
    first.close()  # the other store still holds the folder for this process
    res = subprocess.run(probe, capture_output=True, text=True, timeout=120)
    assert res.returncode != 0 and "RunLocked" in res.stderr and f"pid {os.getpid()} " in res.stderr
    del second  # a store that is garbage lets go
    res = subprocess.run(probe, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert set(manifest(out)["stages"]) == {"a", "b"} and not (out / ".lock").exists()


def test_a_command_without_a_store_holds_the_run_folder_it_writes_into(tmp_path):
    from selm_bench.harness.core.runlock import RunLocked
    from selm_bench.harness.core.store import RunStore

    out = tmp_path / "run"
    (out / "evals" / "m").mkdir(parents=True)
    (out / "manifest.json").write_text("{}")
    # as `judge RUN/evals/m` would: the run folder it is in, held until the command exits
    judge = subprocess.Popen([sys.executable, "-c", textwrap.dedent("""
        import sys
        from selm_bench.harness.core.runlock import hold_run, run_folder_of
        hold_run(run_folder_of(sys.argv[1]))
        print("holding", flush=True)
        sys.stdin.readline()
    """), str(out / "evals" / "m")], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert judge.stdout.readline().strip() == "holding"
        with pytest.raises(RunLocked, match=f"pid {judge.pid} "):
            RunStore(out)
    finally:
        judge.communicate("\n", timeout=60)
    assert judge.returncode == 0 and not (out / ".lock").exists()  # let go, and its file removed, at exit
    RunStore(out).close()


# A cell that needs stage `key`: looks it up in the shared cache; on a miss computes it (counted
# in `log`) until the file `go` exists, then publishes it.
CELL = textwrap.dedent("""
    import json, os, sys, time
    from pathlib import Path
    from selm_bench.harness.run.stage_cache import StageCache
    cache, key, work = StageCache(Path(sys.argv[1])), sys.argv[2], Path(sys.argv[3])
    found = cache.lookup(key, None)
    if found is None:
        with open(work / "computed.log", "a") as f:
            f.write(f"{os.getpid()}\\n")
        while not (work / "go").exists():
            time.sleep(0.05)
        folder = work / f"stage-{os.getpid()}"
        folder.mkdir()
        (folder / "weights.txt").write_text(str(os.getpid()))
        (folder / "stage.json").write_text(json.dumps({"status": "done", "key": key}))
        cache.publish(key, folder)
        print("computed", flush=True)
    else:
        print("found", (found / "weights.txt").read_text(), flush=True)
""")


def test_two_processes_missing_one_cache_key_compute_it_once(tmp_path):
    cache, key = tmp_path / "cache", "0123456789abcdef"
    cell = [sys.executable, "-c", CELL, str(cache), key, str(tmp_path)]
    first = subprocess.Popen(cell, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (tmp_path / "computed.log").exists():  # the first claimed the key and is computing it
        assert first.poll() is None and time.time() < deadline, first.communicate()
        time.sleep(0.05)
    second = subprocess.Popen(cell, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    said: list[str] = []
    reader = threading.Thread(target=lambda: said.append(second.stderr.readline()), daemon=True)
    reader.start()
    reader.join(timeout=120)  # it says whom it waits for, then waits
    try:
        assert said and f"waiting for stage {key}: pid {first.pid} " in said[0], (said, (tmp_path / "computed.log").read_text())
    except AssertionError:
        (tmp_path / "go").touch()
        stop(first), stop(second)
        raise
    (tmp_path / "go").touch()
    out1, err1 = first.communicate(timeout=120)
    out2, err2 = second.communicate(timeout=120)
    assert (first.returncode, second.returncode) == (0, 0), (err1[-2000:], err2[-2000:])
    assert out1.split() == ["computed"] and out2.split() == ["found", str(first.pid)]
    assert (tmp_path / "computed.log").read_text().split() == [str(first.pid)]  # computed once
    assert sorted(p.name for p in cache.iterdir()) == [key]  # published whole; no claim or temp file left
