"""`selm-bench sweep`: cells share stages through the content-addressed cache; resume; seeds; slurm via submitit."""

import json
import os
import statistics
import sys
from pathlib import Path

import pytest
import yaml
from support.micro import MODEL_S, micro
from support.cli import run as cli

MICRO = micro("micro-sweep",
              device=None,
              methods=["selm"],
              suites=["tiny-world"],
              world={"n_sft": 96, "n_pref": 32, "n_prompts": 24, "n_dev": 8, "n_eval": 24, "n_two_turn": 4, "n_mc": 4},
              model=MODEL_S,
              sft={"epochs": 1, "batch_size": 32},
              dpo={"batch_size": 16},
              online={"iterations": 1, "batch_size": 8, "num_samples": 2, "max_new_tokens": 6},
              suite_options={"tiny-world": {"max_new_tokens": 6}})


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    cfg = root / "micro.yaml"
    cfg.write_text(yaml.safe_dump(MICRO))
    out = root / "sw"
    args = ["sweep", "--config", str(cfg), "--grid", "online.alpha=0,0.5", "--seeds", "0,1", "--out", str(out)]
    res = cli(*args)
    assert res.returncode == 0, res.stderr[-3000:]
    return cfg, out, args


def manifest(out: Path, cell: str) -> dict:
    return json.loads((out / "cells" / cell / "manifest.json").read_text())


def test_shared_stages_are_computed_once_per_seed(swept):
    _, out, _ = swept
    for seed in (0, 1):
        first, second = manifest(out, f"online.alpha=0,seed={seed}"), manifest(out, f"online.alpha=0.5,seed={seed}")
        for stage in ("checkpoints/sft/model", "checkpoints/dpo/model", "checkpoints/selm/iter-1/generate"):
            assert not first["stages"][stage].get("cached"), stage  # trained by the first cell of the seed
            assert second["stages"][stage].get("cached") is True, stage  # taken from the cache by the second
        # the swept value reaches the training stage: the SELM model is trained in both cells
        assert not second["stages"]["checkpoints/selm/iter-1/model"].get("cached")
        a = out / "cells" / f"online.alpha=0,seed={seed}" / "checkpoints/sft/model/model.safetensors"
        b = out / "cells" / f"online.alpha=0.5,seed={seed}" / "checkpoints/sft/model/model.safetensors"
        assert a.read_bytes() == b.read_bytes() and os.stat(a).st_ino == os.stat(b).st_ino  # one file, hard-linked
    # seeds differ: seed 1 trained its own sft
    s0 = out / "cells/online.alpha=0,seed=0/checkpoints/sft/model/model.safetensors"
    s1 = out / "cells/online.alpha=0,seed=1/checkpoints/sft/model/model.safetensors"
    assert s0.read_bytes() != s1.read_bytes()


def test_summary_is_mean_and_std_over_seeds(swept):
    _, out, _ = swept
    table = json.loads((out / "table.json").read_text())
    summary = json.loads((out / "summary.json").read_text())
    for row in summary:
        vals = [r["tiny-world/accuracy"] for r in table
                if r["online.alpha"] == row["online.alpha"] and r["checkpoint"] == row["checkpoint"]]
        assert len(vals) == 2 == row["n_seeds"]
        assert row["tiny-world/accuracy"] == pytest.approx(statistics.fmean(vals))
        assert row["tiny-world/accuracy_std"] == pytest.approx(statistics.stdev(vals))
    groups = json.loads((out / "groups" / "online.alpha=0.5" / "seeds.json").read_text())
    assert groups["seeds"] == [0, 1] and len(groups["runs"]) == 2
    # compare takes a seed group as one side
    res = cli("compare", str(out / "groups" / "online.alpha=0"), str(out / "groups" / "online.alpha=0.5"),
              "--format", "json", "--resamples", "100")
    assert res.returncode in (0, 1), res.stderr
    assert json.loads(res.stdout)["suites"][0]["shared"] == MICRO["world"]["n_eval"]


def test_leaderboard_of_a_sweep_is_the_mean_over_seeds_per_point(swept):
    _, out, _ = swept
    res = cli("leaderboard", "--results", str(out), "--format", "json", "--no-published", "--all")
    assert res.returncode == 0, res.stderr[-2000:]
    rows = {(r["run"], r["checkpoint"]): r for r in json.loads(res.stdout)}
    for alpha in ("0", "0.5"):
        cells = [json.loads((out / "cells" / f"online.alpha={alpha},seed={s}" / "leaderboard.json").read_text())
                 for s in (0, 1)]
        for checkpoint in ("sft", "dpo", "selm/iter-1"):
            vals = [next(r["tiny-world/accuracy"] for r in c if r["checkpoint"] == checkpoint) for c in cells]
            row = rows[(f"{out.name}[online.alpha={alpha}]", checkpoint)]
            assert row["tiny-world/accuracy"] == pytest.approx(statistics.fmean(vals))
            assert row["tiny-world/accuracy_std"] == pytest.approx(statistics.stdev(vals))
            assert row["provenance"].startswith(f"sweep {out.name} · online.alpha={alpha} · mean of 2 seed(s)")


