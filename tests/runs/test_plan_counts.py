"""`selm-bench plan`: ranker work counted per ranker kind as the rankers' code does it, a judge
ranker's cost in the judge totals, only real hub repos listed as hub artefacts, `--methods` /
`--suites`, the training hyperparameters in the text, and no split claimed for a single local file.
Expected numbers are worked out by hand in the comments."""

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from selm_bench.harness.core.config import load_config
from selm_bench.harness.run.plan import RANKER_WORK, describe, to_text
from selm_bench.harness.run.stages import Sources
from selm_bench.harness.core.specs import from_json, to_json
from selm_bench.harness.core.store import stable_hash
from support.cli import invoke as cli

REPO = Path(__file__).resolve().parents[2]
ZEPHYR = REPO / "configs" / "zephyr-7b.yaml"
# 1,000 rows in 4 chunks: 250 prompts in iteration 1's chunk; 3 candidates (greedy y_ref + the dataset pair)
ONE_ITERATION = ["data.expected_rows=1000", "methods=[iterative-dpo]", "online.iterations=1", "online.chunks=[2]",
                 "online.learning_rate=[5e-7]"]


def _plan(*sets: str) -> dict:
    return describe(load_config(ZEPHYR, sets=[*ONE_ITERATION, *sets]))


def _rank(d: dict) -> dict:
    (rank,) = [s for s in d["stages"] if s["kind"] == "rank"]
    return rank


# ---------------------------------------------------------------- what the rankers' code does
def _judge_requests(n: int) -> int:
    from selm_bench.trainers.rankers import JudgeRanker

    sent = []
    r = object.__new__(JudgeRanker)
    r.errors = []
    r.judge = SimpleNamespace(chat_many=lambda reqs, **_: sent.extend(reqs) or ["[[A]]"] * len(reqs))
    r.score([{"prompt": "p"}], [[f"c{i}" for i in range(n)]])
    return len(sent)


def _pairrm_rows(n: int) -> int:
    from selm_bench.trainers.pairrm import PairRMRanker

    rows = []
    r = object.__new__(PairRMRanker)
    r._pieces = lambda x, cands: ([0], [[1]] * len(cands), [[2]] * len(cands))
    r._logits = lambda batch: rows.extend(batch) or [0.0] * len(batch)
    r.score([{"prompt": "p"}], [[f"c{i}" for i in range(n)]])
    return len(rows)


def _reward_rows(n: int) -> int:
    import torch

    from selm_bench.trainers.rankers import RewardModelRanker

    rows = []
    r = object.__new__(RewardModelRanker)
    r.device, r.batch_size, r._torch = "cpu", 2, torch
    r.texts = lambda prompt, cand: prompt + cand
    r.tokenizer = lambda texts, **_: SimpleNamespace(to=lambda device: {"texts": texts})
    r.model = lambda texts: rows.extend(texts) or SimpleNamespace(logits=torch.zeros(len(texts), 1))
    r.score([{"prompt": "p"}], [[f"c{i}" for i in range(n)]])
    return len(rows)


def _oracle_calls(n: int, monkeypatch) -> int:
    import selm_bench.harness.world as tw
    from selm_bench.trainers.rankers import OracleRanker

    calls = []
    monkeypatch.setattr(tw, "verify", lambda *a: calls.append(a) or 0.0)
    OracleRanker().score([{"category": "c", "answer": "a"}], [[f"c{i}" for i in range(n)]])
    return len(calls)


# per prompt with n candidates: judge C(n,2), pairrm n(n-1) ordered pairs, reward model and oracle n
@pytest.mark.parametrize("n, judge, pairrm, each", [(2, 1, 2, 2), (3, 3, 6, 3), (7, 21, 42, 7)])
def test_ranker_work_a_prompt_is_what_the_ranker_code_does(n, judge, pairrm, each, monkeypatch):
    assert _judge_requests(n) == RANKER_WORK["judge"][0](n) == judge
    assert _pairrm_rows(n) == RANKER_WORK["pairrm"][0](n) == pairrm
    assert _reward_rows(n) == RANKER_WORK["reward-model"][0](n) == each
    assert _oracle_calls(n, monkeypatch) == RANKER_WORK["oracle"][0](n) == each


