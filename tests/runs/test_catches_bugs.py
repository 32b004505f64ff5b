"""Tests that catch single-line bugs which once passed the whole suite. Each test
names the bug it catches; expected values are written by hand. (The tiny-world AlpacaEval preference
reversed: tests/evals/test_alpaca_eval.py::test_tiny_mode_two_checkpoints_hand_computed.)"""

import json
from io import StringIO
from pathlib import Path

import pytest

from support.fixtures import use_recorder
from selm_bench.harness.world import write_jsonl


# ---------------------------------------------------------------- the online pair builder
def test_pairs_take_the_best_as_chosen_and_the_worst_as_rejected():
    """Bug: chosen = worst, rejected = best."""
    from selm_bench.trainers.online import build_pairs

    prompts = [{"prompt": "p0"}, {"prompt": "p1"}, {"prompt": "p2"}, {"prompt": "p3"}]
    cands = [["a", "b", "c"], ["d", "e", "f"], ["g", "h", "i"], ["j", "k", "l"]]
    scores = [[0.2, 0.9, 0.5], [1.0, 0.0, 0.0], [0.5, 0.5, 0.5], None]
    records, pairs = build_pairs(prompts, cands, scores)
    assert [(r["chosen"], r["rejected"], r["used"]) for r in records] == [
        ("b", "a", True), ("d", "e", True), ("g", "g", False), (None, None, False)]  # first of equals; a tie unused
    assert [p["prompt"] for p in pairs] == ["p0", "p1"]
    assert [(r["candidates"], r["scores"]) for r in records] == list(zip(cands, scores))  # kept for generations.jsonl
    _, with_ties = build_pairs(prompts, cands, scores, keep_ties=True)
    assert [p["prompt"] for p in with_ties] == ["p0", "p1", "p2"]  # a failed prompt never becomes a pair
    # The same text scored twice (a position-biased judge): best and worst differ in score, not in text.
    (same,), no_pairs = build_pairs([{"prompt": "p"}], [["x", "x"]], [[1.0, 0.0]])
    assert (same["chosen"], same["rejected"], same["used"], no_pairs) == ("x", "x", False, [])


def test_prompt_chunks_are_disjoint_and_in_order():
    """Bugs: an off-by-one chunk start; an empty chunk passing silently."""
    from selm_bench.trainers.online import prompt_chunk

    rows = list(range(10))
    assert [prompt_chunk(rows, t, 3) for t in (1, 2, 3)] == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]  # the remainder unused
    assert prompt_chunk(rows, 1, 1) == rows


# ---------------------------------------------------------------- y_ref is the greedy response
def test_y_ref_is_greedy_and_the_samples_are_sampled(monkeypatch, tmp_path):
    """Bug: y_ref sampled instead of greedy (ref_response: greedy)."""
    from selm_bench.harness.core.specs import GenerateSpec, Ref
    from selm_bench.trainers.online import generate

    rec = use_recorder(monkeypatch, lambda conv, s: ("greedy " if s.temperature == 0 else "sampled ") + conv[-1]["content"])
    write_jsonl(tmp_path / "prompts.jsonl", [{"id": f"p{i}", "prompt": f"q{i}", "answer": "x", "category": "add"}
                                             for i in range(4)])
    spec = GenerateSpec(policy=Ref(path="policy"), prompts=Ref(path="prompts.jsonl"), chunk=2, chunks=2,
                        candidates=["policy"], num_samples=2, temperature=0.9, top_p=0.95, max_new_tokens=8,
                        ref_response="greedy", backend="recorder", backend_options={}, device="cpu", seed=7)
    generate(spec, tmp_path, tmp_path)
    rows = [json.loads(line) for line in (tmp_path / "candidates.jsonl").read_text().splitlines()]
    assert [r["prompt"] for r in rows] == ["q2", "q3"]  # chunk 2 of 2
    assert [r["y_ref"] for r in rows] == ["greedy q2", "greedy q3"]
    assert [r["candidates"] for r in rows] == [["sampled q2", "sampled q2", "greedy q2"],
                                               ["sampled q3", "sampled q3", "greedy q3"]]
    (_, ref_sampling), (_, samples) = rec.calls
    assert (ref_sampling.n, ref_sampling.temperature) == (1, 0.0)
    assert (samples.n, samples.temperature, samples.top_p) == (2, 0.9, 0.95)

    # The paper's candidates: the greedy response plus the prompt's own dataset pair (no samples).
    write_jsonl(tmp_path / "pairs.jsonl", [{"id": f"p{i}", "prompt": f"q{i}", "chosen": f"good{i}", "rejected": f"bad{i}"}
                                           for i in range(2)])
    paper = spec.model_copy(update={"candidates": ["policy", "dataset"], "num_samples": 0, "chunk": 1, "chunks": 1,
                                    "prompts": Ref(path="pairs.jsonl")})
    generate(paper, tmp_path, tmp_path / "paper")
    rows = [json.loads(line) for line in (tmp_path / "paper" / "candidates.jsonl").read_text().splitlines()]
    assert [r["candidates"] for r in rows] == [["greedy q0", "good0", "bad0"], ["greedy q1", "good1", "bad1"]]
    assert len(rec.calls) == 3  # y_ref only: no sampling call without samples
    generate(paper.model_copy(update={"candidates": ["dataset"]}), tmp_path, tmp_path / "dataset")
    rows = [json.loads(line) for line in (tmp_path / "dataset" / "candidates.jsonl").read_text().splitlines()]
    assert [(r["candidates"], r["y_ref"]) for r in rows] == [(["good0", "bad0"], "greedy q0"), (["good1", "bad1"], "greedy q1")]

    empty = spec.model_copy(update={"chunk": 3, "chunks": 3, "prompts": Ref(path="two.jsonl")})
    write_jsonl(tmp_path / "two.jsonl", [{"id": "a", "prompt": "qa"}, {"id": "b", "prompt": "qb"}])
    with pytest.raises(RuntimeError) as err:
        generate(empty, tmp_path, tmp_path / "empty")
    assert str(err.value).startswith("two.jsonl: ") and "chunk 3 of 3" in str(err.value)
    assert not (tmp_path / "empty").exists()