def test_rerun_resumes_without_recomputing(swept):
    _, out, args = swept
    before = {c.name: manifest(out, c.name)["stages"] for c in (out / "cells").iterdir()}
    res = cli(*args)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "done " not in res.stderr and "cached " not in res.stderr  # every stage skipped
    after = {c.name: manifest(out, c.name)["stages"] for c in (out / "cells").iterdir()}
    assert {k: {s: v["key"] for s, v in st.items()} for k, st in before.items()} == \
        {k: {s: v["key"] for s, v in st.items()} for k, st in after.items()}


def test_slurm_launcher_through_submitits_local_executor(swept, tmp_path):
    pytest.importorskip("submitit", reason="submitit is the optional `slurm` extra: pip install 'selm-bench[slurm]'")
    cfg, _, _ = swept
    out = tmp_path / "slurm-sweep"
    res = cli("sweep", "--config", str(cfg), "--grid", "online.alpha=0,0.5", "--seeds", "0", "--out", str(out),
              "--launcher", "slurm", "--slurm-executor", "local", "--partition", "gpu", "--time", "30", "--mem", "8")
    assert res.returncode == 0, res.stderr[-3000:]
    assert list((out / "slurm").glob("*/*_submission.sh")) or list((out / "slurm").glob("*/*.pkl"))  # submitit's job files
    second = manifest(out, "online.alpha=0.5,seed=0")
    assert second["stages"]["checkpoints/sft/model"].get("cached") is True  # the first wave computed it
    assert json.loads((out / "summary.json").read_text())


@pytest.mark.parametrize("grid,msg", [("online.alpha", "expected KEY=V1,V2"), ("online.alpha=0,0", "repeated value"),
                                      ("seed=1,2", "not a swept value"), ("online.nope=1", "online.nope")])
def test_bad_grid_is_one_line_exit_2_and_writes_nothing(tmp_path, grid, msg):
    out = tmp_path / "never"
    res = cli("sweep", "--grid", grid, "--out", str(out))
    assert res.returncode == 2, res.stderr
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and msg in lines[0], res.stderr
    assert not out.exists()


def test_slurm_parameters_and_waves_reach_submitit(tmp_path, monkeypatch):
    """What `_run_slurm` hands submitit, through a recording stand-in: the executor's folder and
    cluster, every resource option (the partition only when given), the first cell of each seed
    before the rest, and a failed job's last error line."""
    import types

    from selm_bench.harness.run.sweep import SlurmOptions, _run_slurm, run_cell

    calls = []

    class Job:
        def __init__(self, n, fail):
            self.job_id, self.fail = n, fail

        def result(self):
            if self.fail:
                raise RuntimeError("Traceback ...\nValueError: boom")

    class AutoExecutor:
        def __init__(self, folder, cluster):
            calls.append(("executor", folder, cluster))

        def update_parameters(self, **params):
            calls.append(("params", params))

        def submit(self, fn, *args):
            calls.append(("submit", fn, args))
            return Job(len(calls), fail=args[1] == "cell-b" and fail_b)

    monkeypatch.setitem(sys.modules, "submitit", types.SimpleNamespace(AutoExecutor=AutoExecutor))
    cell = lambda name, seed: types.SimpleNamespace(name=name, seed=seed)
    jobs = [(cell("a", 0), "cfg-a", "cell-a", "cache"), (cell("b", 0), "cfg-b", "cell-b", "cache"),
            (cell("c", 1), "cfg-c", "cell-c", "cache")]
    fail_b = False
    _run_slurm(jobs, tmp_path, SlurmOptions(partition="gpu", gpus=8, time_min=90, mem_gb=32, cpus=4, executor="local"),
               ["selm-bench"])
    assert calls == [
        ("executor", tmp_path / "slurm" / "%j", "local"),
        ("params", {"timeout_min": 90, "mem_gb": 32, "gpus_per_node": 8, "cpus_per_task": 4, "name": "selm-bench-sweep",
                    "slurm_partition": "gpu"}),
        ("submit", run_cell, ("cfg-a", "cell-a", "cache", ["selm-bench"])),
        ("submit", run_cell, ("cfg-c", "cell-c", "cache", ["selm-bench"])),
        ("submit", run_cell, ("cfg-b", "cell-b", "cache", ["selm-bench"]))]
    calls.clear()
    fail_b = True
    with pytest.raises(RuntimeError) as err:
        _run_slurm(jobs, tmp_path, SlurmOptions(), ["selm-bench"])
    assert calls[1] == ("params", {"timeout_min": 1440, "mem_gb": 64, "gpus_per_node": 1, "cpus_per_task": 8,
                                   "name": "selm-bench-sweep"}) and calls[0][2] == "slurm"
    assert str(err.value).startswith("sweep cell b ") and "(job 5)" in str(err.value)
    assert str(err.value).endswith(": ValueError: boom")  # the job's last error line


