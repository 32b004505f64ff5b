"""Support for tests/online/test_pairrm.py: a random tiny PairRM in PairRM-hf's layout, a cached throwaway install
of llm-blender 0.0.2 (outside .venv), and, run as a script inside it, llm-blender's own outputs:

    PYTHONPATH=<overlay> python tests/support/tiny_pairrm.py CASES.json OUT.json

The install is a `pip install --no-deps --target` overlay over the running interpreter's packages (what
llm-blender needs beyond them), kept under the system temp folder, keyed by the pins and Python version.
The script applies the shims llm-blender 0.0.2 needs under transformers 5 (its own code is untouched).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

PINS = ["llm-blender==0.0.2", "dataclasses-json==0.6.7", "marshmallow==3.26.2", "typing-inspect==0.9.0",
        "mypy-extensions==1.1.0"]
PREFIX_TOKENS = ["<|source|>", "<|candidate1|>", "<|candidate2|>", "<|candidate|>"]  # PairRM-hf's added tokens
SYLLABLES = ["ka", "lo", "mi", "tan", "re", "su", "no", "vi", "ex", "pla", "ta", "ne", "or", "ing", "ed", "st", "qu",
             "zo", "wa", "fi", "A", "B", "7", "3"]


_rng = random.Random(1234)
VOCAB = ["".join(_rng.choice(SYLLABLES) for _ in range(_rng.randint(1, 3))) for _ in range(300)]


def words(rng: random.Random, n: int) -> str:
    """n random words of the tiny tokenizer's corpus, with an end mark."""
    return " ".join(rng.choice(VOCAB) for _ in range(n)) + rng.choice([".", "?", "!"])


def build_tiny_pairrm(out: Path, seed: int = 0, hidden: int = 32, layers: int = 2) -> Path:
    """A random PairRM in PairRM-hf's layout: DeBERTa-v3-style sentencepiece tokenizer (Unigram, [PAD]=0,
    [CLS]=1, [SEP]=2, [UNK]=3, [MASK] after the pieces, then the prefix tokens), a DeBERTa-v2 config
    with PairRM's fields, and model.safetensors under the keys `pretrained_model.*` and `head_layer.{1,4}.*`."""
    import sentencepiece as spm
    import torch
    from safetensors.torch import save_file
    from transformers import DebertaV2Config, DebertaV2Model, DebertaV2Tokenizer

    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    corpus = [words(rng, rng.randint(5, 15)) for _ in range(800)]
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus), model_prefix=str(out / "spm"), vocab_size=200, model_type="unigram",
        pad_id=0, pad_piece="[PAD]", bos_id=1, bos_piece="[CLS]", eos_id=2, eos_piece="[SEP]", unk_id=3,
        unk_piece="[UNK]", character_coverage=1.0, minloglevel=2)
    (out / "spm.vocab").unlink()
    tok = DebertaV2Tokenizer.from_pretrained(out)
    tok.add_tokens(PREFIX_TOKENS)
    tok.save_pretrained(out)
    ids = dict(zip(["source_prefix_id", "cand1_prefix_id", "cand2_prefix_id", "cand_prefix_id"],
                   tok.convert_tokens_to_ids(PREFIX_TOKENS)))
    config = DebertaV2Config(
        vocab_size=len(tok), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
        intermediate_size=2 * hidden, max_position_embeddings=512, relative_attention=True, position_buckets=256,
        max_relative_positions=-1, pos_att_type=["p2c", "c2p"], norm_rel_ebd="layer_norm", share_att_key=True,
        position_biased_input=False, type_vocab_size=0, pad_token_id=0, architectures=["DebertaV2PairRM"],
        n_tasks=1, drop_out=0.05, sep_token_id=2, **ids)
    config.save_pretrained(out)
    torch.manual_seed(seed)
    encoder = DebertaV2Model(config)
    head = torch.nn.Sequential(torch.nn.Dropout(0.05), torch.nn.Linear(2 * hidden, hidden), torch.nn.Tanh(),
                               torch.nn.Dropout(0.05), torch.nn.Linear(hidden, 1))
    weights: dict[str, Any] = {}
    for prefix, module in (("pretrained_model.", encoder), ("head_layer.", head)):
        for k, v in module.state_dict().items():
            if k.endswith("weight") and v.dim() == 2:  # O(1) logits, so the compared numbers are not all ~0
                v = torch.randn(v.shape) * (0.3 if prefix == "head_layer." else 0.25)
            weights[prefix + k] = v.contiguous()
    save_file(weights, str(out / "model.safetensors"), metadata={"format": "pt"})
    return out


def overlay_dir() -> Path:
    key = hashlib.sha256(json.dumps([PINS, sys.version_info[:2]]).encode()).hexdigest()[:10]
    return Path(tempfile.gettempdir()) / f"selm-bench-llm-blender-0.0.2-py{sys.version_info[0]}{sys.version_info[1]}-{key}"


def llm_blender_overlay(timeout: float = 300) -> tuple[Path | None, str]:
    """(the overlay folder, "") once installed (cached), or (None, why not)."""
    import fcntl

    target = overlay_dir()
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(str(target) + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / ".complete").exists():
            return target, ""
        staging = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
        try:
            done = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check",
                                   "--no-deps", "--target", str(staging), *PINS],
                                  capture_output=True, text=True, timeout=timeout)
        except (OSError, subprocess.TimeoutExpired) as e:
            shutil.rmtree(staging, ignore_errors=True)
            return None, f"pip install {' '.join(PINS)} did not finish: {e}"
        if done.returncode != 0:
            shutil.rmtree(staging, ignore_errors=True)
            tail = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
            return None, f"pip install {' '.join(PINS)} failed (no PyPI?): {tail}"
        (staging / ".complete").write_text("\n".join(PINS) + "\n")
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
        return target, ""


