"""Small harness contracts, each against a value written out by hand: accelerate's full command
line, a failed launch's one line, the stage cache's link fallback and first-writer-wins, and the
registry's default paired metric."""

import errno
import json
import os
import sys
from pathlib import Path

import pytest

from selm_bench.harness.run import launch as L
from selm_bench.harness.run import stage_cache as SC
from selm_bench.harness.core.config import load_config
from selm_bench.harness.run.stages import train_args
from selm_bench.harness.core.registry import mean_score

TAIL = ["-m", "selm_bench.harness.run.run_stage", "/s/spec.json", "--root", "/r", "--out", "/o"]


def command(monkeypatch, sets, exe=None):
    monkeypatch.setattr(L.shutil, "which", lambda name, path=None: exe)
    monkeypatch.setattr(L, "free_port", lambda: 29123)
    cfg = load_config(sets=sets)
    return L.accelerate_command(Path("/s/spec.json"), Path("/r"), Path("/o"), cfg.launch, train_args(cfg, "sft"))


def test_one_cpu_process_without_an_accelerate_executable(monkeypatch):
    cmd = command(monkeypatch, ["device=cpu", "launch.launcher=accelerate", "launch.num_processes=1"])
    assert cmd == [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "1", "--num_machines", "1",
                   "--mixed_precision", "no", "--dynamo_backend", "no", "--cpu", *TAIL]


@pytest.mark.parametrize("precision,flag", [("bf16", "bf16"), ("fp16", "fp16")])
def test_two_gpu_processes_with_the_executable(monkeypatch, precision, flag):
    cmd = command(monkeypatch, ["device=cuda", f"precision={precision}", "launch.launcher=accelerate",
                                "launch.num_processes=2"], exe="/venv/bin/accelerate")
    assert cmd == ["/venv/bin/accelerate", "launch", "--num_processes", "2", "--num_machines", "1", "--mixed_precision",
                   flag, "--dynamo_backend", "no", "--multi_gpu", "--main_process_port", "29123", *TAIL]


def test_one_gpu_process_has_neither_multi_gpu_nor_cpu(monkeypatch):
    # precision auto on CUDA is bf16 (config: "auto = bf16 on CUDA, fp32 elsewhere")
    cmd = command(monkeypatch, ["device=cuda", "launch.launcher=accelerate", "launch.num_processes=1"], exe="/a")
    assert cmd == ["/a", "launch", "--num_processes", "1", "--num_machines", "1", "--mixed_precision", "bf16",
                   "--dynamo_backend", "no", *TAIL]


def test_last_error_prefers_the_last_error_line(tmp_path):
    log = tmp_path / "log"
    log.write_text("starting\nValueError: first\n  \nerror: the real one\nshutting down\n\n")
    assert L.last_error(log) == "error: the real one"
    log.write_text("RuntimeError: boom\nmore\n")
    assert L.last_error(log) == "RuntimeError: boom"
    log.write_text("all fine\nlast words\n")
    assert L.last_error(log) == "last words"
    log.write_text("\n \n")
    assert L.last_error(log) == "no output"
    log.write_text("Error " + "x" * 400 + "\n")
    assert L.last_error(log) == ("Error " + "x" * 400)[:300]


def test_last_error_names_the_workers_failure_not_torchelastics_summary(tmp_path):
    # torchelastic's tail after a worker's exception, and after a worker killed by a signal
    summary = ("torch.distributed.elastic.multiprocessing.errors.ChildFailedError: \n"
               "============================================================\n"
               "Root Cause (first observed failure):\n[0]:\n  rank      : 1 (local_rank: 1)\n"
               "  exitcode  : {code} (pid: 4242)\n  error_file: <N/A>\n  traceback : {tb}\n"
               "============================================================\n")
    log = tmp_path / "log"
    raised = "[rank1]: RuntimeError: shapes do not match"  # the worker's own exception line
    log.write_text("[rank1]: Traceback (most recent call last):\n[rank1]:   File \"x.py\", line 1\n" + raised + "\n"
                   + summary.format(code=1, tb="To enable traceback see: https://pytorch.org/docs/stable/elastic/errors.html"))
    assert L.last_error(log) == raised
    signal = "Signal 7 (SIGBUS) received by PID 4242"
    log.write_text("step 3\n" + summary.format(code=-7, tb=signal))
    assert L.last_error(log) == "traceback : " + signal  # the summary's line naming the signal