def test_grid_cells_summary_and_table_by_hand(tmp_path):
    """The sweep's pure pieces: the grid's error lines (each naming the flag or key), cell names, the summary over seeds,
    and the terminal table's cells."""
    from selm_bench.harness.core.config import ConfigError
    from selm_bench.harness.core.progress import console
    from selm_bench.harness.run.sweep import cells, parse_grid, print_summary, summarize

    assert parse_grid([" online.alpha = 0, 0.1 ,", "online.beta=0.1"]) == {"online.alpha": ["0", "0.1"],
                                                                           "online.beta": ["0.1"]}
    for specs, key, token in [(["online.alpha"], "--grid 'online.alpha'", "KEY=V1,V2,..."),
                              (["=1"], "--grid '=1'", "KEY=V1,V2,..."),
                              (["online.alpha=,"], "--grid 'online.alpha=,'", "KEY=V1,V2,..."),
                              (["online.alpha=0", "online.alpha=1"], "--grid online.alpha", "given twice"),
                              (["name=a,b"], "--grid name", "--seeds"),
                              (["output_dir=a,b"], "--grid output_dir", "--seeds"),
                              (["online.alpha=1,1"], "--grid online.alpha", "repeated value"),
                              ([], "--grid", "KEY=V1,V2,...")]:
        with pytest.raises(ConfigError) as err:
            parse_grid(specs)
        assert str(err.value).startswith(f"{key}: ") and token in str(err.value), specs
    got = cells({"online.alpha": ["0", "0.1"], "online.beta": ["0.2"]}, [0, 1])
    assert [(c.name, c.params, c.seed) for c in got] == [
        ("online.alpha=0,online.beta=0.2,seed=0", {"online.alpha": "0", "online.beta": "0.2"}, 0),
        ("online.alpha=0,online.beta=0.2,seed=1", {"online.alpha": "0", "online.beta": "0.2"}, 1),
        ("online.alpha=0.1,online.beta=0.2,seed=0", {"online.alpha": "0.1", "online.beta": "0.2"}, 0),
        ("online.alpha=0.1,online.beta=0.2,seed=1", {"online.alpha": "0.1", "online.beta": "0.2"}, 1)]
    for bad in ("a/b", ".x"):
        with pytest.raises(ConfigError) as err:
            cells({"data.split": [bad]}, [0]) if bad == "a/b" else cells({".x": ["1"]}, [0])
        assert str(err.value).startswith("--grid: ") and "folder name" in str(err.value)
    rows = [{"cell": "c", "a": "1", "seed": s, "run": "r", "checkpoint": "selm/iter-1", "method": "selm", "iteration": 1,
             "provenance": "p", "label": "tiny world (tiny-world)", "tiny-world/accuracy": acc,
             "tiny-world/accuracy_stderr": 0.01, "tiny-world/n": float("nan") if s else 3}
            for s, acc in ((0, 0.5), (1, 0.7), (2, 0.6))]
    rows.append({"a": "2", "seed": 0, "checkpoint": "selm/iter-1", "method": "selm", "iteration": 1,
                 "tiny-world/accuracy": 0.4})
    (one, two) = summarize(rows, ["a"])
    assert one == {"a": "1", "checkpoint": "selm/iter-1", "method": "selm", "iteration": 1, "n_seeds": 3,
                   "label": "tiny world (tiny-world)", "tiny-world/accuracy": pytest.approx(0.6),
                   "tiny-world/accuracy_std": pytest.approx(0.1), "tiny-world/n": 3, "tiny-world/n_std": None}
    assert two == {"a": "2", "checkpoint": "selm/iter-1", "method": "selm", "iteration": 1, "n_seeds": 1,
                   "tiny-world/accuracy": 0.4, "tiny-world/accuracy_std": None}
    (tmp_path / "sweep.json").write_text(json.dumps({"grid": {"a": ["1", "2"]}}))
    with console.capture() as cap:
        print_summary([one, two], tmp_path)
    text = cap.get()
    assert "".join(f"sweep: {tmp_path} (mean ± std over seeds)".split()) in "".join(text.split())  # rich wraps titles
    body = [[c.strip() for c in line.split("│")[1:-1]] for line in text.splitlines() if "selm/iter-1" in line]
    assert body == [["1", "selm/iter-1", "3", "0.6 ± 0.1"], ["2", "selm/iter-1", "1", "0.4"]]
