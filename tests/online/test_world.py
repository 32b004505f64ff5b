import json
import random

import pytest

from selm_bench.harness.core.config import WorldConfig
from selm_bench.harness.world import CATEGORIES, GENERATORS, build_world, read_jsonl, verify


def test_verifier_exact_partial_and_empty():
    assert verify("add", "42", "42") == 1.0
    assert verify("add", "42", " 42. ") == 1.0
    assert verify("add", "42", "") == 0.0
    partial = verify("add", "42", "43")
    assert 0 < partial < 1 and partial == pytest.approx(0.25)  # one of two digits matches -> 0.5 * 0.5
    assert verify("sort", "3 7 19", "3 19 7") == pytest.approx(0.5 * 2 / 3)
    assert verify("reverse", "a b c", "x y z") == 0.0
    assert verify("extract", "fox", "FOX") == 1.0


def test_a_spaced_out_single_token_answer_is_scored_on_its_characters():
    """A one-token gold answer is compared character by character with the response's spaces dropped:
    a spelled-out right answer is not exact but has every character right (0.5 x 1), one wrong letter
    of three costs a third of that (0.5 x 2/3)."""
    assert verify("add", "42", "4 2") == pytest.approx(0.5)
    assert verify("extract", "fox", "f o x") == pytest.approx(0.5)
    assert verify("extract", "fox", "f o g") == pytest.approx(0.5 * 2 / 3)


@pytest.mark.parametrize("category", CATEGORIES)
def test_every_generator_is_verifiable(category):
    rng = random.Random(3)
    for _ in range(50):
        task = GENERATORS[category](rng)
        assert verify(category, task.answer, task.answer) == 1.0
        assert verify(category, task.answer, task.mistake) < 1.0
        assert verify(category, task.answer, task.wrong(rng)) < 1.0


def test_world_is_deterministic_and_splits_are_disjoint(tmp_path):
    cfg = WorldConfig(n_sft=300, n_pref=60, n_prompts=60, n_dev=40, n_eval=80, n_two_turn=20, n_mc=30)
    counts = build_world(cfg, seed=7, out=tmp_path / "a")
    build_world(cfg, seed=7, out=tmp_path / "b")
    for name in counts:
        assert (tmp_path / "a" / f"{name}.jsonl").read_text() == (tmp_path / "b" / f"{name}.jsonl").read_text()
    rows = {n: read_jsonl(tmp_path / "a" / f"{n}.jsonl") for n in counts}
    held_out = {r["prompt"] for n in ("eval", "dev", "mc") for r in rows[n]} | {r["turns"][0] for r in rows["two_turn"]}
    train = {r["prompt"] for n in ("pref", "prompts") for r in rows[n]} | {r["prompt"][0]["content"] for r in rows["sft"]}
    assert not held_out & train
    assert {r["category"] for r in rows["eval"]} == set(CATEGORIES)
    for r in rows["mc"]:
        assert len(r["choices"]) == 4 and len(set(r["choices"])) == 4
        assert verify(r["category"], r["choices"][r["label"]], r["choices"][r["label"]]) == 1.0
    for r in rows["pref"]:
        assert verify(r["category"], r["answer"], r["chosen"]) == 1.0 > verify(r["category"], r["answer"], r["rejected"])


def test_sft_noise_uses_the_systematic_mistake(tmp_path):
    cfg = WorldConfig(n_sft=600, n_pref=8, n_prompts=8, n_dev=8, n_eval=8, n_two_turn=4, n_mc=4, sft_noise=0.4,
                      two_turn_fraction=0.0)
    build_world(cfg, seed=1, out=tmp_path)
    rows = read_jsonl(tmp_path / "sft.jsonl")
    noisy = [r for r in rows if r["completion"][0]["content"] != r["answer"]]
    assert 0.3 < len(noisy) / len(rows) < 0.5
    assert all(verify(r["category"], r["answer"], r["completion"][0]["content"]) < 1 for r in noisy)