def run_reference(overlay: Path, cases: dict[str, Any], work: Path, timeout: float = 600) -> dict[str, Any]:
    """llm-blender's outputs on `cases` (see `reference`), computed by this file run under the overlay."""
    work.mkdir(parents=True, exist_ok=True)
    (work / "cases.json").write_text(json.dumps(cases))
    env = {**os.environ, "PYTHONPATH": str(overlay), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, __file__, str(work / "cases.json"), str(work / "out.json")], env=env,
                          capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"llm-blender reference script failed:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}")
    return json.loads((work / "out.json").read_text())


def reference(cases_path: str, out_path: str) -> None:
    """For each run and batch size, llm-blender's own code on the tiny model:
    - "hf": `DebertaV2PairRM` + `tokenize_pair` (the PairRM-hf model card's path) on every ordered pair:
      the comparison matrices, then `get_scores_from_cmps` and `get_ranks_from_scores` on them;
    - "blender": `Blender.loadranker` (pairranker, the PairRM path) on the same weights, then
      `Blender.rank`: the matrices it scores (recorded), its scores (return_scores=True) and ranks."""
    import huggingface_hub.constants
    import transformers.utils.hub

    transformers.utils.hub.TRANSFORMERS_CACHE = huggingface_hub.constants.HF_HUB_CACHE  # gone in transformers 5
    from transformers import PreTrainedTokenizerBase

    if not hasattr(PreTrainedTokenizerBase, "batch_encode_plus"):  # gone in transformers 5; Blender.rank calls it
        PreTrainedTokenizerBase.batch_encode_plus = lambda self, texts, **kw: self(texts, **kw)
    import llm_blender
    import llm_blender.blender.blender as blender_module
    import numpy as np
    import torch
    from llm_blender.blender.blender_utils import tokenize_pair
    from llm_blender.gpt_eval.utils import get_ranks_from_scores, get_scores_from_cmps
    from llm_blender.pair_ranker.pairrm import DebertaV2PairRM
    from transformers import AutoTokenizer

    cases = json.loads(Path(cases_path).read_text())
    model_dir = Path(cases["model"])
    pairrm, info = DebertaV2PairRM.from_pretrained(model_dir, output_loading_info=True)
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys")), info
    pairrm.eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)

    ranker_dir = Path(out_path).parent / "blender-ranker"
    ranker_dir.mkdir(exist_ok=True)
    (ranker_dir / "config.json").write_text(json.dumps({
        "ranker_type": "pairranker", "model_type": "deberta", "model_name": str(model_dir), "source_maxlength": 1224,
        "candidate_maxlength": 412, "n_tasks": 1, "drop_out": 0.05, "fp16": False, "device": "cpu"}))
    shutil.copyfile(model_dir / "model.safetensors", ranker_dir / "model.safetensors")
    blender = llm_blender.Blender()
    blender.loadranker(str(ranker_dir), device="cpu")
    seen: list[np.ndarray] = []
    original = blender_module.get_scores_from_cmps
    blender_module.get_scores_from_cmps = lambda cmps, *a, **kw: (seen.append(np.array(cmps)), original(cmps, *a, **kw))[1]

    out: dict[str, Any] = {}
    for run in cases["runs"]:
        sources, candidates = run["sources"], run["candidates"]
        lengths = {"source_max_length": run["source_max_length"], "candidate_max_length": run["candidate_max_length"]}
        pairs = [(p, i, j) for p, c in enumerate(candidates) for i in range(len(c)) for j in range(len(c)) if i != j]
        for bs in run["batch_sizes"]:
            mats = np.zeros((len(sources), len(candidates[0]), len(candidates[0])), dtype=np.float32)
            with torch.no_grad():
                for at in range(0, len(pairs), bs):
                    chunk = pairs[at : at + bs]
                    enc = tokenize_pair(tokenizer, [sources[p] for p, _, _ in chunk], [candidates[p][i] for p, i, _ in chunk],
                                        [candidates[p][j] for p, _, j in chunk], **lengths)
                    for (p, i, j), v in zip(chunk, pairrm(**enc).logits.tolist()):
                        mats[p, i, j] = v
            hf_scores = get_scores_from_cmps(mats)
            seen.clear()
            scores = blender.rank(sources, candidates, return_scores=True, batch_size=bs, disable_tqdm=True, **lengths)
            blender_mats = np.concatenate(seen, axis=0)
            ranks = blender.rank(sources, candidates, return_scores=False, batch_size=bs, disable_tqdm=True, **lengths)
            out[f"{run['name']}/{bs}"] = {
                "hf": {"matrix": mats.tolist(), "scores": hf_scores.tolist(), "ranks": get_ranks_from_scores(hf_scores).tolist()},
                "blender": {"matrix": blender_mats.tolist(), "scores": np.asarray(scores).tolist(),
                            "ranks": np.asarray(ranks).tolist()}}
    Path(out_path).write_text(json.dumps(out))


if __name__ == "__main__":
    reference(sys.argv[1], sys.argv[2])
