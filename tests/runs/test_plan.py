"""`selm-bench plan`: the text a user reads, checked line by line against numbers worked out by hand
from the config and the documented assumptions (8 N FLOPs per training token, 2 N per generated
token, half of max_length / max_new_tokens on average, 989 TFLOP/s at 40% / 10% utilisation)."""

import re
from pathlib import Path

import pytest

from selm_bench.harness.core.config import load_config
from selm_bench.harness.run.plan import describe, params_billions, to_text

REPO = Path(__file__).resolve().parents[2]


def _hub_cache(root: Path, repo_dir: str) -> None:
    """A minimal huggingface_hub cache entry (refs/main, one snapshot file linked to its blob)."""
    entry = root / repo_dir
    (entry / "refs").mkdir(parents=True)
    (entry / "refs" / "main").write_text("a" * 40)
    (entry / "blobs").mkdir()
    (entry / "blobs" / ("b" * 40)).write_text("{}")
    snap = entry / "snapshots" / ("a" * 40)
    snap.mkdir(parents=True)
    (snap / "config.json").symlink_to(entry / "blobs" / ("b" * 40))


# Hand-worked numbers (7B from the model name):
#   training, one iteration: 15,283 pairs x 2 sequences x 512 tokens x 8 x 7e9 / (989e12 x 0.4) / 3600 = 0.6154 h
#   generation: 15,283 greedy responses x 512 tokens x 2 x 7e9 / (989e12 x 0.1) / 3600 = 0.3077 h
#   totals: 2 x 0.6154 + 0.3077 = 1.54 h; MT-Bench 80 questions x 2 turns = 160 judge calls x $0.05 = $8 a checkpoint
#   ranking: a reward model scores each of the 3 candidates: 15,283 x 3 = 45,849 rows
EXPECTED = """\
plan: selm-zephyr-7b (7 stages)
  1. data [data] -> data
       inputs: HuggingFaceH4/ultrafeedback_binarized
       rows=61,135; detail=HuggingFaceH4/ultrafeedback_binarized [train_prefs]: 61135 rows -> 4 chunks of 15283
  2. dpo [preference] -> checkpoints/dpo/model
       inputs: HuggingFaceH4/mistral-7b-sft-beta, HuggingFaceH4/mistral-7b-sft-beta, data/chunk-1.jsonl
       model=HuggingFaceH4/mistral-7b-sft-beta; reference=HuggingFaceH4/mistral-7b-sft-beta; rows=15,283; loss=dpo; \
beta=0.01; alpha=0; learning_rate=5e-07; global_batch=256 = 8 x 8 x 4; epochs=1; max_length=1,024; max_prompt_length=512; \
gpu_hours=0.615
       train: scheduler=cosine; warmup=0.1; optim=adamw_torch; weight_decay=0; precision=bf16; grad_ckpt=true; \
strategy=ddp; processes=8; seed=42; truncation=authors; precompute_ref=true
  3. iterative-dpo/iter-1/generate [generate] -> checkpoints/iterative-dpo/iter-1/generate
       inputs: checkpoints/dpo/model, data/chunk-2.jsonl
       model=checkpoints/dpo/model; rows=15,283; backend=vllm; generations=15,283; gpu_hours=0.308; \
detail=chunk 1/1; 1 policy response(s) + the dataset pair = 3 candidates
  4. iterative-dpo/iter-1/rank [rank] -> checkpoints/iterative-dpo/iter-1/rank
       inputs: checkpoints/iterative-dpo/iter-1/generate/candidates.jsonl
       rows=15,283; ranker=reward-model:org/rm-7b; keep_ties=true; ranker_calls=45,849; \
detail=3 candidates a prompt, 3 reward-model rows, one a candidate; best -> chosen, worst -> rejected
  5. iterative-dpo/iter-1 [preference] -> checkpoints/iterative-dpo/iter-1/model
       inputs: checkpoints/dpo/model, checkpoints/dpo/model, checkpoints/iterative-dpo/iter-1/rank/generations.jsonl
       model=checkpoints/dpo/model; reference=checkpoints/dpo/model; rows=15,283; loss=dpo; beta=0.01; alpha=0; \
learning_rate=5e-07; global_batch=256 = 8 x 8 x 4; epochs=1; max_length=1,024; max_prompt_length=512; gpu_hours=0.615
       train: scheduler=cosine; warmup=0.1; optim=adamw_torch; weight_decay=0; precision=bf16; grad_ckpt=true; \
strategy=ddp; processes=8; seed=42; truncation=authors; precompute_ref=true
  6. eval dpo mt-bench [eval] -> evals/dpo/mt-bench
       inputs: checkpoints/dpo/model
       model=checkpoints/dpo/model; generations=160; judge=openai:gpt-4; judge_calls=160; judge_usd=8
  7. eval iterative-dpo/iter-1 mt-bench [eval] -> evals/iterative-dpo/iter-1/mt-bench
       inputs: checkpoints/iterative-dpo/iter-1/model
       model=checkpoints/iterative-dpo/iter-1/model; generations=160; judge=openai:gpt-4; judge_calls=160; judge_usd=8
totals: stages=7; generations=15,603; ranker_calls=45,849; judge_calls=320; judge_usd=16; gpu_hours=1.54
assumptions: The estimates are rough on purpose and their assumptions are printed with them: training FLOPs = 8 N \
per token (6 N for the policy's forward and backward, 2 N for the reference's forward) over sequences of half \
`max_length` on average; generation FLOPs = 2 N per new token, half of `max_new_tokens` on average; H100 bf16 at \
989 TFLOP/s with 40% utilisation for training and 10% for generation. N comes from the model name ("7b", "8B"); \
without one no GPU-hours are given.
artefacts:
  model: HuggingFaceH4/mistral-7b-sft-beta (hub; present)
  dataset: HuggingFaceH4/ultrafeedback_binarized (hub; missing)
  ranker (reward-model): org/rm-7b (hub; missing)
  mt-bench data: <eval.data_dir>/mt_bench/question.jsonl (local; present)
  mt-bench data: <eval.data_dir>/mt_bench/reference_answer/gpt-4.jsonl (local; missing)
  mt-bench data: <eval.data_dir>/mt_bench/judge_prompts.jsonl (local; missing)
"""


