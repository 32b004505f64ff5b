"""mt-bench: FastChat's llm_judge MT-Bench, single-answer grading (GPT-4 as judge by default).

Real mode (no tiny world, or option `source: fastchat`): the 80 two-turn questions from
`<data_dir>/mt_bench/`, answers sampled with FastChat's per-category temperatures, each
turn graded 1-10 by an LLM judge with FastChat's `single-v1[-multi-turn]` prompts (the
`single-math-v1*` prompts plus GPT-4's reference answer for NEED_REF_CATS).
Tiny mode (the embedded default): the same protocol on the world's `two_turn.jsonl`, greedy,
each turn rated 1 + 9 * the oracle verifier's score.

Files follow FastChat's layout under the suite folder: `model_answer/<name>.jsonl` and
`model_judgment/<judge model>_single.jsonl`. Metrics follow `show_result.py --mode single`:
rows scored -1 (judge failed or gave no rating) are dropped and counted in `errors`; then
`turn-1`, `turn-2`, `score` (mean over all remaining (question, turn) rows) and one
`category/<name>` mean per question category.

Options (MtBenchOptions): source, question_limit / limit, max_new_tokens (1024 real, 24 tiny).

`selm-bench data pull` fetches FastChat's `fastchat/llm_judge/data/` files (questions, GPT-4
reference answers, judge prompts) at a pinned commit (DATA_SOURCES).
"""

from __future__ import annotations

import ast
import re
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from selm_bench.evals.base import (
    EvalContext, SuiteError, SuiteResult, fmt, judged_plan, mean, not_canonical, number, render,
)
from selm_bench.evals.judges import Judge, make_judge
from selm_bench.harness.core.registry import Artefact, InputError, register_suite
from selm_bench.harness.world import read_jsonl, write_jsonl
from selm_bench.trainers.generation import Sampling


def _fastchat():
    """FastChat's llm_judge helpers, imported on first use (importing fastchat costs seconds: torch)."""
    import fastchat.llm_judge.common as common

    return common

DEFAULT_TEMPERATURE = 0.7  # gen_model_answer.py's value for categories missing from fastchat's temperature_config
REFERENCE_MODEL = "gpt-4"  # reference_answer/gpt-4.jsonl
CANONICAL_JUDGE = "gpt-4"  # the published numbers' judge: another one is labelled on the leaderboard
SUITE = "mt-bench"
N_QUESTIONS = 80  # MT-Bench's questions: fewer is a subset, labelled on the leaderboard
MAX_NEW_TOKENS = {"real": 1024, "tiny": 24}  # max_new_tokens when the option is None, per mode
# Rough list-price cost of one GPT-4 grading (about 1k tokens in, 0.3k out), for `selm-bench plan`.
JUDGE_USD = 0.05
DATA_FILES = ("mt_bench/question.jsonl", f"mt_bench/reference_answer/{REFERENCE_MODEL}.jsonl",
              "mt_bench/judge_prompts.jsonl")  # what it reads under eval.data_dir
FASTCHAT_DATA = ("https://raw.githubusercontent.com/lm-sys/FastChat/0e6d3e4beaab66f4d3f93db72541a4abab8af28d"
                 "/fastchat/llm_judge/data")
DATA_SOURCES = (  # what `selm-bench data pull` fetches: (dest under the data folder, url, SHA-256, size)
    Artefact(SUITE, "mt_bench/question.jsonl", f"{FASTCHAT_DATA}/mt_bench/question.jsonl",
             "119565adbab82227089cefdb44c8d7e2cf04dc0a0ec233634c82e7d4e2a944f7", 48929),
    Artefact(SUITE, "mt_bench/reference_answer/gpt-4.jsonl", f"{FASTCHAT_DATA}/mt_bench/reference_answer/gpt-4.jsonl",
             "f957a5bc977badb66885ec970e6cd08527845780313f0995764260e5777b9b3f", 51109),
    Artefact(SUITE, "mt_bench/judge_prompts.jsonl", f"{FASTCHAT_DATA}/judge_prompts.jsonl",
             "fd283293406d024f44c174b094ef48031d0687a4682fd3a56b29b138f80281b6", 10449),
)


class MtBenchOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    source: Literal["fastchat", "tiny"] | None = Field(
        None, description="fastchat = FastChat's 80 questions and an LLM judge even inside the tiny world; "
                          "None/tiny = the tiny world's two-turn set when run inside it, else FastChat's")
    question_limit: int | None = Field(None, ge=1, description="first N questions (None = all; wins over limit)")
    limit: int | None = Field(None, ge=1, description="first N questions when question_limit is None (None = all)")
    max_new_tokens: int | None = Field(None, gt=0, description="tokens per turn; None = 1024 real / 24 tiny")


def paired(items: list[dict[str, Any]]) -> dict[str, float | None]:
    """Mean rating over judged turns, and per turn (FastChat's score, turn-1, turn-2)."""
    judged = [i for i in items if i.get("score") is not None]
    return {"score": mean([i["score"] for i in judged]),
            **{f"turn-{t}": mean([i["score"] for i in judged if i["turn"] == t]) for t in (1, 2)}}


def preflight(ctx: EvalContext) -> None:
    """What judging will need, checked before any answer is generated (and, in a run, before its first
    stage): FastChat's questions, judge prompts and, where a question needs them, reference answers
    (real mode), and a judge that can grade this mode (its key)."""
    if not _real_mode(ctx):  # the tiny world's questions are written by its own stage
        if not ctx.no_judge:
            _make_judge(ctx).check()
        return
    questions = load_mt_questions(ctx)
    if ctx.no_judge:
        return
    _data_file(ctx, "judge_prompts.jsonl")
    if any(q["category"] in _fastchat().NEED_REF_CATS for q in questions):
        _data_file(ctx, "reference_answer", f"{REFERENCE_MODEL}.jsonl")
    _make_judge(ctx).check()


def estimate(cfg: Any, spec: Any) -> dict[str, Any]:
    """`selm-bench plan`: two turns a question, each graded once (tiny world: by the oracle, free)."""
    return judged_plan(spec, tiny=(cfg.world.n_two_turn, 2), real=(N_QUESTIONS, 2), judge=spec.judge,
                       usd_per_call=JUDGE_USD)


# ---------------------------------------------------------------- the report's drill-down
def drilldown(items: list[dict[str, Any]], folder: Path, k: int = 2) -> str:
    """Mean rating per category and each category's `k` lowest-rated answers with the judgment;
    a rating of -1 (FastChat's failed judgment) or none is left out of the means."""
    qid = lambda i: i.get("question_id", i.get("id"))  # newer items: id "<question_id>/turn-<n>"
    turn1 = {qid(i): i.get("question") for i in items if i.get("turn") == 1}
    by_cat: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for it in items:
        by_cat[str(it.get("category", "?"))].append(it)
    summary, lowest = [], []
    for cat, its in sorted(by_cat.items()):
        rated = [i for i in its if number(i.get("score")) is not None and number(i.get("score")) >= 0]
        summary.append([cat, len(rated), fmt(mean([number(i["score"]) for i in rated])), len(its) - len(rated)])
        for i in sorted(rated, key=lambda i: number(i["score"]))[:k]:
            lowest.append({"category": cat, "question_id": qid(i), "turn": i.get("turn", ""),
                           "turn1": turn1.get(qid(i)) if i.get("turn", 1) != 1 else None, "question": i.get("question"),
                           "answer": i.get("answer"), "score": i.get("score"), "judgment": i.get("judgment")})
    return render("mt-bench.html", summary=summary, lowest=lowest, k=k)


