"""The embedded tiny world: seeded synthetic tasks with verifiable answers, its tokenizer
and its tiny Llama base model, so the whole pipeline runs offline on a laptop CPU.

Each category has a generator (prompt, gold answer), a *systematic mistake* (the error a
half-trained policy plausibly makes, used as SFT label noise) and random plausible wrong
answers (used as the offline DPO set's rejected responses and as MC distractors).
"""

from __future__ import annotations

import difflib
import json
import random
import re
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

LETTERS = list("abcdefgh")
WORDS = (
    "the red fox cat dog sun moon tree bird fish blue green old new big small runs sits eats "
    "sees map key cup box hat pen car bus ship star rain snow wind king frog bee owl"
).split()


@dataclass
class Task:
    category: str
    prompt: str
    answer: str
    mistake: str  # the category's systematic wrong answer (may equal a random wrong one)
    wrong: Callable[[random.Random], str]  # draws a plausible wrong answer


def _other_number(rng: random.Random, gold: int, lo: int, hi: int) -> int:
    while True:
        x = rng.choice([gold + d for d in (-10, -2, -1, 1, 2, 10)] + [rng.randint(lo, hi)])
        if x != gold and x >= 0:
            return x


NAMES = "ann bob cat dan eve fay gus hal ivy jon".split()
THINGS = "apples pens cups hats keys maps books coins shells stones".split()


def _add(rng: random.Random) -> Task:
    a, b = rng.randint(1, 9), rng.randint(1, 9)
    name, thing = rng.choice(NAMES), rng.choice(THINGS)
    gold = a + b
    mistake = abs(a - b) if a != b else gold + 1  # the wrong operation
    return Task("add", f"{name} has {a} {thing} and gets {b} more . How many {thing} ?", str(gold), str(mistake),
                lambda r: str(_other_number(r, gold, 2, 18)))


def _sub(rng: random.Random) -> Task:
    b = rng.randint(1, 9)
    a = b + rng.randint(1, 9)
    name, thing = rng.choice(NAMES), rng.choice(THINGS)
    gold = a - b
    return Task("sub", f"{name} has {a} {thing} and loses {b} . How many {thing} ?", str(gold), str(a + b),
                lambda r: str(_other_number(r, gold, 0, 17)))


def _shuffled_other(rng: random.Random, items: list[str], gold: list[str]) -> str:
    for _ in range(20):
        perm = items[:]
        rng.shuffle(perm)
        if perm != gold:
            return " ".join(perm)
    return " ".join(gold[1:] + gold[:1])


def _reverse(rng: random.Random) -> Task:
    s = [rng.choice(LETTERS) for _ in range(rng.randint(3, 4))]
    while s == s[::-1]:
        s = [rng.choice(LETTERS) for _ in range(len(s))]
    gold = s[::-1]
    return Task("reverse", f"Reverse : {' '.join(s)}", " ".join(gold), " ".join(s), lambda r: _shuffled_other(r, s, gold))


def _count(rng: random.Random) -> Task:
    s = [rng.choice(LETTERS[:4]) for _ in range(rng.randint(4, 6))]
    target = rng.choice(s)
    gold = s.count(target)
    return Task(
        "count", f"How many {target} in : {' '.join(s)} ?", str(gold), str(gold + 1),
        lambda r: str(_other_number(r, gold, 0, 8)),
    )


def _sort(rng: random.Random) -> Task:
    nums = rng.sample(range(1, 20), 3)
    gold = [str(x) for x in sorted(nums)]
    return Task(
        "sort", f"Sort : {' '.join(map(str, nums))}", " ".join(gold), " ".join(reversed(gold)),
        lambda r: _shuffled_other(r, gold, gold),
    )


def _extract(rng: random.Random) -> Task:
    words = rng.sample(WORDS, rng.randint(3, 4))
    k = rng.randint(1, len(words) - 1)
    gold = words[k - 1]
    return Task(
        "extract", f"Word {k} of : {' '.join(words)}", gold, words[k],
        lambda r: r.choice([w for w in words if w != gold]),
    )


GENERATORS: dict[str, Callable[[random.Random], Task]] = {
    "add": _add, "sub": _sub, "reverse": _reverse, "count": _count, "sort": _sort, "extract": _extract,
}
CATEGORIES = list(GENERATORS)


def normalize(text: str) -> str:
    text = text.strip().lower()
    text = re.sub(r"[.!]+$", "", text).strip()
    return re.sub(r"\s+", " ", text)


def verify(category: str, gold: str, response: str) -> float:
    """Graded verifier in [0, 1]: 1 for an exact answer, else half the sequence overlap.

    Overlap is over tokens for multi-token answers and characters for single tokens, so a
    sum with one wrong digit or a list with one misplaced item earns partial credit.
    """
    g, p = normalize(gold), normalize(response)
    if g == p:
        return 1.0
    if not p:
        return 0.0
    a, b = (g.split(), p.split()) if " " in g else (list(g), list(p.replace(" ", "")))
    return 0.5 * difflib.SequenceMatcher(None, a, b, autojunk=False).ratio()


# ---------------------------------------------------------------- two-turn follow-ups
def _follow_up(rng: random.Random, task: Task) -> tuple[str, str]:
    if task.category in ("add", "sub", "count"):
        n = rng.randint(1, 9)
        return f"Add {n} to that .", str(int(task.answer) + n)
    if task.category == "extract":
        return "Spell that .", " ".join(task.answer)
    return "Reverse that .", " ".join(task.answer.split()[::-1])


# ---------------------------------------------------------------- dataset building
def _conv(*turns: str) -> list[dict[str, str]]:
    roles = ["user", "assistant"]
    return [{"role": roles[i % 2], "content": t} for i, t in enumerate(turns)]