# ---------------------------------------------------------------- the plan: reference, keys, --force
def _micro_cfg(**over):
    from selm_bench.harness.core.config import load_config

    sets = ["online.iterations=3", "methods=[sft, dpo, iterative-dpo, selm]", "suites=[tiny-world]",
            *[f"{k}={v}" for k, v in over.items()]]
    return load_config(None, sets=sets)


def _stages(cfg) -> dict:
    from selm_bench.harness.run.stages import plan

    stages, evals = plan(cfg)
    return {s.name: s for s in [*stages, *evals]}


def test_each_iteration_trains_against_the_previous_iterations_model():
    """Bug: the reference (and the generating policy) never updated between iterations."""
    st = _stages(_micro_cfg())
    for method in ("selm", "iterative-dpo"):
        previous = "checkpoints/dpo/model"  # online.start: dpo (the default)
        for t in (1, 2, 3):
            train = st[f"{method}/iter-{t}"].spec
            shared = st.get(f"{method}/iter-{t}/generate") or st[f"iterative-dpo/iter-{t}/generate"]  # iter-1 is shared
            generate = shared.spec
            assert train.reference.path == train.policy.path == generate.policy.path == previous, (method, t)
            previous = f"checkpoints/{method}/iter-{t}/model"
    assert st["selm/iter-2"].spec.reference.key == st["selm/iter-1"].key  # the key of the model it names


def test_an_upstream_change_reaches_every_downstream_key_and_nothing_else():
    """Bug: an upstream stage's key no longer reaching the keys of the stages that depend on it."""
    base = {n: s.key for n, s in _stages(_micro_cfg()).items()}
    sft_changed = {n: s.key for n, s in _stages(_micro_cfg(**{"sft.learning_rate": 0.0021})).items()}
    assert {n for n in base if base[n] != sft_changed[n]} == {n for n in base if n != "world"}
    alpha = {n: s.key for n, s in _stages(_micro_cfg(**{"online.alpha": 0.5})).items()}
    changed = {n for n in base if base[n] != alpha[n]}
    # iteration 1's generate and rank are shared with iterative-dpo (same policy): alpha does not touch them
    assert changed == {"selm/iter-1", "selm/iter-2", "selm/iter-3", "selm/iter-2/generate", "selm/iter-2/rank",
                       "selm/iter-3/generate", "selm/iter-3/rank", "eval selm/iter-1 tiny-world",
                       "eval selm/iter-2 tiny-world", "eval selm/iter-3 tiny-world"}


MICRO = ["--set", "methods=[sft]", "--set", "suites=[tiny-world]", "--set", "world.n_sft=16",
         "--set", "world.n_pref=4", "--set", "world.n_prompts=4", "--set", "world.n_dev=2", "--set", "world.n_eval=4",
         "--set", "world.n_two_turn=2", "--set", "world.n_mc=4", "--set", "model.hidden_size=16",
         "--set", "model.num_layers=1", "--set", "model.num_heads=2", "--set", "model.intermediate_size=32",
         "--set", "sft.epochs=1", "--set", "sft.batch_size=8", "--set", "tiny-world.max_new_tokens=2"]