def run(ctx: EvalContext) -> SuiteResult:
    ctx.for_suite(SUITE)
    preflight(ctx)  # a missing file, key or wrong judge fails now, not after generation
    questions = load_mt_questions(ctx)
    real = _real_mode(ctx)
    max_new = max_new_tokens(ctx)
    temps = [_fastchat().temperature_config.get(q["category"], DEFAULT_TEMPERATURE) if real else 0.0 for q in questions]
    turns = _generate(ctx, questions, temps, max_new)
    answers = [
        {"question_id": q["question_id"], "answer_id": __import__("shortuuid").random(), "model_id": ctx.name,
         "choices": [{"index": 0, "turns": t}], "tstamp": time.time()}
        for q, t in zip(questions, turns)
    ]
    write_jsonl(_answer_file(ctx), answers)
    if ctx.no_judge:
        items = [{"id": item_id(q["question_id"], i + 1), "question_id": q["question_id"], "turn": i + 1,
                  "category": q["category"], "question": q["turns"][i], "answer": a, "score": None}
                 for q, t in zip(questions, turns) for i, a in enumerate(t)]
        info = {"mode": "fastchat" if real else "tiny", "n_questions": len(questions),
                "answers": str(_answer_file(ctx).relative_to(ctx.out_dir)),
                "judging": "pending: answers saved; run `selm-bench judge` on this eval folder"}
        return SuiteResult(metrics={}, items=items, info=info)
    return judge_saved(ctx)


def item_id(question_id: Any, turn: int) -> str:
    """An MT-Bench item is one turn of one question: `<question_id>/turn-<n>`."""
    return f"{question_id}/turn-{turn}"


def judge_saved(ctx: EvalContext) -> SuiteResult:
    """Judge the answers saved in `ctx.out_dir/model_answer/<ctx.name>.jsonl`, write the
    judgment file and return the metrics; questions without a saved answer are skipped."""
    ctx.for_suite(SUITE)
    path = _answer_file(ctx)
    if not path.exists():
        raise SuiteError(f"mt-bench: no saved answers at {path}; run the suite (with --no-judge) first")
    saved = {a["question_id"]: a for a in read_jsonl(path)}
    questions = [q for q in load_mt_questions(ctx) if q["question_id"] in saved]
    if not questions:
        raise SuiteError(f"mt-bench: {path} answers none of the selected questions")
    judge = _make_judge(ctx)
    judge_model = getattr(judge, "model", judge.name)
    if _real_mode(ctx):
        rows = _judge_llm(ctx, judge, judge_model, questions, saved)
    else:
        rows = _judge_oracle(ctx, judge, judge_model, questions, saved)

    out = _judgment_file(ctx, judge_model)
    kept = [r for r in read_jsonl(out) if r["model"] != ctx.name] if out.exists() else []
    write_jsonl(out, kept + rows)

    by_id = {q["question_id"]: q for q in questions}
    metrics = metrics_from_judgments(rows, questions).get(ctx.name, {})
    items = [
        {"id": item_id(r["question_id"], r["turn"]), "question_id": r["question_id"], "turn": r["turn"],
         "category": by_id[r["question_id"]]["category"],
         "question": by_id[r["question_id"]]["turns"][r["turn"] - 1],
         "answer": saved[r["question_id"]]["choices"][0]["turns"][r["turn"] - 1],
         "score": None if r["score"] == -1 else r["score"], "judgment": r["judgment"]}  # -1: failed judgment
        for r in rows
    ]
    base_url = getattr(judge, "base_url", None)
    info = {
        "mode": "fastchat" if _real_mode(ctx) else "tiny", "n_questions": len(questions),
        "judge": {"spec": ctx.judge or judge.name, "model": judge_model, **({"base_url": base_url} if base_url else {}),
                  **judge.accounting()},
        "answers": str(path.relative_to(ctx.out_dir)), "judgments": str(out.relative_to(ctx.out_dir)),
    }
    if _real_mode(ctx):
        info["not_canonical"] = not_canonical(n=len(questions), of=N_QUESTIONS, what="questions",
                                              judge_base_url=base_url)
    if metrics.get("score") is None:
        info["reason"] = "every judgment failed or had no parseable rating (score -1)"
    return SuiteResult(metrics=metrics, items=items, info=info)