def test_launch_training_logs_the_command_and_fails_with_one_line(monkeypatch, tmp_path):
    script = "import sys; print('loading'); print('KeyError: no such stage', file=sys.stderr); sys.exit(3)"
    monkeypatch.setattr(L, "accelerate_command", lambda *a: [sys.executable, "-c", script])
    cfg = load_config(sets=["launch.launcher=accelerate"])
    out = tmp_path / "out"
    out.mkdir()
    log = tmp_path / "logs" / "sft.log"
    spec = type("Spec", (), {"train": train_args(load_config(), "sft")})()
    monkeypatch.setattr(L, "to_json", lambda s: '{"kind": "sft"}')
    with pytest.raises(RuntimeError) as err:
        L.launch_training(spec, tmp_path, out, cfg.launch, log)
    msg = str(err.value)
    assert msg.startswith("accelerate launch failed") and "(exit 3)" in msg and msg.endswith(f"(log: {log})")
    assert "KeyError: no such stage" in msg  # the worker's last error line
    assert (out / "spec.json").read_text() == '{"kind": "sft"}'
    lines = log.read_text().splitlines()
    assert lines[0] == f"$ {sys.executable} -c {script}"
    assert sorted(lines[1:]) == ["KeyError: no such stage", "loading"]


def test_launch_training_success_is_quiet(monkeypatch, tmp_path):
    monkeypatch.setattr(L, "accelerate_command", lambda *a: [sys.executable, "-c", "print('ok')"])
    monkeypatch.setattr(L, "to_json", lambda s: "{}")
    log = tmp_path / "sft.log"
    spec = type("Spec", (), {"train": train_args(load_config(), "sft")})()
    assert L.launch_training(spec, tmp_path, tmp_path, load_config().launch, log) is None
    assert log.read_text().splitlines()[1:] == ["ok"]


def test_link_or_copy_falls_back_to_a_copy_across_filesystems(monkeypatch, tmp_path):
    src, dst = tmp_path / "a", tmp_path / "b"
    src.write_text("weights")
    for code in (errno.EXDEV, errno.EPERM, errno.EMLINK):
        monkeypatch.setattr(SC.os, "link", lambda s, d, code=code: (_ for _ in ()).throw(OSError(code, "no")))
        SC._link_or_copy(str(src), str(dst))
        assert dst.read_text() == "weights" and os.stat(dst).st_ino != os.stat(src).st_ino
        dst.unlink()
    monkeypatch.setattr(SC.os, "link", lambda s, d: (_ for _ in ()).throw(OSError(errno.EACCES, "denied")))
    with pytest.raises(OSError) as err:
        SC._link_or_copy(str(src), str(dst))
    assert err.value.errno == errno.EACCES and not dst.exists()


def test_link_or_copy_links_when_it_can(tmp_path):
    src, dst = tmp_path / "a", tmp_path / "b"
    src.write_text("weights")
    SC._link_or_copy(str(src), str(dst))
    assert os.stat(dst).st_ino == os.stat(src).st_ino


def test_publish_keeps_the_first_writer(tmp_path):
    cache = SC.StageCache(tmp_path / "cache")
    first, second = tmp_path / "first", tmp_path / "second"
    for folder, text in ((first, "one"), (second, "two")):
        folder.mkdir()
        (folder / "out.txt").write_text(text)
        (folder / "stage.json").write_text('{"status": "done", "key": "k1"}')
    cache.publish("k1", first)
    cache.publish("k1", second)
    assert (cache.entry("k1") / "out.txt").read_text() == "one"
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["k1"]  # no temp folder left