# ---------------------------------------------------------------- the plan's counts
@pytest.mark.parametrize("ranker, per_prompt", [("judge:gpt-4", 3), ("pairrm", 6), ("reward-model:org/rm-7b", 3)])
def test_rank_stage_counts_comparisons_for_250_prompts_and_3_candidates(ranker, per_prompt):
    # 250 prompts x 3 (judge: C(3,2)), x 6 (pairrm: 3 x 2 ordered pairs), x 3 (reward model: one row a candidate)
    rank = _rank(_plan(f"online.ranker={ranker}", "suites=['lm-eval:arc_easy']"))
    assert (rank["rows"], rank["ranker_calls_a_prompt"], rank["ranker_calls"]) == (250, per_prompt, 250 * per_prompt)


def test_seven_candidates_a_prompt():
    # 4 samples + y_ref + the dataset pair = 7 candidates; C(7,2) = 21 judge calls, 7 x 6 = 42 PairRM rows a prompt
    more = ["online.num_samples=4", "suites=['lm-eval:arc_easy']"]
    assert _rank(_plan("online.ranker=judge:gpt-4", *more))["ranker_calls"] == 250 * 21 == 5250
    assert _rank(_plan("online.ranker=pairrm", *more))["ranker_calls"] == 250 * 42 == 10500


def test_a_judge_ranker_is_costed_with_the_suites_judge_calls():
    d = _plan("online.ranker=judge:gpt-4", "suites=[mt-bench]")
    rank = _rank(d)
    # 750 pairwise calls x $0.05 = $37.5; MT-Bench: 2 checkpoints (dpo, iter-1) x 80 questions x 2 turns = 320 x $0.05 = $16
    assert (rank["judge"], rank["judge_calls"], rank["judge_usd"]) == ("openai:gpt-4", 750, 37.5)
    assert (d["totals"]["ranker_calls"], d["totals"]["judge_calls"], d["totals"]["judge_usd"]) == (750, 1070, 53.5)


def test_a_local_ranker_adds_no_judge_calls():
    d = _plan("online.ranker=pairrm", "suites=['lm-eval:arc_easy']")
    assert "judge_calls" not in _rank(d)
    assert (d["totals"]["ranker_calls"], d["totals"]["judge_calls"], d["totals"]["judge_usd"]) == (1500, 0, 0)


def test_tiny_world_oracle_counts_one_verification_a_candidate():
    # the tiny default's iteration 1: 2,400 prompts x 7 candidates (4 samples + y_ref + the dataset pair)
    d = describe(load_config(sets=["methods=[iterative-dpo]", "online.iterations=1", "suites=[tiny-world]"]))
    assert (_rank(d)["ranker_calls"], d["totals"]["ranker_calls"], d["totals"]["judge_calls"]) == (16800, 16800, 0)


def test_a_tiny_world_iteration_counts_whole_prompts_when_the_pool_does_not_split_evenly():
    # 1,000 prompts over 3 iterations: 333 whole prompts each (the last one left out, as the generator cuts
    # the pool); 4 samples + y_ref = 5 generations a prompt, 7 candidates with the dataset pair
    d = describe(load_config(sets=["methods=[iterative-dpo]", "online.iterations=3", "world.n_prompts=1000",
                                   "online.num_samples=4", "suites=[tiny-world]"]))
    gens = [s for s in d["stages"] if s["kind"] == "generate"]
    assert [(s["rows"], s["generations"]) for s in gens] == [(333, 1665)] * 3
    assert [s["rows"] for s in d["stages"] if s["kind"] == "rank"] == [333] * 3
    assert d["totals"]["ranker_calls"] == 3 * 333 * 7 == 6993  # the oracle verifies each candidate once


def test_zephyr_recipe_ranker_comparisons():
    # 5 rank stages (iteration 1 shared by selm and iterative-dpo, then 2 + 2) x 15,283 prompts x 6 PairRM rows
    d = describe(load_config(ZEPHYR))
    ranks = [s for s in d["stages"] if s["kind"] == "rank"]
    assert [s["ranker_calls"] for s in ranks] == [15283 * 6] * 5
    assert d["totals"]["ranker_calls"] == 458490


# ---------------------------------------------------------------- artefacts
def _hub(d: dict) -> set[str]:
    return {a["name"] for a in d["artefacts"] if a["where"] == "hub"}