def test_plan_text_of_one_online_iteration_by_hand(tmp_path, monkeypatch):
    import huggingface_hub.constants

    hub = tmp_path / "hub"
    _hub_cache(hub, "models--HuggingFaceH4--mistral-7b-sft-beta")
    _hub_cache(hub, "models--HuggingFaceH4--ultrafeedback_binarized")  # a *model* of the dataset's name: not the dataset
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(hub))
    mirror = tmp_path / "mirror"
    (mirror / "mt_bench").mkdir(parents=True)
    (mirror / "mt_bench" / "question.jsonl").write_text("{}\n")
    cfg = load_config(REPO / "configs" / "zephyr-7b.yaml", sets=[
        "methods=[iterative-dpo]", "online.iterations=1", "online.learning_rate=[5e-7]", "online.chunks=[2]",
        "online.ranker=reward-model:org/rm-7b", "suites=[mt-bench]", f"eval.data_dir={mirror}"])
    assert to_text(describe(cfg)) == EXPECTED


def header(line: str) -> tuple[str, str, str, str]:
    """A stage's first line, "  N. NAME [KIND] -> FOLDER", as (N, NAME, KIND, FOLDER)."""
    n, name, kind, folder = re.fullmatch(r"\s+(\d+)\. (.+) \[(\w+)\] -> (\S+)", line).groups()
    return n, name, kind, folder


def fields(line: str) -> dict[str, str]:
    """A "key=value; key=value" line as a dict (a free-text detail may hold "; " itself)."""
    out: dict[str, str] = {}
    last = None
    for part in line.strip().removeprefix("totals: ").split("; "):
        key, eq, value = part.partition("=")
        if eq and re.fullmatch(r"[a-z_]+", key):
            out[key], last = value, key
        else:
            out[last] += "; " + part
    return out


def artefact(line: str) -> tuple[str, str, str, str]:
    """An artefact line, "  KIND: NAME (WHERE; PRESENT)", as (KIND, NAME, WHERE, PRESENT)."""
    kind, name, where, present = re.fullmatch(r"  (.+?): (\S+) \((.*); (\w+)\)", line).groups()
    return kind, name, where, present


def test_plan_counts_of_each_suite_by_hand():
    """Question limits, BrainTeaser and lm-eval (no generations, no judge), AlpacaEval's 805 x $0.012."""
    cfg = load_config(REPO / "configs" / "zephyr-7b.yaml", sets=[
        "methods=[dpo]", "suites=[mt-bench, alpaca-eval, brainteaser, 'lm-eval:arc_easy']",
        "suite_options={mt-bench: {question_limit: 10}}"])
    d = describe(cfg)
    text = to_text(d).splitlines()
    dpo = "checkpoints/dpo/model"
    # after the dpo stage's 4 lines (its train: line new): each eval's header, inputs and counts
    assert [header(text[i]) for i in (8, 11, 14, 17)] == [
        ("3", "eval dpo mt-bench", "eval", "evals/dpo/mt-bench"), ("4", "eval dpo alpaca-eval", "eval", "evals/dpo/alpaca-eval"),
        ("5", "eval dpo brainteaser", "eval", "evals/dpo/brainteaser"),
        ("6", "eval dpo lm-eval:arc_easy", "eval", "evals/dpo/lm-eval:arc_easy")]
    assert [text[i].strip() for i in (9, 12, 15, 18)] == [f"inputs: {dpo}"] * 4
    assert fields(text[10]) == {"model": dpo, "generations": "20", "judge": "openai:gpt-4", "judge_calls": "20",
                                "judge_usd": "1"}
    assert fields(text[13]) == {"model": dpo, "generations": "805", "judge": "weighted_alpaca_eval_gpt4_turbo",
                                "judge_calls": "805", "judge_usd": "9.66"}
    for scored in (fields(text[16]), fields(text[19])):  # brainteaser and lm-eval: log-likelihoods, no judge
        detail = scored.pop("detail")
        assert scored == {"model": dpo, "generations": "0", "judge_calls": "0"}
        assert "lm-eval" in detail and "no judge" in detail
    # 20 + 805 generations; $1 + $9.66; one training stage of 0.6154 h, rounded to 2 decimals in the totals
    assert d["totals"] == {"stages": 6, "generations": 825, "ranker_calls": 0, "judge_calls": 825, "judge_usd": 10.66,
                           "gpu_hours": 0.62}
    assert text[20].startswith("totals: ") and fields(text[20]) == {
        "stages": "6", "generations": "825", "ranker_calls": "0", "judge_calls": "825", "judge_usd": "10.7",
        "gpu_hours": "0.62"}
    # an lm-eval task is not a hub repo (lm-eval fetches its dataset at run time)
    kind, name, where, present = artefact(text[-1])
    assert (kind, name, where.startswith("lm-eval registry"), present) == ("lm-eval task", "arc_easy", True, "unknown")
    assert [artefact(line) for line in text[-3:-1]] == [
        ("brainteaser data", f"<eval.data_dir>/brainteaser/{f}_train.jsonl", "local", "missing") for f in ("SP", "WP")]


