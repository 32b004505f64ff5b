import os
from pathlib import Path
from types import SimpleNamespace

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("SELM_BENCH_QUIET", "1")

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"


def shared_data(*parts: str) -> Path:
    """A file under ../shared/data, or skip the test with the reason."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared data not available: {path} (see docs/suites.md)")
    return path


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory) -> Path:
    """A small tiny-world data folder (eval, dev, two_turn, mc, sft, pref, prompts .jsonl)."""
    from selm_bench.harness.core.config import WorldConfig
    from selm_bench.harness.world import build_world

    out = tmp_path_factory.mktemp("world")
    cfg = WorldConfig(n_sft=64, n_pref=32, n_prompts=32, n_dev=16, n_eval=24, n_two_turn=8, n_mc=12)
    build_world(cfg, seed=1, out=out)
    return out


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """An untrained tiny Llama with the tiny world's tokenizer, saved with save_pretrained."""
    from selm_bench.harness.core.config import ModelConfig
    from selm_bench.harness.world import build_base_model, build_tokenizer

    out = tmp_path_factory.mktemp("tiny-model")
    tok = build_tokenizer(out)
    build_base_model(ModelConfig(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64), tok, 0, out)
    return out


def send_json(handler, status: int, obj: dict) -> None:
    """Reply from a fake HTTP server (BaseHTTPRequestHandler) with a JSON body."""
    import json

    data = json.dumps(obj).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


def mt_bench_mirror(tmp_path: Path) -> Path:
    """The real MT-Bench files from ../shared/data when present, else the fixture mirror (same
    formats, question ids 81 writing, 111 math, 121 reasoning): real-mode tests never skip."""
    if (SHARED_DATA / "mt_bench" / "question.jsonl").is_file():
        return SHARED_DATA
    return write_mt_bench_fixture(tmp_path / "mt-bench-fixture")


def write_mt_bench_fixture(data_dir: Path) -> Path:
    """A small MT-Bench-layout mirror written here (our own text, FastChat's file formats and
    judge-prompt names and placeholders), so real-mode tests run without ../shared."""
    import json

    mt = data_dir / "mt_bench"
    (mt / "reference_answer").mkdir(parents=True, exist_ok=True)
    questions = [
        {"question_id": 81, "category": "writing", "turns": ["Write a two-line poem about rain.", "Now make it rhyme."]},
        {"question_id": 111, "category": "math", "turns": ["What is 12 + 30?", "And doubled?"]},
        {"question_id": 121, "category": "reasoning", "turns": ["Is every square a rectangle?", "Is every rectangle a square?"]},
    ]
    refs = [{"question_id": 111, "answer_id": "r111", "model_id": "gpt-4", "tstamp": 0,
             "choices": [{"index": 0, "turns": ["42", "84"]}]},
            {"question_id": 121, "answer_id": "r121", "model_id": "gpt-4", "tstamp": 0,
             "choices": [{"index": 0, "turns": ["Yes.", "No."]}]}]
    rate = "Rate the reply from 1 to 10 and end with the rating in double brackets, e.g. [[6]]."
    prompts = [
        {"name": "single-v1", "type": "single", "category": "general", "output_format": "[[rating]]",
         "description": "fixture", "system_prompt": "You grade one assistant reply. " + rate,
         "prompt_template": "Question:\n{question}\n\nReply:\n{answer}"},
        {"name": "single-v1-multi-turn", "type": "single", "category": "general", "output_format": "[[rating]]",
         "description": "fixture", "system_prompt": "You grade the assistant's second reply. " + rate,
         "prompt_template": "Q1: {question_1}\nA1: {answer_1}\nQ2: {question_2}\nA2: {answer_2}"},
        {"name": "single-math-v1", "type": "single", "category": "math", "output_format": "[[rating]]",
         "description": "fixture", "system_prompt": "You grade one reply against a reference. " + rate,
         "prompt_template": "Question:\n{question}\n\nReference:\n{ref_answer_1}\n\nReply:\n{answer}"},
        {"name": "single-math-v1-multi-turn", "type": "single", "category": "math", "output_format": "[[rating]]",
         "description": "fixture", "system_prompt": "You grade the second reply against references. " + rate,
         "prompt_template": "Q1: {question_1}\nRef1: {ref_answer_1}\nA1: {answer_1}\n"
                            "Q2: {question_2}\nRef2: {ref_answer_2}\nA2: {answer_2}"},
    ]
    for path, rows in ((mt / "question.jsonl", questions), (mt / "reference_answer" / "gpt-4.jsonl", refs),
                       (mt / "judge_prompts.jsonl", prompts)):
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return data_dir


def brainteaser_mirror(tmp_path: Path) -> Path:
    """The real BrainTeaser files from ../shared/data when present, else a fixture in the same
    schema (our own puzzles): 2 groups of 3 (original, _SR, _CR) per puzzle type, 6 test rows
    without ids or labels, 8 demonstrations."""
    if all((SHARED_DATA / "brainteaser" / f).is_file() for f in
           ("SP_train.jsonl", "WP_train.jsonl", "SP_test.jsonl", "demonstration.jsonl")):
        return SHARED_DATA
    import json

    bt = tmp_path / "brainteaser-fixture" / "brainteaser"
    bt.mkdir(parents=True, exist_ok=True)

    def row(pid: str, q: str, answer: str, wrong: list[str], label: int) -> dict:
        choices = list(wrong)
        choices.insert(label, answer)
        return {"id": pid, "question": q, "answer": answer, "distractor1": wrong[0], "distractor2": wrong[1],
                "distractor(unsure)": wrong[2], "label": label, "choice_list": choices,
                "choice_order": list(range(4))}

    for puzzle in ("SP", "WP"):
        rows = []
        for g in range(2):
            q = f"{puzzle} riddle {g}: what has keys but opens no locks?"
            wrong = ["A door.", "A bird.", "None of above."]
            rows += [row(f"{puzzle}-{g}", q, "A piano.", wrong, 1),
                     row(f"{puzzle}-{g}_SR", q.replace("what has", "which thing has"), "A piano.", wrong, 2),
                     row(f"{puzzle}-{g}_CR", f"{puzzle} riddle {g}: what has a spine but no bones?", "A book.", wrong, 0)]
        (bt / f"{puzzle}_train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        test = [{"question": f"{puzzle} test {i}: what gets wetter as it dries?",
                 "choice_list": ["A towel.", "A fish.", "A stone.", "None of above."]} for i in range(6)]
        (bt / f"{puzzle}_test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in test))
    demos = [{"Question": f"Demo {i}: what can you catch but not throw?", "Answer": "A cold.", "Choice1": "A ball.",
              "Choice2": "A fish.", "Choice3": "None of above.", "label": 0,
              "choice_list": ["A cold.", "A ball.", "A fish.", "None of above."]} for i in range(8)]
    (bt / "demonstration.jsonl").write_text("".join(json.dumps(d) + "\n" for d in demos))
    return bt.parent