class _Uniq:
    """Draws tasks whose prompts were never drawn before (keeps every split disjoint)."""

    def __init__(self, rng: random.Random, categories: list[str]):
        self.rng, self.categories, self.seen = rng, categories, set()

    def __call__(self) -> Task:
        for _ in range(10_000):
            task = GENERATORS[self.rng.choice(self.categories)](self.rng)
            if task.prompt not in self.seen:
                self.seen.add(task.prompt)
                return task
        raise RuntimeError("the tiny world ran out of distinct prompts; lower the world.n_* sizes")


def build_world(cfg: Any, seed: int, out: Path) -> dict[str, int]:
    """Write every split of the world as JSONL under `out`; returns row counts."""
    rng = random.Random(seed)
    draw = _Uniq(rng, list(cfg.categories))
    splits: dict[str, list[dict[str, Any]]] = {}

    def item(task: Task, i: int, split: str) -> dict[str, Any]:
        return {"id": f"{split}-{i}", "category": task.category, "prompt": task.prompt, "answer": task.answer}

    # Held-out sets first, so training draws can never reuse their prompts.
    splits["eval"] = [item(draw(), i, "eval") for i in range(cfg.n_eval)]
    splits["dev"] = [item(draw(), i, "dev") for i in range(cfg.n_dev)]
    two = []
    for i in range(cfg.n_two_turn):
        t = draw()
        q2, a2 = _follow_up(rng, t)
        two.append({"id": f"mt-{i}", "category": t.category, "turns": [t.prompt, q2], "answers": [t.answer, a2]})
    splits["two_turn"] = two
    mc = []
    while len(mc) < cfg.n_mc:
        t = draw()
        wrong = {t.mistake} if t.mistake != t.answer else set()
        for _ in range(50):
            w = t.wrong(rng)
            if len(wrong) < 3 and normalize(w) != normalize(t.answer):
                wrong.add(w)
        if len(wrong) < 3:
            continue  # too few distinct distractors (e.g. "a b b" has two other orders)
        choices = sorted(wrong)
        label = rng.randint(0, 3)
        choices.insert(label, t.answer)
        mc.append({"id": f"mc-{len(mc)}", "category": t.category, "prompt": t.prompt, "choices": choices,
                   "label": label})
    splits["mc"] = mc

    sft = []
    for i in range(cfg.n_sft):
        t = draw()
        answer = t.mistake if rng.random() < cfg.sft_noise else t.answer
        if rng.random() < cfg.two_turn_fraction:
            q2, a2 = _follow_up(rng, t)
            sft.append({"id": f"sft-{i}", "category": t.category, "answer": a2,
                        "prompt": _conv(t.prompt, t.answer, q2), "completion": [{"role": "assistant", "content": a2}]})
        else:
            sft.append({"id": f"sft-{i}", "category": t.category, "answer": t.answer,
                        "prompt": _conv(t.prompt), "completion": [{"role": "assistant", "content": answer}]})
    splits["sft"] = sft

    def pair(t: Task, i: int, split: str) -> dict[str, Any]:
        rejected = t.wrong(rng)
        return {**item(t, i, split), "chosen": t.answer, "rejected": rejected}

    splits["pref"] = [pair(draw(), i, "pref") for i in range(cfg.n_pref)]
    splits["prompts"] = [pair(draw(), i, "prompt") for i in range(cfg.n_prompts)]

    out.mkdir(parents=True, exist_ok=True)
    for name, rows in splits.items():
        write_jsonl(out / f"{name}.jsonl", rows)
    return {k: len(v) for k, v in splits.items()}


# ---------------------------------------------------------------- tokenizer and model
SPECIAL = ["<unk>", "<pad>", "<|user|>", "<|assistant|>", "<|end|>"]
CHAT_TEMPLATE = (
    "{% for m in messages %}{{ '<|' + m['role'] + '|>' + m['content'] + '<|end|>' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}"
)


def world_texts() -> list[str]:
    """Every surface form the world can produce, so the vocabulary is closed."""
    texts = [" ".join(string.ascii_lowercase), " ".join(WORDS + NAMES + THINGS), " ".join(str(d) for d in range(10))]
    rng = random.Random(0)
    for cat in CATEGORIES:
        for _ in range(200):
            t = GENERATORS[cat](rng)
            texts += [t.prompt, t.answer, t.mistake, *_follow_up(rng, t)]
    return texts


def build_tokenizer(out: Path):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True),
         pre_tokenizers.Digits(individual_digits=True)]
    )
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    tok.train_from_iterator(world_texts(), trainers.WordLevelTrainer(special_tokens=SPECIAL))
    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>", eos_token="<|end|>", padding_side="left"
    )
    hf.chat_template = CHAT_TEMPLATE
    hf.save_pretrained(out)
    return hf


def build_base_model(model_cfg: Any, tokenizer: Any, seed: int, out: Path) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=model_cfg.hidden_size, num_hidden_layers=model_cfg.num_layers,
        num_attention_heads=model_cfg.num_heads, num_key_value_heads=model_cfg.num_heads,
        intermediate_size=model_cfg.intermediate_size, max_position_embeddings=model_cfg.max_position_embeddings,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, bos_token_id=None,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


# ---------------------------------------------------------------- io helpers
def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    from selm_bench.harness.core.store import atomic_write_text

    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


class DataFileError(ValueError):
    """A data file that is not what it should be: one line naming the file and the line."""


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    with open(path) as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise DataFileError(f"{path}: line {n} is not valid JSON ({e.msg})") from None
    return rows