def test_plan_of_the_tiny_world_by_hand():
    """No model name: no GPU-hours (totals '?'); the oracle judge is free; 5 policy responses
    (4 samples + the greedy y_ref) + the dataset pair = 7 candidates a prompt, each verified once by the
    oracle ranker: 2,400 x 7 = 16,800 ranker calls. Each training stage has a `train:` line."""
    cfg = load_config(sets=["methods=[iterative-dpo]", "online.iterations=1", "suites=[tiny-world, mt-bench, alpaca-eval]"])
    text = to_text(describe(cfg)).splitlines()
    assert text[0] == "plan: tiny (15 stages)" and header(text[1]) == ("1", "world", "world", "world")
    world = fields(text[2])["detail"]
    assert "seed 0" in world and world.endswith("tiny Llama 128x2")
    assert text[4].strip().removeprefix("inputs: ").split(", ") == ["world/base-model", "world/data/sft.jsonl"]
    assert fields(text[5]) == {"model": "world/base-model", "rows": "6,000", "learning_rate": "0.003",
                               "global_batch": "64 = 1 x 64 x 1", "epochs": "8"}
    generate = fields(text[13])
    assert generate.pop("detail").split("; ")[0] == "chunk 1/1" and generate == {
        "model": "checkpoints/dpo/model", "rows": "2,400", "backend": "hf", "generations": "12,000"}
    rank = fields(text[16])
    assert "7 verifier calls" in rank.pop("detail") and rank == {
        "rows": "2,400", "ranker": "oracle", "keep_ties": "false", "ranker_calls": "16,800"}
    assert fields(text[23]) == {"model": "checkpoints/sft/model", "generations": "1,000", "judge_calls": "0"}
    assert [header(text[i]) for i in (24, 27)] == [("8", "eval sft mt-bench", "eval", "evals/sft/mt-bench"),
                                                   ("9", "eval sft alpaca-eval", "eval", "evals/sft/alpaca-eval")]
    assert text[25].strip() == text[28].strip() == "inputs: checkpoints/sft/model"
    assert [fields(text[i]) for i in (26, 29)] == [
        {"model": "checkpoints/sft/model", "generations": g, "judge_calls": "0", "detail": "oracle judge (free)"}
        for g in ("240", "1,000")]
    # 12,000 + 3 checkpoints x (1,000 + 120 x 2 + 1,000)
    (totals,) = [line for line in text if line.startswith("totals: ")]
    assert fields(totals) == {"stages": "15", "generations": "18,720", "ranker_calls": "16,800", "judge_calls": "0",
                              "judge_usd": "0", "gpu_hours": "?"}
    assert text[-1] == "artefacts:"  # nothing to fetch


@pytest.mark.parametrize("name, billions", [("HuggingFaceH4/mistral-7b-sft-beta", 7.0),
                                            ("meta-llama/Meta-Llama-3-8B-Instruct", 8.0), ("org/qwen-1.5b", 1.5),
                                            ("org/bert-base", None), ("org/7bit-model", None), ("7b-org/model", None)])
def test_params_from_the_model_name(name, billions):
    assert params_billions(name) == billions


def test_plan_of_the_tiny_world_with_a_configured_model():
    # a pretrained model on the tiny world's data: the world stage builds no tiny Llama
    cfg = load_config(sets=["model.pretrained=org/some-model", "methods=[sft]", "suites=[tiny-world]"])
    text = to_text(describe(cfg)).splitlines()
    assert header(text[1]) == ("1", "world", "world", "world")
    detail = fields(text[2])["detail"]
    assert "configured model" in detail and "tiny Llama" not in detail