def test_force_recomputes_every_stage(tmp_path):
    """Bug: --force doing nothing."""
    from typer.testing import CliRunner

    from selm_bench.harness.cli import app

    out = tmp_path / "run"
    runner = CliRunner()
    first = runner.invoke(app, ["train-and-eval", "--out", str(out), *MICRO])
    assert first.exit_code == 0, first.output[-2000:]
    def ended() -> dict[str, int]:  # when each stage record was written (ns: a stage can take under a second)
        return {str(p.parent.relative_to(out)): p.stat().st_mtime_ns for p in out.rglob("stage.json")}

    stamps = ended()
    assert set(stamps) == {"world", "checkpoints/sft/model", "evals/sft/tiny-world"}
    again = runner.invoke(app, ["train-and-eval", "--out", str(out), *MICRO])
    assert again.exit_code == 0 and ended() == stamps  # skipped: unchanged
    forced = runner.invoke(app, ["train-and-eval", "--out", str(out), "--force", *MICRO])
    assert forced.exit_code == 0, forced.output[-2000:]
    after = ended()
    assert all(after[name] > stamps[name] for name in stamps), (stamps, after)


# ---------------------------------------------------------------- MT-Bench's second turn
def test_mt_bench_turn_two_sees_turn_one_and_the_models_answer(monkeypatch, tmp_path, tiny_world):
    """Bug: MT-Bench's turn-2 prompt missing turn 1."""
    from selm_bench.evals.base import EvalContext
    from selm_bench.evals.mt_bench import run

    rec = use_recorder(monkeypatch)
    ctx = EvalContext(model="unused", name="m", out_dir=tmp_path / "mt", world_dir=tiny_world, backend="recorder",
                      options={"limit": 2, "max_new_tokens": 4}, judge="oracle")
    run(ctx)
    questions = [json.loads(line) for line in (tiny_world / "two_turn.jsonl").read_text().splitlines()][:2]
    turn1, turn2 = [c for c, _ in rec.calls]
    assert turn1 == [[{"role": "user", "content": q["turns"][0]}] for q in questions]
    assert turn2 == [[{"role": "user", "content": q["turns"][0]},
                      {"role": "assistant", "content": "reply to " + q["turns"][0]},
                      {"role": "user", "content": q["turns"][1]}] for q in questions]


# ---------------------------------------------------------------- BrainTeaser's few-shot labels
def _bt_data(root: Path) -> Path:
    bt = root / "brainteaser"
    rows = [{"id": f"SP-0{s}", "question": f"Riddle{s}?", "choice_list": ["w", "r", "x", "None of above."], "label": 1}
            for s in ("", "_SR", "_CR")]
    write_jsonl(bt / "SP_train.jsonl", rows)
    demos = [{"Question": f"Demo {i}?", "label": i % 4,
              "choice_list": [f"RIGHT{i}" if j == i % 4 else f"WRONG{i}{j}" for j in range(4)]} for i in range(4)]
    write_jsonl(bt / "demonstration.jsonl", demos)
    return root


def test_brainteaser_few_shot_answers_are_the_labelled_choices_in_generate_mode(tmp_path, monkeypatch):
    """Bug: the few-shot examples labelled off by one (generate mode: the demonstration's answer turn)."""
    from selm_bench.evals import brainteaser as B
    from selm_bench.evals.base import EvalContext

    rec = use_recorder(monkeypatch, lambda conv, s: "(B)")
    ctx = EvalContext(model="unused", name="m", out_dir=tmp_path / "bt", data_dir=_bt_data(tmp_path), backend="recorder",
                      options={"mode": "generate", "puzzles": "SP", "num_fewshot": 4})
    res = B.run(ctx)
    conv = rec.calls[0][0][0]
    answers = [m["content"] for m in conv if m["role"] == "assistant"]
    assert answers == ["(A) RIGHT0", "(B) RIGHT1", "(C) RIGHT2", "(D) RIGHT3"]
    assert res.metrics["overall"] == 1.0  # "(B)" is each row's label 1