def test_an_api_judge_ranker_is_no_hub_artefact():
    for ranker in ("judge:gpt-4", "judge:openai:gpt-4"):
        d = _plan(f"online.ranker={ranker}", "suites=[mt-bench]")
        assert _hub(d) == {"HuggingFaceH4/mistral-7b-sft-beta", "HuggingFaceH4/ultrafeedback_binarized"}
        assert not any(a["kind"].startswith("ranker") or a["name"].endswith(":gpt-4") for a in d["artefacts"])


def test_rankers_that_download_a_model_are_hub_artefacts(tmp_path):
    assert "llm-blender/PairRM-hf" in _hub(_plan("online.ranker=pairrm", "suites=[mt-bench]"))
    assert "org/rm-7b" in _hub(_plan("online.ranker=reward-model:org/rm-7b", "suites=[mt-bench]"))
    local = _plan(f"online.ranker=pairrm:{tmp_path}", "suites=[mt-bench]")
    assert {"kind": "ranker (pairrm)", "name": str(tmp_path), "where": "local", "present": True} in local["artefacts"]
    assert "llm-blender/PairRM-hf" not in _hub(local)


def test_lm_eval_tasks_are_never_hub_artefacts(tmp_path):
    (tmp_path / "mytask.yaml").write_text("task: mytask\ndataset_path: json\n")
    (tmp_path / "other.yaml").write_text("task: other\n")
    d = _plan("online.ranker=pairrm", f"suites=['lm-eval:mytask,{tmp_path / 'other.yaml'},arc_easy']",
              f"suite_options={{lm-eval: {{include_path: {tmp_path}}}}}")
    tasks = {a["name"]: a for a in d["artefacts"] if a["kind"] == "lm-eval task"}
    assert set(tasks) == {"mytask", str(tmp_path / "other.yaml"), "arc_easy"}
    assert tasks["mytask"]["where"].startswith("local") and tasks["mytask"]["present"] is True
    assert (tasks[str(tmp_path / "other.yaml")]["where"], tasks[str(tmp_path / "other.yaml")]["present"]) == ("local", True)
    assert tasks["arc_easy"]["where"] != "hub" and tasks["arc_easy"]["present"] is None
    assert _hub(d) == {"HuggingFaceH4/mistral-7b-sft-beta", "HuggingFaceH4/ultrafeedback_binarized", "llm-blender/PairRM-hf"}


def test_an_lm_eval_preset_lists_its_tasks():
    d = describe(load_config(ZEPHYR))
    tasks = [a["name"] for a in d["artefacts"] if a["kind"] == "lm-eval task"]
    assert tasks == ["arc_challenge", "hellaswag", "truthfulqa_mc2", "mmlu", "winogrande", "gsm8k"]


# ---------------------------------------------------------------- --methods / --suites
def test_plan_methods_and_suites_flags_as_in_train_and_eval():
    flags = cli("plan", "-f", "json", "--methods", "sft,dpo", "--suites", "tiny-world")
    sets = cli("plan", "-f", "json", "--set", "methods=[sft, dpo]", "--set", "suites=[tiny-world]")
    assert flags.exit_code == sets.exit_code == 0
    assert json.loads(flags.stdout) == json.loads(sets.stdout)
    names = [s["name"] for s in json.loads(flags.stdout)["stages"]]
    assert names == ["world", "sft", "dpo", "eval sft tiny-world", "eval dpo tiny-world"]


def test_plan_suites_keep_an_lm_eval_task_list():
    res = cli("plan", "-f", "json", "--methods", "sft", "--suites", "lm-eval:hellaswag,arc_easy", "--suites", "tiny-world")
    assert res.exit_code == 0
    assert [s["suite"] for s in json.loads(res.stdout)["stages"] if s["kind"] == "eval"] == [
        "lm-eval:hellaswag,arc_easy", "tiny-world"]


def test_plan_refuses_an_unknown_method_or_suite():
    assert cli("plan", "--methods", "no-such-method").exit_code == 2
    assert cli("plan", "--suites", "no-such-suite").exit_code == 2


