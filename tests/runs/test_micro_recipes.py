"""The paper's two recipes, end to end at micro scale: `configs/zephyr-7b.yaml` and
`configs/llama-3-8b-instruct.yaml` run through `selm-bench train-and-eval` as shipped, except for what
`--set` changes below: the model (micro Mistral / micro Llama-3 on their real tokenizers), the prompts (a
local file in UltraFeedback-binarized's schema), the ranker (a random tiny PairRM in PairRM-hf's layout),
sizes (rows, iterations, batch, lengths, processes, precision, suite limits) and the judges (a loopback
OpenAI endpoint). The backends are set to hf: vLLM's greedy parity with hf is tests/online/test_vllm_real.py's;
an engine start per stage would cost this file minutes. The suites are MT-Bench and AlpacaEval in real
mode and lm-eval on a local two-filter task (gsm8k's shape), since the openllm preset's data is on the hub.

Every stage of two iterations of selm and iterative-dpo runs: data -> (dpo) -> generate -> rank -> train,
then every checkpoint is judged; the records say what each stage did and the rows say what is not canonical.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from support.fixtures import FlakyOpenAI, write_alpaca_reference
from support.real_models import micro_llama3, micro_mistral  # noqa: F401
from support.tiny_pairrm import build_tiny_pairrm
from conftest import write_mt_bench_fixture

ROOT = Path(__file__).resolve().parents[2]
ALPACA_N, MT_N, LM_DOCS = 3, 2, 4
P_PREFERRED = 1 / (1 + math.exp(-2.95))  # the loopback AlpacaEval judge's share for its pick (logprobs -0.05, -3)

# Prompts in UltraFeedback-binarized's schema; some longer than max_prompt_length (32 tokens) so the
# authors' truncation rule cuts them, and chosen/rejected short and long.
TOPICS = ["the moon", "bread", "a river", "chess", "rain", "a violin", "maps", "winter", "bees", "glass",
          "a lighthouse", "tea", "clocks", "snow", "a garden", "trains"]


def ultrafeedback_rows(n: int) -> list[dict]:
    rows = []
    for i in range(n):
        topic = TOPICS[i % len(TOPICS)]
        prompt = f"Write one sentence about {topic}."
        if i % 3 == 0:
            prompt += " Explain why it matters to people who live far away from cities and towns, in plain words." * 2
        chosen = f"{topic.capitalize()} is quiet and old." + (" It shapes the days of many people." * (i % 4))
        rejected = "I do not know." if i % 2 else f"No. {topic} " * 6
        rows.append({"prompt": prompt, "prompt_id": f"p{i:03d}",
                     "chosen": [{"role": "user", "content": prompt}, {"role": "assistant", "content": chosen}],
                     "rejected": [{"role": "user", "content": prompt}, {"role": "assistant", "content": rejected}],
                     "messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": chosen}],
                     "score_chosen": 8.0, "score_rejected": 3.0})
    return rows


def two_filter_task(task_dir: Path, data: Path) -> None:
    """`twofilt`: a generate_until task with gsm8k's two filter pipelines (strict-match, flexible-extract)."""
    from selm_bench.evals.lm_eval_suite import write_task_yaml

    data.write_text("".join(json.dumps({"q": f"Add {i} and {i + 1}.", "a": str(2 * i + 1)}) + "\n" for i in range(LM_DOCS)))
    write_task_yaml(task_dir, {
        "task": "twofilt", "dataset_path": "json", "dataset_kwargs": {"data_files": {"test": str(data.resolve())}},
        "test_split": "test", "output_type": "generate_until", "doc_to_text": "{{q}}", "doc_to_target": "{{a}}",
        "generation_kwargs": {"until": ["\n"], "do_sample": False, "max_gen_toks": 6},
        "metric_list": [{"metric": "exact_match", "aggregation": "mean", "higher_is_better": True}],
        "filter_list": [{"name": "strict-match", "filter": [{"function": "take_first"}]},
                        {"name": "flexible-extract", "filter": [{"function": "regex", "regex_pattern": r"(\d+)"},
                                                                {"function": "take_first"}]}],
        "metadata": {"version": 1.0}})