def parse_rating(judgment: str | None) -> float:
    """FastChat's `[[rating]]` parse: `[[x]]`, else `[x]`, else -1."""
    if judgment is None:
        return -1
    match = re.search(_fastchat().one_score_pattern, judgment) or re.search(_fastchat().one_score_pattern_backup, judgment)
    return ast.literal_eval(match.groups()[0]) if match else -1


def metrics_from_judgments(path_or_rows: Any, questions: Any = None) -> dict[str, dict[str, Any]]:
    """Per-model metrics from FastChat single-mode judgment rows (a .jsonl path or a list),
    computed as show_result.py does. Category metrics need each row's category: from the
    rows themselves or from `questions` (a question.jsonl path or a list of questions)."""
    import pandas as pd

    rows = read_jsonl(Path(path_or_rows)) if isinstance(path_or_rows, (str, Path)) else list(path_or_rows)
    if not rows:
        return {}
    df_all = pd.DataFrame(rows)
    if questions is not None:
        qs = _fastchat().load_questions(str(questions), None, None) if isinstance(questions, (str, Path)) else questions
        df_all["category"] = df_all["question_id"].map({q["question_id"]: q["category"] for q in qs})
    cols = ["model", "score", "turn"] + (["category"] if "category" in df_all else [])
    df_all = df_all[cols]
    errors = df_all[df_all["score"] == -1].groupby("model").size()
    df = df_all[df_all["score"] != -1]
    turn_means = df.groupby(["model", "turn"])["score"].mean()
    overall = df.groupby("model")["score"].mean()
    by_cat = df.groupby(["model", "category"])["score"].mean() if "category" in df else pd.Series(dtype=float)

    out: dict[str, dict[str, Any]] = {}
    for model in sorted(df_all["model"].unique()):
        m: dict[str, Any] = {"score": _num(overall.get(model))}
        for turn in (1, 2):
            m[f"turn-{turn}"] = _num(turn_means.get((model, turn)))
        for (mod, cat), v in by_cat.items():
            if mod == model:
                m[f"category/{cat}"] = float(v)
        m["errors"] = int(errors.get(model, 0))
        out[model] = m
    return out


def import_file(file: Path, model: str | None, data_dir: Path | None) -> dict[str, tuple[dict, dict]]:
    """`selm-bench import`: a FastChat judgment .jsonl -> {model: (metrics, info)}, every model in it or
    only `model`; the questions under `data_dir` give the per-category means."""
    questions = data_dir / "mt_bench" / "question.jsonl" if data_dir else None
    try:
        per_model = metrics_from_judgments(file, questions if questions and questions.is_file() else None)
    except (ValueError, KeyError, TypeError) as e:
        raise InputError(f"{file}: not a FastChat judgment .jsonl (rows with model, question_id, turn, "
                         f"score): {type(e).__name__}: {e}") from None
    if not per_model:
        raise InputError(f"{file}: no judgments in it")
    if model:
        if model not in per_model:
            raise InputError(f"--model {model}: not in {file} (has: {', '.join(sorted(per_model))})")
        per_model = {model: per_model[model]}
    return {m: (v, {}) for m, v in per_model.items()}


def load_mt_questions(ctx: EvalContext) -> list[dict[str, Any]]:
    """FastChat questions {question_id, category, turns}; tiny ones also carry gold `answers`."""
    ctx.for_suite(SUITE)
    limit = ctx.option("question_limit")
    limit = ctx.option("limit") if limit is None else limit
    if _real_mode(ctx):
        return _fastchat().load_questions(str(_data_file(ctx, "question.jsonl")), None, limit)
    rows = read_jsonl(ctx.world_dir / "two_turn.jsonl")[:limit]
    return [{"question_id": r["id"], "category": r["category"], "turns": r["turns"], "answers": r["answers"]} for r in rows]


# ---------------------------------------------------------------- internals
def max_new_tokens(ctx: EvalContext) -> int:
    """The option, else the mode's default (MAX_NEW_TOKENS): the one place that resolves it."""
    value = ctx.option("max_new_tokens")
    return MAX_NEW_TOKENS["real" if _real_mode(ctx) else "tiny"] if value is None else value


