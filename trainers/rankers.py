"""Rankers score each prompt's candidate responses; the online loop keeps best vs worst.

One interface: `Ranker(name=..., device=..., batch_size=...)` then
`score(prompts, candidates) -> list[list[float] | None]` (None: the ranker failed on that
prompt; the rank stage counts it, see trainers/online.py).

- `oracle`: the tiny world's graded verifier (needs gold answers).
- `reward-model:<hub id or path>`: a sequence-classification model's scalar reward for
  [user prompt, assistant candidate] with the reward model's own chat template, batched.
- `pairrm` / `pairrm:<path>`: PairRM-hf's encoder and head, in this project (trainers/pairrm.py).
"""

from __future__ import annotations

from typing import Any

from selm_bench.harness.core.registry import register_ranker


def _parameter(name: str, kind: str) -> str:
    arg = name.split(":", 1)[1] if ":" in name else ""
    if not arg:
        raise ValueError(f"ranker {kind} needs a model: {kind}:<hub id or local path>")
    return arg


@register_ranker("oracle", help="the tiny world's graded verifier (needs gold answers)")
class OracleRanker:
    def __init__(self, **_: Any):
        pass

    def score(self, prompts: list[dict[str, Any]], candidates: list[list[str]]) -> list[list[float]]:
        from selm_bench.harness.world import verify

        return [[verify(p["category"], p["answer"], c) for c in cands] for p, cands in zip(prompts, candidates)]


@register_ranker("reward-model", help="reward-model:<hub id or path>: a sequence-classification scalar reward")
class RewardModelRanker:
    def __init__(self, name: str = "", device: str = "cpu", batch_size: int = 16, trust_remote_code: bool = False,
                 **_: Any):
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        path = _parameter(name, "reward-model")
        self.tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
        self.tokenizer.padding_side = "right"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForSequenceClassification.from_pretrained(
            path, trust_remote_code=trust_remote_code).to(device).eval()
        if self.model.config.pad_token_id is None:
            self.model.config.pad_token_id = self.tokenizer.pad_token_id
        if self.model.config.num_labels != 1:
            raise ValueError(f"reward-model:{path}: expected one output (a scalar reward), has {self.model.config.num_labels}")
        self.device, self.batch_size, self._torch = device, batch_size, torch

    def texts(self, prompt: str, candidate: str) -> str:
        conv = [{"role": "user", "content": prompt}, {"role": "assistant", "content": candidate}]
        return self.tokenizer.apply_chat_template(conv, tokenize=False)

    def score(self, prompts: list[dict[str, Any]], candidates: list[list[str]]) -> list[list[float]]:
        flat = [self.texts(p["prompt"], c) for p, cands in zip(prompts, candidates) for c in cands]
        rewards: list[float] = []
        with self._torch.no_grad():
            for i in range(0, len(flat), self.batch_size):
                enc = self.tokenizer(flat[i : i + self.batch_size], return_tensors="pt", padding=True,
                                     add_special_tokens=False).to(self.device)
                rewards += self.model(**enc).logits[:, 0].float().tolist()
        out, at = [], 0
        for cands in candidates:
            out.append(rewards[at : at + len(cands)])
            at += len(cands)
        return out


PAIRWISE_SYSTEM = (
    "You compare two assistant responses to the same user request. Judge which response is more "
    "helpful, correct and clear; ignore its length and the order in which the responses appear. "
    "Finish with exactly one verdict: [[A]] if A is better, [[B]] if B is better, [[C]] for a tie."
)


def pairwise_messages(prompt: str, first: str, second: str) -> list[dict[str, str]]:
    user = (f"[User request]\n{prompt}\n\n[Response A]\n{first}\n[End of response A]\n\n"
            f"[Response B]\n{second}\n[End of response B]")
    return [{"role": "system", "content": PAIRWISE_SYSTEM}, {"role": "user", "content": user}]


def parse_verdict(text: str | None) -> float | None:
    """A's share of the win: 1 ([[A]]), 0 ([[B]]), 0.5 ([[C]]); None when no single verdict is given."""
    if text is None:
        return None
    found = {v for v in ("A", "B", "C") if f"[[{v}]]" in text}
    return {"A": 1.0, "B": 0.0, "C": 0.5}[found.pop()] if len(found) == 1 else None


@register_ranker("judge", help="judge:<model>: pairwise preference of an OpenAI-compatible LLM, cached")
class JudgeRanker:
    """Every pair of a prompt's candidates is compared once by the LLM judge (`openai:<model>` client:
    disk cache, bounded concurrency and retries); the pair's order is fixed by a hash of the two
    texts, so a position bias does not always favour the same slot and reruns ask the same
    question (cache hits). A candidate's score is its wins (a tie counts a half). A prompt with
    a failed or unparsable comparison gets None (counted by the rank stage)."""

    def __init__(self, name: str = "", device: str = "cpu", batch_size: int = 16, cache_dir: str | None = None,
                 base_url: str | None = None, concurrency: int = 8, max_retries: int = 5, timeout: float = 60, **_: Any):
        from selm_bench.evals.openai_judge import OpenAIJudge

        model = _parameter(name, "judge")
        self.judge = OpenAIJudge(spec=f"openai:{model}", cache_dir=cache_dir, base_url=base_url,
                                 concurrency=concurrency, max_retries=max_retries, timeout=timeout)
        self.judge.check()  # the key is there before any call
        self.errors: list[str] = []

    @classmethod
    def preflight(cls, name: str = "", base_url: str | None = None, **_: Any) -> None:
        """Before a run's first stage: the judge's key is there (no request is sent)."""
        from selm_bench.evals.openai_judge import OpenAIJudge

        OpenAIJudge(spec=f"openai:{_parameter(name, 'judge')}", base_url=base_url).check()

    def score(self, prompts: list[dict[str, Any]], candidates: list[list[str]]) -> list[list[float] | None]:
        import hashlib

        pairs, requests = [], []
        for p_i, (p, cands) in enumerate(zip(prompts, candidates)):
            for i in range(len(cands)):
                for j in range(i + 1, len(cands)):
                    swap = hashlib.sha256(f"{cands[i]}\0{cands[j]}".encode()).digest()[0] % 2 == 1
                    a, b = (j, i) if swap else (i, j)
                    pairs.append((p_i, a, b))
                    requests.append(pairwise_messages(p["prompt"], cands[a], cands[b]))
        verdicts = self.judge.chat_many(requests, temperature=0.0, max_tokens=1024)
        scores: list[list[float] | None] = [[0.0] * len(c) for c in candidates]
        for (p_i, a, b), text in zip(pairs, verdicts):
            share = parse_verdict(text)
            if scores[p_i] is None:
                continue
            if share is None:
                self.errors.append(f"prompt {p_i}: " + ("call failed" if text is None else "no single [[A]]/[[B]]/[[C]] verdict"))
                scores[p_i] = None
                continue
            scores[p_i][a] += share
            scores[p_i][b] += 1.0 - share
        return scores

    def accounting(self) -> dict[str, int]:
        return self.judge.accounting()