@pytest.fixture(scope="module")
def recipe_inputs(tmp_path_factory):
    """What the recipes need besides their model: the tiny PairRM, the judges' data mirror (MT-Bench's
    fixture files, an AlpacaEval reference tagged GOOD/BAD), the local lm-eval task, a loopback judge."""
    pytest.importorskip("sentencepiece", reason="the tiny PairRM's tokenizer is trained with sentencepiece")
    base = tmp_path_factory.mktemp("recipe-inputs")
    mirror = write_alpaca_reference(write_mt_bench_fixture(base / "mirror"), ALPACA_N)
    two_filter_task(base / "tasks", base / "twofilt.jsonl")
    judge = FlakyOpenAI(faults=False)
    yield {"pairrm": build_tiny_pairrm(base / "pairrm"), "mirror": mirror, "tasks": base / "tasks", "judge": judge}
    judge.server.shutdown()
    judge.server.server_close()


def run_recipe(config: str, model: Path, inputs: dict, out: Path, rows: int, chunks: list[int]) -> subprocess.CompletedProcess:
    prompts = out.parent / "ultrafeedback.jsonl"
    prompts.write_text("".join(json.dumps(r) + "\n" for r in ultrafeedback_rows(rows)))
    sizes = {"batch_size": 4, "gradient_accumulation_steps": 1, "max_length": 64, "max_prompt_length": 32}
    sets = [f"model.pretrained={model}", f"data.prompts={prompts}", f"data.expected_rows={rows}",
            f"online.ranker=pairrm:{inputs['pairrm']}",
            "online.iterations=2", f"online.chunks={chunks}", "online.max_new_tokens=12", "online.backend=hf",
            *[f"{section}.{k}={v}" for section in ("dpo", "online") for k, v in sizes.items()],
            "launch.launcher=inprocess", "launch.num_processes=1", "precision=fp32", "gradient_checkpointing=false",
            "device=cpu", "vllm.data_parallel_size=1",
            "suites=[mt-bench, alpaca-eval, 'lm-eval:twofilt']", "eval.backend=hf", "eval.batch_size=8",
            f"eval.judge_base_url={inputs['judge'].url}", f"eval.data_dir={inputs['mirror']}",
            f"suite_options.mt-bench.question_limit={MT_N}", "suite_options.mt-bench.max_new_tokens=8",
            f"suite_options.alpaca-eval.limit={ALPACA_N}", "suite_options.alpaca-eval.max_new_tokens=8",
            f"lm-eval.include_path={inputs['tasks'].resolve()}", "lm-eval.batch_size=4"]
    if "zephyr" in config:
        sets = [s for s in sets if not s.startswith("dpo.")] + [f"dpo.{k}={v}" for k, v in sizes.items()]
    import yaml

    lr = yaml.safe_load((ROOT / config).read_text())["online"]["learning_rate"]
    sets.append(f"online.learning_rate={lr[:2]}")  # the recipe's schedule, first two iterations
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OPENAI_API_KEY": "sk-test-RECIPE", "NO_PROXY": "127.0.0.1,localhost"}
    cmd = [sys.executable, "-m", "selm_bench.harness.cli", "train-and-eval", "--config", str(ROOT / config),
           "--out", str(out)] + [a for s in sets for a in ("--set", s)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=out.parent)