def test_two_turn_sft_rows_record_the_follow_ups_gold_answer(tmp_path):
    """A two-turn SFT row keeps, like a single-turn one, the gold answer of its last user turn (the one the
    verifier scores the completion against): the first answer plus n for "Add n to that .", its letters
    spaced for "Spell that .", its items in reverse order for "Reverse that ." (docs/configuration.md)."""
    cfg = WorldConfig(n_sft=60, n_pref=2, n_prompts=2, n_dev=2, n_eval=2, n_two_turn=2, n_mc=2, sft_noise=0.0,
                      two_turn_fraction=1.0)
    build_world(cfg, seed=3, out=tmp_path)
    rows = read_jsonl(tmp_path / "sft.jsonl")
    follow_ups = set()
    for r in rows:
        assert [m["role"] for m in r["prompt"]] == ["user", "assistant", "user"]
        _, first, q2 = (m["content"] for m in r["prompt"])
        verb = q2.split()[0]
        follow_ups.add(verb)
        if verb == "Add":
            gold = str(int(first) + int(q2.split()[1]))
        elif verb == "Spell":
            gold = " ".join(first)
        else:
            gold = " ".join(first.split()[::-1])
        assert r["answer"] == gold == r["completion"][0]["content"]
        assert verify(r["category"], r["answer"], r["completion"][0]["content"]) == 1.0
    assert follow_ups == {"Add", "Spell", "Reverse"}