# ---------------------------------------------------------------- hyperparameters in the text
def _train_lines(text: str) -> list[dict[str, str]]:
    return [dict(kv.split("=", 1) for kv in line.strip().removeprefix("train: ").split("; "))
            for line in text.splitlines() if line.strip().startswith("train: ")]


def test_text_shows_each_training_stage_hyperparameters():
    cfg = load_config(ZEPHYR, sets=[f"launch.accelerate_config={REPO / 'configs/accelerate/zero3.yaml'}"])
    d = describe(cfg)
    lines = _train_lines(to_text(d))
    assert len(lines) == len([s for s in d["stages"] if s["kind"] in ("sft", "preference")]) == 7
    for t in lines:
        assert {k: t[k] for k in ("scheduler", "warmup", "optim", "precision", "truncation", "strategy", "processes",
                                  "seed")} == {"scheduler": "cosine", "warmup": "0.1", "optim": "adamw_torch",
                                               "precision": "bf16", "truncation": "authors",
                                               "strategy": "deepspeed zero-3", "processes": "8", "seed": "42"}


def test_text_hyperparameters_of_the_tiny_default():
    d = describe(load_config(sets=["methods=[sft]", "suites=[tiny-world]", "device=cpu", "seed=3"]))
    (t,) = _train_lines(to_text(d))
    # tiny.yaml's sft: cosine, no optim set (transformers' default); fp32 on CPU; one process, plain DDP
    assert (t["scheduler"], t["precision"], t["strategy"], t["processes"], t["seed"]) == ("cosine", "fp32", "ddp", "1", "3")
    assert "truncation" not in t  # an SFT stage has no preference truncation rule


# ---------------------------------------------------------------- data.split
def _data_spec(source: str, split: str = "train_prefs"):
    cfg = load_config(ZEPHYR, sets=[f"data.prompts={source}", f"data.split={split}", "data.expected_rows=null"])
    return Sources.of(cfg).data


def _jsonl(path: Path, rows: int) -> Path:
    msgs = lambda text: [{"role": "user", "content": "q"}, {"role": "assistant", "content": text}]  # noqa: E731
    path.write_text("".join(json.dumps({"prompt": f"p{i}", "chosen": msgs("c"), "rejected": msgs("r")}) + "\n"
                            for i in range(rows)))
    return path


def test_a_single_local_file_records_no_split(tmp_path):
    f = _jsonl(tmp_path / "p.jsonl", 8)
    a, b = _data_spec(str(f), "train_prefs"), _data_spec(str(f), "test_prefs")
    assert a.spec.split is None and a.key == b.key  # the split it does not read cannot change its key
    assert from_json(to_json(a.spec)) == a.spec  # as the stage worker reads it back
    d = describe(load_config(ZEPHYR, sets=[f"data.prompts={f}", "data.expected_rows=null"]))
    assert d["stages"][0]["kind"] == "data" and d["stages"][0]["split"] is None


def test_the_planned_spec_of_a_local_file_loads_it(tmp_path):
    from selm_bench.harness.data import prepare

    f = _jsonl(tmp_path / "p.jsonl", 8)
    prepare(_data_spec(str(f)).spec, tmp_path, tmp_path / "data")  # 8 rows in 4 chunks of 2
    assert json.loads((tmp_path / "data" / "counts.json").read_text()) == {
        "rows": 8, "chunks": {"chunk-1": 2, "chunk-2": 2, "chunk-3": 2, "chunk-4": 2}}


def test_saved_datasets_keep_the_split_only_where_it_picks_one(tmp_path):
    from datasets import Dataset, DatasetDict

    one = Dataset.from_list([{"prompt": "p", "chosen": "c", "rejected": "r"}] * 2)
    one.save_to_disk(str(tmp_path / "one"))
    DatasetDict({"train_prefs": one}).save_to_disk(str(tmp_path / "dict"))
    assert _data_spec(str(tmp_path / "one")).spec.split is None
    assert _data_spec(str(tmp_path / "dict")).spec.split == "train_prefs"


def test_a_hub_source_keeps_its_split_and_key():
    data = _data_spec("HuggingFaceH4/ultrafeedback_binarized")
    assert data.spec.split == "train_prefs"
    assert data.key == stable_hash({"kind": "data", "source": "HuggingFaceH4/ultrafeedback_binarized",
                                    "split": "train_prefs", "chunks": 4, "expected_rows": None})
