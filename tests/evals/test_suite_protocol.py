"""A suite is one object that owns everything suite-specific (harness/core/registry.py `Suite`): every
registered suite satisfies the protocol, the harness names no suite, and a new suite registered
with its hooks shows up in the plan, `data pull`, the report and the leaderboard without a harness edit."""

from __future__ import annotations

import ast
import hashlib
import json
from collections.abc import Mapping
from pathlib import Path

import pytest
from pydantic import BaseModel

from selm_bench.harness.core import registry

HARNESS = Path(registry.__file__).resolve().parents[1]
# String constants equal to a suite name that are not the suite: the model card's hub tag for a
# checkpoint trained in the tiny world (harness/reports/modelcard.py).
NOT_THE_SUITE = {("modelcard.py", "tiny-world")}


@pytest.mark.parametrize("name", registry.names("suite"))
def test_every_registered_suite_satisfies_the_protocol(name):
    from selm_bench.harness.datapull import Artefact

    suite = registry.entry("suite", name)
    assert isinstance(suite, registry.Suite)
    assert suite.kind == "suite" and suite.name == name and callable(suite.run) and suite.run is suite.obj
    assert issubclass(suite.options, BaseModel) and isinstance(suite.headline, str) and callable(suite.paired)
    assert isinstance(suite.order, int) and isinstance(suite.tiny, bool) and isinstance(suite.pull_by_default, bool)
    assert all(isinstance(m, str) for m in suite.fallbacks) and isinstance(suite.canonical_judges, frozenset)
    assert isinstance(suite.stderr, Mapping) and all(isinstance(v, str) for v in suite.stderr.values())
    assert all(isinstance(f, str) and not f.startswith("/") for f in suite.data_files)
    assert all(isinstance(a, Artefact) and a.suite == name and len(a.sha256) == 64 for a in suite.data_sources)
    for hook in ("preflight", "fallback_columns", "drilldown", "plan", "artefacts", "prepare_data", "judge",
                 "import_file", "published"):
        assert getattr(suite, hook) is None or callable(getattr(suite, hook)), hook
    assert not suite.pull_by_default or suite.data_sources  # a default pull of nothing is a mistake


# Each suite's module, options model and documented headline metric (the leaderboard's column), by hand.
SUITES = {"tiny-world": ("tiny_world", "TinyWorldOptions", "accuracy"),
          "mt-bench": ("mt_bench", "MtBenchOptions", "score"),
          "alpaca-eval": ("alpaca_eval", "AlpacaEvalOptions", "length_controlled_winrate"),
          "brainteaser": ("brainteaser", "BrainteaserOptions", "overall"),
          "lm-eval": ("lm_eval_suite", "LmEvalOptions", "average")}


@pytest.mark.parametrize("name", sorted(SUITES))
def test_each_suite_registers_its_run_options_headline_and_paired_metric(name):
    """The registry holds the suite module's own run function, options model and per-item `paired`
    hook (what compare uses), and the headline the leaderboard shows."""
    import importlib

    module_name, options, headline = SUITES[name]
    module = importlib.import_module(f"selm_bench.evals.{module_name}")
    entry = registry.entry("suite", name)
    assert (entry.obj, entry.options, entry.paired, entry.headline) == (
        module.run, getattr(module, options), module.paired, headline)


def test_the_suites_come_in_their_order():
    assert [s.name for s in registry.suites()] == ["tiny-world", "mt-bench", "alpaca-eval", "brainteaser", "lm-eval"]


def _suite_names_in(path: Path, names: set[str]) -> list[tuple[int, str]]:
    """(line, name) of every string constant equal to a suite name; in config.py, the default
    list of `suites` (a default_factory lambda) is allowed."""
    tree = ast.parse(path.read_text())
    allowed: set[int] = set()
    if path.name == "config.py":
        for node in ast.walk(tree):
            if isinstance(node, ast.keyword) and node.arg == "default_factory" and isinstance(node.value, ast.Lambda):
                allowed |= {id(n) for n in ast.walk(node.value)}
    return [(n.lineno, n.value) for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and n.value in names and id(n) not in allowed
            and (path.name, n.value) not in NOT_THE_SUITE]


def test_the_harness_names_no_suite():
    """Harness code loops over the registered suites: a suite's name is spelt in the registry's
    built-in table and config's default list only (everything else is the suite's module's)."""
    names = set(registry.names("suite"))
    found = {f.name: hits for f in sorted(HARNESS.rglob("*.py")) if f.name != "registry.py"
             if (hits := _suite_names_in(f, names))}
    assert found == {}


def test_the_check_sees_a_suite_name(tmp_path):
    (tmp_path / "x.py").write_text('S = {"mt-bench": 1}\nok = f"mt-bench/{1}"\n')
    (tmp_path / "config.py").write_text('a = Field(default_factory=lambda: ["lm-eval"])\nb = "lm-eval"\n')
    names = {"mt-bench", "lm-eval"}
    assert _suite_names_in(tmp_path / "x.py", names) == [(1, "mt-bench")]
    assert _suite_names_in(tmp_path / "config.py", names) == [(2, "lm-eval")]