def check_run(out: Path, checkpoints: list[str], chunks: dict[str, str], start: str) -> None:
    """What every recipe run must show: the authors' data flow (iteration 1's data shared by selm and
    iterative-dpo, each iteration on its chunk, policy = reference = the previous checkpoint), records
    that count every row, and each checkpoint evaluated on the three suites with hand-known scores and
    honest labels."""
    manifest = json.loads((out / "manifest.json").read_text())
    stages = manifest["stages"]  # folder -> record
    assert [f for f, s in stages.items() if s["status"] != "done"] == []
    generated = sorted(f.split("/")[2] + "/" + f.split("/")[1] for f in stages if f.endswith("/generate"))
    assert len(generated) == 3 and generated[1:] == ["iter-2/iterative-dpo", "iter-2/selm"], generated

    def spec(ckpt: str) -> dict:
        return json.loads((out / "checkpoints" / ckpt / "model" / "spec.json").read_text())

    # Iteration 1 trains both methods on the same ranked pairs, from the same start, with their own alpha.
    assert spec("selm/iter-1")["pairs"] == spec("iterative-dpo/iter-1")["pairs"]
    assert [(spec(f"{m}/iter-{t}")["loss"], spec(f"{m}/iter-{t}")["alpha"]) for m in ("selm", "iterative-dpo")
            for t in (1, 2)] == [("selm", yaml_config(out)["online"]["alpha"])] * 2 + [("dpo", None)] * 2
    for method in ("selm", "iterative-dpo"):
        s1, s2 = spec(f"{method}/iter-1"), spec(f"{method}/iter-2")
        assert s1["policy"]["path"] == s1["reference"]["path"] == start
        assert s2["policy"]["path"] == s2["reference"]["path"] == f"checkpoints/{method}/iter-1/model"
        assert s2["pairs"]["path"] == f"checkpoints/{method}/iter-2/rank/generations.jsonl"

    # Each training stage trained its chunk's rows and accounts for every one (trained + dropped = rows);
    # the long prompts were cut by the authors' rule, none dropped.
    counts = json.loads((out / "data" / "counts.json").read_text())["chunks"]
    for ckpt, chunk in chunks.items():
        rows = json.loads((out / "checkpoints" / ckpt / "model" / "train_info.json").read_text())["rows"]
        assert rows["rows"] == counts[chunk] and rows["trained"] == rows["rows"] and rows["dropped"] == 0, (ckpt, rows)
        assert rows["prompt-cut"] > 0, (ckpt, rows)
        assert stages[f"checkpoints/{ckpt}/model"]["rows"] == rows  # the manifest's record says the same
    for folder, rec in stages.items():
        if folder.endswith("/rank"):
            assert rec["prompts"] == 8 and rec["ranker_failures"] == 0 and 0 <= rec["tie_pairs"] <= rec["pairs"] <= 8

    board = {r["checkpoint"]: r for r in json.loads((out / "leaderboard.json").read_text())}
    assert sorted(board) == sorted(checkpoints)
    # AlpacaEval: references 0 and 2 are tagged GOOD (the model loses with 1 - p), 1 BAD (it wins with p).
    alpaca = 100 * (2 * (1 - P_PREFERRED) + P_PREFERRED) / ALPACA_N
    for ckpt, row in board.items():
        assert row["mt-bench/score"] == 5.0 and row["mt-bench/errors"] == 0, ckpt  # the loopback judge rates 5
        assert row["alpaca-eval/win_rate"] == pytest.approx(alpaca) and row["alpaca-eval/n_total"] == ALPACA_N, ckpt
        for f in ("strict-match", "flexible-extract"):
            assert 0 <= row[f"lm-eval/twofilt/exact_match/{f}"] <= 1, (ckpt, f)
        label = row["label"]  # what is not canonical: subsets, the judge's endpoint, no LC, a local task
        for part in (f"{MT_N}/80", f"{ALPACA_N}/805", "127.0.0.1", "lm-eval"):
            assert part in label, (part, label)
    key = "sk-test-RECIPE"
    assert not [p for p in out.rglob("*") if p.is_file() and key.encode() in p.read_bytes()]


def yaml_config(out: Path) -> dict:
    import yaml

    return yaml.safe_load((out / "config.yaml").read_text())


def test_zephyr_recipe_at_micro_scale(micro_mistral, recipe_inputs, tmp_path):  # noqa: F811
    """configs/zephyr-7b.yaml: offline DPO on chunk 1 with the dataset's pairs, then two online
    iterations (chunks 2 and 3) of selm and iterative-dpo from the DPO checkpoint."""
    res = run_recipe("configs/zephyr-7b.yaml", micro_mistral, recipe_inputs, tmp_path / "run", rows=32, chunks=[2, 3])
    assert res.returncode == 0, res.stderr[-3000:]
    check_run(tmp_path / "run", ["dpo", "selm/iter-1", "selm/iter-2", "iterative-dpo/iter-1", "iterative-dpo/iter-2"],
              {"dpo": "chunk-1", "selm/iter-1": "chunk-2", "iterative-dpo/iter-1": "chunk-2", "selm/iter-2": "chunk-3",
               "iterative-dpo/iter-2": "chunk-3"}, start="checkpoints/dpo/model")


def test_llama3_recipe_at_micro_scale(micro_llama3, recipe_inputs, tmp_path):  # noqa: F811
    """configs/llama-3-8b-instruct.yaml: no SFT or DPO; two online iterations (chunks 1 and 2) of selm
    and iterative-dpo from the instruct model itself, which stops on <|eot_id|> (128009)."""
    res = run_recipe("configs/llama-3-8b-instruct.yaml", micro_llama3, recipe_inputs, tmp_path / "run", rows=24,
                     chunks=[1, 2])
    assert res.returncode == 0, res.stderr[-3000:]
    check_run(tmp_path / "run", ["selm/iter-1", "selm/iter-2", "iterative-dpo/iter-1", "iterative-dpo/iter-2"],
              {"selm/iter-1": "chunk-1", "iterative-dpo/iter-1": "chunk-1", "selm/iter-2": "chunk-2",
               "iterative-dpo/iter-2": "chunk-2"}, start=str(micro_llama3))