def _real_mode(ctx: EvalContext) -> bool:
    return ctx.world_dir is None or ctx.for_suite(SUITE).option("source") == "fastchat"


def _data_file(ctx: EvalContext, *parts: str) -> Path:
    if ctx.data_dir is None:
        raise SuiteError("mt-bench needs a data dir holding mt_bench/ (from FastChat's fastchat/llm_judge/data/)")
    path = Path(ctx.data_dir, "mt_bench", *parts)
    if not path.exists():
        raise SuiteError(f"mt-bench: missing {path} (it normally comes from FastChat's fastchat/llm_judge/data/; "
                         f"`selm-bench data pull` fetches it)")
    for f in ([path] if path.is_file() else sorted(path.glob("*.jsonl"))):
        read_jsonl(f)  # FastChat's loaders would fail on a broken line without naming the file
    return path


def _answer_file(ctx: EvalContext) -> Path:
    # FastChat names answer files by model id; "selm/iter-2" must stay one file, not a folder.
    return ctx.out_dir / "model_answer" / f"{ctx.name.replace('/', '-')}.jsonl"


def _judgment_file(ctx: EvalContext, judge_model: str) -> Path:
    return ctx.out_dir / "model_judgment" / f"{judge_model.replace('/', '_')}_single.jsonl"


def _num(v: Any) -> float | None:
    return None if v is None or v != v else float(v)  # NaN (pandas' missing mean) -> None


def _make_judge(ctx: EvalContext) -> Judge:
    if _real_mode(ctx):
        judge = ctx.make_judge()
        if type(judge).chat_many is Judge.chat_many:
            raise SuiteError(f"mt-bench on FastChat's questions needs an LLM judge such as openai:gpt-4, "
                             f"not {ctx.judge!r} (pass --judge openai:gpt-4 or --set eval.judge=openai:gpt-4)")
        return judge
    judge = ctx.make_judge() if ctx.judge else make_judge("oracle")
    if type(judge).score is Judge.score:
        raise SuiteError(f"mt-bench on the tiny world is graded by the oracle judge, not {ctx.judge!r}; "
                         "pass --judge oracle, or set source: fastchat for LLM judging")
    return judge


def _generate(ctx: EvalContext, questions: list[dict], temps: list[float], max_new: int) -> list[list[str]]:
    """All questions' turns; turn k's conversation holds the model's own earlier answers."""
    gen = ctx.generator()
    turns: list[list[str]] = [[] for _ in questions]
    for t in range(max(len(q["turns"]) for q in questions)):
        for temp in sorted(set(temps)):
            idx = [i for i, q in enumerate(questions) if temps[i] == temp and len(q["turns"]) > t]
            if not idx:
                continue
            convs = []
            for i in idx:
                conv = []
                for k in range(t):
                    conv += [{"role": "user", "content": questions[i]["turns"][k]},
                             {"role": "assistant", "content": turns[i][k]}]
                convs.append(conv + [{"role": "user", "content": questions[i]["turns"][t]}])
            sampling = Sampling(n=1, temperature=temp, max_new_tokens=max_new, seed=ctx.seed)
            for i, (reply,) in zip(idx, gen.chat(convs, sampling, desc=f"mt-bench turn {t + 1} {ctx.name}")):
                turns[i].append(reply)
    return turns