@pytest.mark.parametrize("rec,env,found", [
    ('{"status": "done", "key": "k"}', None, True),
    ('{"status": "done", "key": "k", "env": {"torch": "2"}}', {"torch": "2"}, True),
    ('{"status": "done", "key": "k", "env": {"torch": "2"}}', {"torch": "3"}, False),
    ('{"status": "failed", "key": "k"}', None, False),
    ('{"status": "done", "key": "other"}', None, False),
    ('{"status": "done", "key": "k", "judge_failures": 2}', None, False),
    ('{"status": "done", "key": "k", "judge_failures": 0}', None, True),
])
def test_lookup(tmp_path, rec, env, found):
    cache = SC.StageCache(tmp_path)
    (tmp_path / "k").mkdir()
    (tmp_path / "k" / "stage.json").write_text(rec)
    assert cache.lookup("k", env) == (tmp_path / "k" if found else None)


def test_mean_score_by_hand():
    assert mean_score([{"score": 1}, {"score": 0.5}, {"score": None}, {}]) == {"score": 0.75}
    assert mean_score([{"score": 0}, {"score": 0}]) == {"score": 0.0}
    assert mean_score([{"x": 1}]) == {"score": None}
    assert mean_score([]) == {"score": None}


def test_judge_failures_read_from_the_suites_judge_accounting(tmp_path):
    from selm_bench.harness.run.pipeline import judge_failures

    assert judge_failures(tmp_path) == 0  # no metrics.json
    for info, failures in [({"judge": {"failures": 3, "calls": 10}}, 3), ({"judge": {"failures": None}}, 0),
                           ({"judge": "oracle"}, 0), ({}, 0), (None, 0)]:
        (tmp_path / "metrics.json").write_text(json.dumps({"suite": "mt-bench", "info": info}))
        assert judge_failures(tmp_path) == failures, info
    (tmp_path / "metrics.json").write_text(json.dumps({"suite": "mt-bench", "judge": {"failures": 2}}))
    assert judge_failures(tmp_path) == 0  # only the info's judge accounting counts


def test_pulled_files_come_from_the_pinned_upstream_paths():
    # upstream repositories, commits and paths as listed in ../shared/data/SOURCES.md (the snapshot the SHA-256s are of)
    from selm_bench.harness.datapull import ARTEFACTS

    raw = "https://raw.githubusercontent.com"
    fastchat = f"{raw}/lm-sys/FastChat/0e6d3e4beaab66f4d3f93db72541a4abab8af28d/fastchat/llm_judge/data"
    assert [(a.suite, a.dest, a.url) for a in ARTEFACTS] == [
        ("mt-bench", "mt_bench/question.jsonl", f"{fastchat}/mt_bench/question.jsonl"),
        ("mt-bench", "mt_bench/reference_answer/gpt-4.jsonl", f"{fastchat}/mt_bench/reference_answer/gpt-4.jsonl"),
        ("mt-bench", "mt_bench/judge_prompts.jsonl", f"{fastchat}/judge_prompts.jsonl"),
        ("alpaca-eval", "alpaca_eval/results/gpt4_1106_preview/model_outputs.json",
         f"{raw}/tatsu-lab/alpaca_eval/cd543a149df89434d8a54582c0151c0b945c3d20/results/gpt4_1106_preview/model_outputs.json"),
        ("brainteaser", "brainteaser/raw/BTDATA.zip",
         f"{raw}/1171-jpg/BrainTeaser/4d164df75ba95682758248727bfc9d2746e598b7/data/BTDATA.zip"),
        ("brainteaser", "brainteaser/raw/demonstration.npy",
         f"{raw}/1171-jpg/BrainTeaser/4d164df75ba95682758248727bfc9d2746e598b7/Prompting/demonstration.npy"),
    ]