def test_an_unknown_hook_is_refused():
    class Options(BaseModel):
        pass

    with pytest.raises(TypeError, match="drill_down") as err:
        registry.register_suite("x", options=Options, drill_down=lambda items, folder: "")
    assert str(err.value).startswith("suite 'x'") and "x" not in registry.names("suite")


# ---------------------------------------------------------------- a plug-in suite, end to end
@pytest.fixture
def toy(monkeypatch, tmp_path):
    """A suite `toy` registered the way a plug-in module registers itself, every hook given."""
    from selm_bench.harness.datapull import Artefact

    registry.load_all()
    monkeypatch.setitem(registry._ENTRIES, "suite", dict(registry._ENTRIES["suite"]))
    body = b'{"q": 1}\n'
    (tmp_path / "site" / "toy").mkdir(parents=True)
    (tmp_path / "site" / "toy" / "q.jsonl").write_bytes(body)
    prepared = []

    class ToyOptions(BaseModel):
        limit: int | None = None

    def run(ctx):
        raise AssertionError("not run here")

    registry.register_suite(
        "toy", help="a plug-in suite", options=ToyOptions, headline="rate", fallbacks=("rate_raw",),
        stderr={"rate": "rate_se"}, canonical_judges={"big-judge"}, order=15,
        plan=lambda cfg, spec: {"generations": 7, "judge_calls": 7, "judge": "big-judge", "judge_usd": 0.7},
        data_files=("toy/q.jsonl",),
        data_sources=(Artefact("toy", "toy/q.jsonl", "https://example.invalid/q.jsonl",
                               hashlib.sha256(body).hexdigest(), len(body)),),
        prepare_data=lambda root: prepared.append(root),
        drilldown=lambda items, folder: f"<p>toy: {len(items)} rows</p>")(run)
    return {"site": tmp_path / "site", "prepared": prepared}


def test_a_plug_in_suite_is_pulled_and_prepared_by_data_pull(toy, tmp_path, monkeypatch):
    from selm_bench.harness import datapull

    assert datapull.pullable()[:2] == ["toy", "mt-bench"] and "toy" not in datapull.default_suites()
    assert [a.suite for a in datapull.all_artefacts()][0] == "toy"

    def urlopen(url, timeout):  # the pinned bytes, as a mirror would serve them
        import io

        assert url == "https://example.invalid/q.jsonl"
        return io.BytesIO((toy["site"] / "toy" / "q.jsonl").read_bytes())

    monkeypatch.delenv("SELM_BENCH_DATA_URL", raising=False)
    monkeypatch.setattr(datapull.urllib.request, "urlopen", urlopen)
    assert datapull.pull(["toy"], tmp_path / "data") == {"toy/q.jsonl": "downloaded"}
    assert toy["prepared"] == [tmp_path / "data"]
    assert list(json.loads((tmp_path / "data" / "pulled.json").read_text())) == ["toy/q.jsonl"]


def test_a_plug_in_suite_is_estimated_by_the_plan(toy):
    from selm_bench.harness.core.config import load_config
    from selm_bench.harness.run.plan import describe

    d = describe(load_config(Path(__file__).resolve().parents[2] / "configs" / "zephyr-7b.yaml",
                             overrides={"methods": ["dpo"], "suites": ["toy"]}))
    (stage,) = [s for s in d["stages"] if s["kind"] == "eval"]
    assert (stage["generations"], stage["judge_calls"], stage["judge"], stage["judge_usd"]) == (7, 7, "big-judge", 0.7)
    assert [a for a in d["artefacts"] if a["kind"] == "toy data"] == [
        {"kind": "toy data", "name": "<eval.data_dir>/toy/q.jsonl", "where": "local", "present": False}]


def test_a_plug_in_suite_in_the_report_and_the_leaderboard(toy, tmp_path):
    from selm_bench.harness.reports import drilldown, plots
    from selm_bench.harness.reports.leaderboard import suite_label

    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "items.jsonl").write_text('{"id": "1", "score": 1.0}\n{"id": "2", "score": 0.0}\n')
    assert "<p>toy: 2 rows</p>" in drilldown.suite_section("toy", [("sft", tmp_path / "r")])
    assert sorted(["lm-eval", "toy", "tiny-world", "mt-bench"], key=drilldown.suite_order) == [
        "tiny-world", "toy", "mt-bench", "lm-eval"]
    rows = [{"checkpoint": "a", "toy/rate": 0.5, "toy/rate_se": 0.1}, {"checkpoint": "b", "toy/rate_raw": 0.25}]
    assert plots.headline_columns(rows) == ["toy/rate"]
    assert plots.headline_columns(rows[1:]) == ["toy/rate_raw"]
    assert plots.stderr_of(rows[0], "toy/rate") == 0.1
    assert suite_label({"suite": "toy", "info": {"judge": {"model": "small-judge"}}}) == ["small-judge judge"]
    assert suite_label({"suite": "toy", "info": {"judge": {"model": "big-judge"}}}) == []