def test_tokenizer_and_model_load_with_auto_classes(tiny_model):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    q = "ann has 7 pens and gets 15 more . How many pens ?"
    text = tok.apply_chat_template([{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True)
    assert text == f"<|user|>{q}<|end|><|assistant|>"
    ids = tok(q, add_special_tokens=False)["input_ids"]
    assert tok.unk_token_id not in ids
    assert tok.decode(ids).strip() == q
    assert len(tok("15", add_special_tokens=False)["input_ids"]) == 3  # "▁", "1", "5": digits stay separate
    assert model.config.vocab_size == len(tok)


def test_every_split_tokenizes_without_unknowns(tiny_world, tiny_model):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    texts = []
    for split in ("eval", "dev", "mc", "two_turn", "sft", "pref", "prompts"):
        for r in read_jsonl(tiny_world / f"{split}.jsonl"):
            for key in ("prompt", "answer", "chosen", "rejected"):
                if isinstance(r.get(key), str):
                    texts.append(r[key])
            for t in r.get("turns", []) + r.get("answers", []) + r.get("choices", []):
                texts.append(t)
            for m in (r["prompt"] + r["completion"]) if split == "sft" else []:
                texts.append(m["content"])
    for t in texts:
        ids = tok(t, add_special_tokens=False)["input_ids"]
        assert tok.unk_token_id not in ids, t
        assert tok.decode(ids).strip() == t.strip()


def test_generators_against_an_independent_reading_of_their_prompts():
    """2,000 draws per category: the gold answer recomputed from the prompt text alone, the
    systematic mistake as documented, every value range exactly as documented (its edges seen),
    and wrong answers that are never the gold one."""
    import random
    import re

    from selm_bench.harness.world import GENERATORS, LETTERS, NAMES, THINGS, WORDS

    rng = random.Random(1234)
    seen: dict[str, set] = {}
    for category, gen in GENERATORS.items():
        for _ in range(2000):
            t = gen(rng)
            assert t.category == category
            for _ in range(3):
                assert t.wrong(rng) != t.answer
            if category in ("add", "sub"):
                m = re.fullmatch(r"(\w+) has (\d+) (\w+) and (gets|loses) (\d+)( more)? \. How many (\w+) \?", t.prompt)
                name, a, thing, verb, b, _, thing2 = m.groups()
                a, b = int(a), int(b)
                assert name in NAMES and thing == thing2 and thing in THINGS
                if category == "add":
                    assert verb == "gets" and t.answer == str(a + b)
                    assert t.mistake == str(abs(a - b) if a != b else a + b + 1)
                    seen.setdefault("add a", set()).add(a)
                    seen.setdefault("add b", set()).add(b)
                else:
                    assert verb == "loses" and t.answer == str(a - b) and t.mistake == str(a + b)
                    seen.setdefault("sub b", set()).add(b)
                    seen.setdefault("sub a-b", set()).add(a - b)
            elif category == "reverse":
                s = t.prompt.removeprefix("Reverse : ").split()
                assert t.answer == " ".join(s[::-1]) and t.mistake == " ".join(s) and s != s[::-1]
                assert set(s) <= set(LETTERS)
                seen.setdefault("reverse len", set()).add(len(s))
                seen.setdefault("reverse letters", set()).update(s)
            elif category == "count":
                m = re.fullmatch(r"How many (\w) in : ([a-z ]+) \?", t.prompt)
                target, s = m.group(1), m.group(2).split()
                assert target in s and t.answer == str(s.count(target)) and t.mistake == str(s.count(target) + 1)
                seen.setdefault("count len", set()).add(len(s))
                seen.setdefault("count letters", set()).update(s)
            elif category == "sort":
                nums = [int(x) for x in t.prompt.removeprefix("Sort : ").split()]
                assert len(nums) == 3 == len(set(nums))
                assert t.answer == " ".join(map(str, sorted(nums))) and t.mistake == " ".join(map(str, sorted(nums)[::-1]))
                seen.setdefault("sort nums", set()).update(nums)
            else:
                m = re.fullmatch(r"Word (\d) of : ([a-z ]+)", t.prompt)
                k, words = int(m.group(1)), m.group(2).split()
                assert len(set(words)) == len(words) and set(words) <= set(WORDS)
                assert t.answer == words[k - 1] and t.mistake == words[k]
                seen.setdefault("extract len", set()).add(len(words))
                seen.setdefault("extract k", set()).add(k)
    assert seen == {"add a": set(range(1, 10)), "add b": set(range(1, 10)), "sub b": set(range(1, 10)),
                    "sub a-b": set(range(1, 10)), "reverse len": {3, 4}, "reverse letters": set("abcdefgh"),
                    "count len": {4, 5, 6}, "count letters": set("abcd"), "sort nums": set(range(1, 20)),
                    "extract len": {3, 4}, "extract k": {1, 2, 3}}


def test_follow_ups_and_normalize():
    import random

    from selm_bench.harness.world import Task, _follow_up, normalize

    task = lambda c, a: Task(c, "p", a, "m", lambda r: "w")
    rng = random.Random(0)
    for c in ("add", "sub", "count"):
        q, a = _follow_up(rng, task(c, "7"))
        n = int(q.removeprefix("Add ").removesuffix(" to that ."))
        assert 1 <= n <= 9 and a == str(7 + n)
    assert _follow_up(rng, task("extract", "fox")) == ("Spell that .", "f o x")
    assert _follow_up(rng, task("sort", "1 5 9")) == ("Reverse that .", "9 5 1")
    assert _follow_up(rng, task("reverse", "c b a")) == ("Reverse that .", "a b c")
    assert normalize("  The  Fox.!  ") == "the fox" and normalize("a . b") == "a . b"


def test_shuffled_other_falls_back_to_a_rotation():
    """When 20 shuffles all give the gold order (a shuffle that does nothing, here), the wrong
    answer is the gold list rotated by one."""
    import random

    from selm_bench.harness.world import _shuffled_other

    class Stuck(random.Random):
        def shuffle(self, x):
            pass

    assert _shuffled_other(Stuck(0), ["a", "b", "c"], ["a", "b", "c"]) == "b c a"
    assert _shuffled_other(Stuck(0), ["a", "b", "c"], ["c", "b", "a"]) == "a b c"  # the first shuffle already differs


def test_every_split_names_its_rows(tmp_path):
    from selm_bench.harness.core.config import WorldConfig
    from selm_bench.harness.world import build_world, read_jsonl

    cfg = WorldConfig(n_sft=3, n_pref=2, n_prompts=2, n_dev=2, n_eval=2, n_two_turn=2, n_mc=2)
    counts = build_world(cfg, 0, tmp_path)
    assert counts == {"eval": 2, "dev": 2, "two_turn": 2, "mc": 2, "sft": 3, "pref": 2, "prompts": 2}
    prefix = {"eval": "eval", "dev": "dev", "two_turn": "mt", "mc": "mc", "sft": "sft", "pref": "pref", "prompts": "prompt"}
    for split, p in prefix.items():
        assert [r["id"] for r in read_jsonl(tmp_path / f"{split}.jsonl")] == [f"{p}-{i}" for i in range(counts[split])]


def test_wrong_numbers_are_near_misses_or_random():
    """A wrong number is gold -10, -2, -1, +1, +2, +10 or a random one in the category's range
    (never negative, never the gold one)."""
    import random

    from selm_bench.harness.world import _other_number

    rng = random.Random(5)
    deltas = {_other_number(rng, 50, 0, 3) - 50 for _ in range(3000)}
    assert {-10, -2, -1, 1, 2, 10} <= deltas and deltas <= {-10, -2, -1, 1, 2, 10, -50, -49, -48, -47}
    assert {_other_number(rng, 0, 0, 0) for _ in range(500)} == {1, 2, 10}  # -1, -2, -10 and the random 0 are refused