def _judge_llm(ctx: EvalContext, judge: Judge, judge_model: str, questions: list[dict],
               saved: dict[Any, dict]) -> list[dict[str, Any]]:
    prompts = _fastchat().load_judge_prompts(str(_data_file(ctx, "judge_prompts.jsonl")))
    refs = {}
    if any(q["category"] in _fastchat().NEED_REF_CATS for q in questions):
        _data_file(ctx, "reference_answer", f"{REFERENCE_MODEL}.jsonl")
        refs = _fastchat().load_model_answers(str(_data_file(ctx, "reference_answer")))[REFERENCE_MODEL]

    matches, requests = [], []
    for q in questions:
        answer = saved[q["question_id"]]
        ref = None
        if q["category"] in _fastchat().NEED_REF_CATS:
            if q["question_id"] not in refs:
                raise SuiteError(f"mt-bench: no {REFERENCE_MODEL} reference answer for question {q['question_id']}")
            ref = refs[q["question_id"]]
        for turn in (1, 2):
            name = ("single-math-v1" if ref else "single-v1") + ("-multi-turn" if turn == 2 else "")
            if name not in prompts:
                raise SuiteError(f"mt-bench: judge prompt {name!r} missing from judge_prompts.jsonl")
            system, user = _judge_messages(prompts[name], q, answer, ref, multi_turn=turn == 2)
            from fastchat.model.model_adapter import get_conversation_template

            conv = get_conversation_template(judge_model)  # as run_judge_single builds it
            conv.set_system_message(system)
            conv.append_message(conv.roles[0], user)
            conv.append_message(conv.roles[1], None)
            matches.append((q, turn, name, user))
            requests.append(conv.to_openai_api_messages())

    judgments = judge.chat_many(requests, temperature=0, max_tokens=2048)
    return [
        {"question_id": q["question_id"], "model": ctx.name, "judge": [judge_model, name], "user_prompt": user,
         "judgment": _fastchat().API_ERROR_OUTPUT if text is None else text, "score": parse_rating(text), "turn": turn,
         "tstamp": time.time()}
        for (q, turn, name, user), text in zip(matches, judgments)
    ]


def _judge_messages(template: dict, question: dict, answer: dict, ref: dict | None,
                    multi_turn: bool) -> tuple[str, str]:
    """(system prompt, user prompt) exactly as fastchat's run_judge_single formats them."""
    if template["output_format"] != "[[rating]]":
        raise SuiteError(f"mt-bench: judge prompt {template['name']!r} has unsupported output format")
    kwargs = {}
    if ref is not None:
        kwargs["ref_answer_1"] = ref["choices"][0]["turns"][0]
        if multi_turn:
            kwargs["ref_answer_2"] = ref["choices"][0]["turns"][1]
    a = answer["choices"][0]["turns"]
    if multi_turn:
        user = template["prompt_template"].format(
            question_1=question["turns"][0], question_2=question["turns"][1], answer_1=a[0], answer_2=a[1], **kwargs)
    else:
        user = template["prompt_template"].format(question=question["turns"][0], answer=a[0], **kwargs)
    return template["system_prompt"], user


def _judge_oracle(ctx: EvalContext, judge: Judge, judge_model: str, questions: list[dict],
                  saved: dict[Any, dict]) -> list[dict[str, Any]]:
    rows = []
    for q in questions:
        for turn, (gold, reply) in enumerate(zip(q["answers"], saved[q["question_id"]]["choices"][0]["turns"]), 1):
            s = judge.score({"category": q["category"], "answer": gold}, reply)
            rating = 1 + 9 * s
            rows.append({
                "question_id": q["question_id"], "model": ctx.name,
                "judge": [judge_model, "oracle-verify"], "user_prompt": q["turns"][turn - 1],
                "judgment": f"verifier score {s:.4f} against the gold answer; Rating: [[{rating:.4f}]]",
                "score": rating, "turn": turn, "tstamp": time.time(),
            })
    return rows


# ---------------------------------------------------------------- registration
# Everything the harness knows about this suite (harness/core/registry.py `Suite`).
register_suite(SUITE, help="MT-Bench (FastChat llm_judge), single-answer grading 1-10 per turn",
               options=MtBenchOptions, headline="score", paired=paired, preflight=preflight,
               canonical_judges={CANONICAL_JUDGE}, plan=estimate, data_files=DATA_FILES, data_sources=DATA_SOURCES,
               pull_by_default=True, judge=judge_saved, import_file=import_file, drilldown=drilldown, order=20)(run)
