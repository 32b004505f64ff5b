"""The sweep without training: its cells (names, folders, configs), what `sweep` writes for a grid
(sweep.json, a seed group per point, the per-cell table and the summary over seeds) with each cell's
run replaced by a stand-in that writes a known result, the hand-over to slurm, and the summary's
terminal table."""

import csv
import io
import json
from pathlib import Path

import pytest

from selm_bench.harness.run import sweep as S
from support.run_files import stand_in_suites, write_json, write_result


@pytest.fixture
def suites(monkeypatch):
    return stand_in_suites(monkeypatch)


def csv_rows(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


def test_a_cell_is_named_by_its_values_and_seed_and_lives_under_cells():
    from selm_bench.harness.core.config import ConfigError

    cell = S.Cell("a=1,b=x,seed=2", {"a": "1", "b": "x"}, 2)
    assert (cell.dir, cell.point) == ("cells/a=1,b=x,seed=2", "a=1,b=x")
    assert S.Cell("seed=0", {}, 0).point == "default"
    assert S.SlurmOptions() == S.SlurmOptions(None, 1, 1440, 64, 8, "slurm")
    with pytest.raises(ConfigError) as err:
        S.parse_grid(["seed=1,2"])
    assert str(err.value).startswith("--grid seed:") and "--seeds" in str(err.value)  # where seeds go instead
    for grid, name in [({"data.split": ["a/b"]}, "'data.split=a/b,seed=0'"), ({".x": ["1"]}, "'.x=1,seed=0'")]:
        with pytest.raises(ConfigError) as err:
            S.cells(grid, [0])
        assert str(err.value).startswith("--grid:") and str(err.value).endswith(name)  # the unusable folder name


def test_a_cells_config_gets_its_seed_the_lists_and_its_values_after_the_commands_sets(monkeypatch):
    asked = []
    monkeypatch.setattr(S, "load_config", lambda config, overrides, sets: asked.append((config, overrides, sets)) or "cfg")
    cell = S.Cell("c", {"online.alpha": "0.5", "online.beta": "0.2"}, 3)
    assert S.cell_config(Path("x.yaml"), cell, ["sft", "selm"], None, ["dpo.beta=0.25"]) == "cfg"
    # the cell's own values come after the command's --set values, so they win
    assert asked == [(Path("x.yaml"), {"seed": 3, "methods": ["sft", "selm"], "suites": None},
                      ["dpo.beta=0.25", "online.alpha=0.5", "online.beta=0.2"])]


class StandInConfig:
    """A stand-in for a cell's validated config: what `to_dict` hands the cell's run."""

    def __init__(self, *args):
        self.args = args

    def to_dict(self):
        config, cell, methods, suites, sets = self.args
        return {"config": config, "seed": cell.seed, "params": cell.params, "methods": methods, "suites": suites,
                "sets": sets}


def finish_cell(cell_dir: str, acc: float) -> None:
    """What a finished cell leaves: a run with sft's tiny-world accuracy `acc`."""
    run = Path(cell_dir)
    write_json(run / "manifest.json", {"results": [write_result(run, "evals/sft/tiny-world", "tiny-world", "sft",
                                                                {"accuracy": acc}, info={})]})


ACC = {"online.alpha=0,seed=0": 0.0, "online.alpha=0,seed=1": 0.5, "online.alpha=0,seed=2": 1.0,
       "online.alpha=0.5,seed=0": 0.75, "online.alpha=0.5,seed=1": 0.75, "online.alpha=0.5,seed=2": 0.75}


def test_sweep_runs_each_cell_and_writes_its_tables_and_seed_groups(tmp_path, monkeypatch):
    calls, seen = [], []

    def run_cell(cfg, cell_dir, cache, command):
        calls.append((cfg, cell_dir, cache, command))
        finish_cell(cell_dir, ACC[Path(cell_dir).name])

    monkeypatch.setattr(S, "run_cell", run_cell)
    monkeypatch.setattr(S, "cell_config", StandInConfig)
    out = tmp_path / "new" / "sw"  # its parent made too
    grid = {"online.alpha": ["0", "0.5"]}
    summary = S.sweep(None, grid, [0, 1, 2], out, methods=["sft"], suites=["tiny-world"],
                      on_cell=lambda c: seen.append(c.name))
    points = [(a, s) for a in ("0", "0.5") for s in (0, 1, 2)]
    names = [f"online.alpha={a},seed={s}" for a, s in points]
    assert seen == names
    assert calls == [({"config": None, "seed": s, "params": {"online.alpha": a}, "methods": ["sft"],
                       "suites": ["tiny-world"], "sets": []},
                      str(out / "cells" / f"online.alpha={a},seed={s}"), str(out / "cache"), []) for a, s in points]
    assert json.loads((out / "sweep.json").read_text()) == {
        "config": "default", "grid": grid, "seeds": [0, 1, 2], "methods": ["sft"], "suites": ["tiny-world"], "sets": [],
        "command": None, "cells": [{"name": f"online.alpha={a},seed={s}", "dir": f"cells/online.alpha={a},seed={s}",
                                    "params": {"online.alpha": a}, "seed": s} for a, s in points]}
    assert json.loads((out / "groups" / "online.alpha=0.5" / "seeds.json").read_text()) == {
        "params": {"online.alpha": "0.5"}, "seeds": [0, 1, 2],
        "runs": ["../../cells/online.alpha=0.5,seed=0", "../../cells/online.alpha=0.5,seed=1",
                 "../../cells/online.alpha=0.5,seed=2"]}
    label = "tiny world (tiny-world)"
    assert csv_rows((out / "table.csv").read_text()) == [
        ["cell", "online.alpha", "seed", "checkpoint", "method", "iteration", "tiny-world/accuracy", "provenance", "label"],
        *[[name, a, str(s), "sft", "sft", "", str(ACC[name]), f"run {name}", label]
          for name, (a, s) in zip(names, points)]]
    # alpha 0: mean of 0, 0.5, 1 = 0.5, sample std sqrt((0.25 + 0 + 0.25) / 2) = 0.5; alpha 0.5: 0.75 thrice, std 0
    expected = [{"online.alpha": a, "checkpoint": "sft", "method": "sft", "iteration": None, "n_seeds": 3,
                 "label": label, "tiny-world/accuracy": m, "tiny-world/accuracy_std": sd}
                for a, m, sd in (("0", 0.5, 0.5), ("0.5", 0.75, 0.0))]
    assert summary == expected
    assert json.loads((out / "summary.json").read_text()) == expected
    assert csv_rows((out / "summary.csv").read_text()) == [
        ["online.alpha", "n_seeds", "checkpoint", "method", "iteration", "tiny-world/accuracy", "tiny-world/accuracy_std",
         "provenance", "label"],
        ["0", "3", "sft", "sft", "", "0.5", "0.5", "", label],
        ["0.5", "3", "sft", "sft", "", "0.75", "0.0", "", label]]
    table = json.loads((out / "table.json").read_text())
    assert table[0] == {"cell": names[0], "online.alpha": "0", "seed": 0, "checkpoint": "sft", "method": "sft",
                        "iteration": None, "provenance": f"run {names[0]}", "tiny-world/accuracy": 0.0,
                        "label": label} and len(table) == 6


def test_a_slurm_sweep_hands_every_cell_to_the_cluster_and_summarizes_the_results(tmp_path, monkeypatch):
    got = []

    def fake_slurm(jobs, out, opts, command):
        got.append(([(c.name, cfg, d, cache) for c, cfg, d, cache in jobs], out, opts, command))
        for _, _, d, _ in jobs:
            finish_cell(d, 0.5)

    monkeypatch.setattr(S, "_run_slurm", fake_slurm)
    monkeypatch.setattr(S, "cell_config", StandInConfig)
    monkeypatch.setattr(S, "run_cell", lambda *a: pytest.fail("a slurm sweep runs no cell here"))
    out = tmp_path / "sw"
    out.mkdir()  # a rerun into the same folder resumes
    cfg_file = tmp_path / "c.yaml"
    summary = S.sweep(cfg_file, {"online.alpha": ["0.5"]}, [4], out, sets=["online.beta=0.25"], launcher="slurm",
                      command=["selm-bench", "sweep"], cache=tmp_path / "shared")
    cfg = {"config": cfg_file, "seed": 4, "params": {"online.alpha": "0.5"}, "methods": None, "suites": None,
           "sets": ["online.beta=0.25"]}
    assert got == [([("online.alpha=0.5,seed=4", cfg, str(out / "cells/online.alpha=0.5,seed=4"),
                      str((tmp_path / "shared").resolve()))], out, S.SlurmOptions(), ["selm-bench", "sweep"])]
    sweep_json = json.loads((out / "sweep.json").read_text())
    assert (sweep_json["config"], sweep_json["sets"], sweep_json["command"]) == (str(cfg_file), ["online.beta=0.25"],
                                                                                 ["selm-bench", "sweep"])
    assert summary == [{"online.alpha": "0.5", "checkpoint": "sft", "method": "sft", "iteration": None, "n_seeds": 1,
                        "label": "tiny world (tiny-world)", "tiny-world/accuracy": 0.5, "tiny-world/accuracy_std": None}]


def test_sweep_table_shows_the_headline_and_the_metric_a_point_has_instead(tmp_path, suites):
    from selm_bench.harness.core.progress import console

    write_json(tmp_path / "sweep.json", {"grid": {"a": ["1", "2"]}})
    summary = [{"a": "1", "checkpoint": "sft", "n_seeds": 2, "tiny-world/accuracy": 0.5, "tiny-world/accuracy_std": 0.25},
               {"a": "2", "checkpoint": "dpo", "n_seeds": 1, "tiny-world/accuracy": None, "tiny-world/score": 0.75}]
    with console.capture() as cap:
        S.print_summary(summary, tmp_path)
    text = cap.get()
    header = next(line for line in text.splitlines() if "┃" in line and "checkpoint" in line)
    # the headline, and score for the point that has no accuracy
    assert [c.strip() for c in header.split("┃")[1:-1]] == ["a", "checkpoint", "seeds", "tiny-world/accuracy",
                                                            "tiny-world/score"]
    body = [[c.strip() for c in line.split("│")[1:-1]] for line in text.splitlines() if "│" in line]
    assert body == [["1", "sft", "2", "0.5 ± 0.25", ""], ["2", "dpo", "1", "", "0.75"]]