def test_brainteaser_few_shot_answers_are_the_labelled_choices_in_loglikelihood_mode(tmp_path, tiny_model):
    """Bug: the few-shot examples labelled off by one (loglikelihood mode: lm-eval's few-shot context)."""
    from selm_bench.evals import brainteaser as B
    from selm_bench.evals.base import EvalContext

    ctx = EvalContext(model=str(tiny_model), name="m", out_dir=tmp_path / "bt", data_dir=_bt_data(tmp_path),
                      options={"puzzles": "SP", "num_fewshot": 4, "batch_size": 4})
    B.run(ctx)
    samples = [json.loads(line) for line in (ctx.out_dir / "samples_brainteaser_sp.jsonl").read_text().splitlines()]
    contexts = {args[0] for s in samples for args in s["arguments"]}  # lm-eval: [context, continuation] per choice
    assert len(contexts) == 3  # one per puzzle; each holds the 4 demonstrations with their labelled answers
    for text in contexts:
        assert [f"Answer: RIGHT{i}" in text for i in range(4)] == [True] * 4 and "Answer: WRONG" not in text, text


# ---------------------------------------------------------------- the terminal table
def test_terminal_table_labels_rows_by_checkpoint(monkeypatch):
    """Bug: the terminal table labelling rows by method instead of checkpoint."""
    from rich.console import Console

    from selm_bench.harness.reports import leaderboard

    from selm_bench.harness.core import progress

    buf = StringIO()
    monkeypatch.setattr(progress, "console", Console(file=buf, width=250))
    rows = [{"checkpoint": c, "method": m, "iteration": i, "tiny-world/accuracy": a}
            for c, m, i, a in (("sft", "sft", None, 0.25), ("selm/iter-1", "selm", 1, 0.5), ("selm/iter-2", "selm", 2, 0.75))]
    leaderboard.print_table(rows, metric_cols=["tiny-world/accuracy"])
    lines = [line for line in buf.getvalue().splitlines() if "0.5" in line or "0.75" in line or "0.25" in line]
    assert len(lines) == 3
    assert "selm/iter-1" in lines[1] and "0.5" in lines[1] and "selm/iter-2" in lines[2] and "0.75" in lines[2]


# ---------------------------------------------------------------- alpha reaches SELM's training
def _logp(model, tok, prompt: str, reply: str) -> float:
    """Sum of log pi(reply | prompt) over the reply's tokens, through the chat template."""
    import torch

    head = tok.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True)
    full = tok.apply_chat_template([{"role": "user", "content": prompt}, {"role": "assistant", "content": reply}],
                                   tokenize=False)
    ids = tok(full, return_tensors="pt", add_special_tokens=False).input_ids
    n_head = len(tok(head, add_special_tokens=False).input_ids)
    with torch.no_grad():
        logits = model(ids).logits.log_softmax(-1)
    return float(logits[0, n_head - 1:-1].gather(-1, ids[0, n_head:, None]).sum())


def test_configured_alpha_reaches_selm_training(tmp_path, tiny_model):
    """Bug: online.alpha not reaching SELM's trainer. The selm stage planned from the config, trained
    with alpha 0 and alpha 2 from the same model on the same pairs: the weights differ, and the
    optimism term lowers the trained policy's log-probability of y_ref."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from selm_bench.harness.core.specs import Ref
    from selm_bench.trainers.train import train_preference

    rows = [{"prompt": p, "chosen": c, "rejected": r, "y_ref": y, "used": True} for p, c, r, y in (
        ("What is 37 + 5 ?", "42", "32", "41"), ("Reverse : a b c", "c b a", "a b c", "c a b"),
        ("Word 2 of : the red fox", "red", "fox", "the"), ("What is 9 + 9 ?", "18", "81", "19"))]
    write_jsonl(tmp_path / "generations.jsonl", rows)
    tok = AutoTokenizer.from_pretrained(tiny_model)
    trained = {}
    for alpha in (0.0, 2.0):
        spec = _stages(_micro_cfg(**{"online.alpha": alpha, "online.learning_rate": 0.003, "online.batch_size": 4,
                                     "online.epochs": 2, "online.nll_weight": 0}))["selm/iter-1"].spec
        assert spec.loss == "selm" and spec.alpha == alpha
        spec = spec.model_copy(update={"policy": Ref(path=str(tiny_model)), "reference": Ref(path=str(tiny_model)),
                                       "pairs": Ref(path=str(tmp_path / "generations.jsonl"))})
        train_preference(spec, tmp_path, tmp_path / f"alpha-{alpha}")
        trained[alpha] = AutoModelForCausalLM.from_pretrained(tmp_path / f"alpha-{alpha}")
    w0, w2 = trained[0.0].state_dict(), trained[2.0].state_dict()
    assert any(not (w0[k] == w2[k]).all() for k in w0)
    ref_logp = {a: sum(_logp(m, tok, r["prompt"], r["y_ref"]) for r in rows) for a, m in trained.items()}
    assert ref_logp[2.0] < ref_logp[0.0]


# ---------------------------------------------------------------- the rank stage
class _LengthRanker:
    """Scores a candidate by its length; records what the rank stage hands it."""

    seen: dict = {}

    def __init__(self, name: str = "", **kwargs):
        _LengthRanker.seen = {"name": name, **kwargs}
        self.errors = ["prompt 1: no verdict"] + [f"extra {i}" for i in range(6)]

    def score(self, prompts, candidates):
        _LengthRanker.seen["prompts"] = prompts
        return [None if p["prompt"] == "q1" else [float(len(c)) for c in cands] for p, cands in zip(prompts, candidates)]

    def accounting(self):
        return {"calls": 7}


def test_rank_stage_passes_its_settings_and_records_what_it_did(tmp_path, monkeypatch):
    """Bugs: the judge endpoint or cache not reaching the ranker; the candidates or y_ref leaking into the
    ranker's prompts; the stage record (stage_info.json) or generations.jsonl losing a field."""
    from selm_bench.harness.core import registry
    from selm_bench.harness.core.specs import RankSpec, Ref
    from selm_bench.trainers.online import rank

    registry.load_all()
    monkeypatch.setitem(registry._ENTRIES["ranker"], "by-length", registry.Entry("ranker", "by-length", _LengthRanker, "t"))
    rows = [{"id": f"p{i}", "prompt": f"q{i}", "candidates": ["a", "bbb", "cc"], "y_ref": "cc"} for i in range(3)]
    write_jsonl(tmp_path / "gen" / "candidates.jsonl", rows)
    spec = RankSpec(candidates=Ref(path="gen/candidates.jsonl"), ranker="by-length", max_failures=0.5, batch_size=3,
                    judge_base_url="http://127.0.0.1:9/v1")
    out = tmp_path / "rank"
    rank(spec, tmp_path, out, runtime={"concurrency": 2})
    seen = _LengthRanker.seen
    assert (seen["name"], seen["base_url"], seen["cache_dir"], seen["concurrency"], seen["batch_size"], seen["device"]) == (
        "by-length", "http://127.0.0.1:9/v1", str(tmp_path / "judge-cache"), 2, 3, "cpu")
    assert seen["prompts"] == [{"id": f"p{i}", "prompt": f"q{i}"} for i in range(3)]
    info = json.loads((out / "stage_info.json").read_text())
    assert info == {"prompts": 3, "ranker": "by-length", "ranker_failures": 1, "ranker_calls": {"calls": 7},
                    "ranker_failure_fraction": 1 / 3, "pairs": 2, "tie_pairs": 0,
                    "ranker_errors": ["prompt 1: no verdict", "extra 0", "extra 1", "extra 2", "extra 3"]}  # the first 5
    recs = [json.loads(line) for line in (out / "generations.jsonl").read_text().splitlines()]
    assert [(r["chosen"], r["rejected"], r["used"], r["y_ref"]) for r in recs] == [
        ("bbb", "a", True, "cc"), (None, None, False, "cc"), ("bbb", "a", True, "cc")]
    assert recs[0]["scores"] == [1.0, 3.0, 2.0] and recs[0]["candidates"] == ["a", "bbb", "cc"]

    class Short(_LengthRanker):
        def score(self, prompts, candidates):
            return [[1.0, 2.0, 3.0]]

    # One prompt, failed: past max_failures 0.6 the stage fails; at 1.0 it records the failure, then has no pair.
    write_jsonl(tmp_path / "one" / "candidates.jsonl", [{**rows[1]}])
    one = spec.model_copy(update={"candidates": Ref(path="one/candidates.jsonl"), "max_failures": 0.6})
    with pytest.raises(RuntimeError) as err:
        rank(one, tmp_path, tmp_path / "one-strict")
    assert str(err.value).startswith("ranker by-length ") and "1/1" in str(err.value)
    assert str(err.value).endswith("online.max_ranker_failures = 0.6")  # the limit passed, and where to raise it
    with pytest.raises(RuntimeError, match="nothing to train on$"):
        rank(one.model_copy(update={"max_failures": 1.0}), tmp_path, tmp_path / "one-lax")
    assert json.loads((tmp_path / "one-lax" / "stage_info.json").read_text())["ranker_failure_fraction"] == 1.0

    monkeypatch.setitem(registry._ENTRIES["ranker"], "short", registry.Entry("ranker", "short", Short, "t"))
    with pytest.raises(RuntimeError) as err:
        rank(spec.model_copy(update={"ranker": "short"}), tmp_path, tmp_path / "short")
    assert str(err.value).startswith("ranker short: ") and "1 score lists for 3 prompts" in str(err.value)
