"""The `pairrm` ranker (trainers/pairrm.py) against llm-blender 0.0.2's own code, on a random tiny PairRM.

Expected values come from llm-blender, run in a throwaway install outside .venv (tests/support/tiny_pairrm.py,
cached in the system temp folder; skipped with the reason where PyPI cannot be reached): its PairRM-hf
path (`DebertaV2PairRM` + `tokenize_pair`) and its `Blender.rank` (the PairRM path the SELM authors use).
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest

from support.tiny_pairrm import build_tiny_pairrm, llm_blender_overlay, run_reference, words

ATOL = 1e-5
BATCH_SIZES = [1, 2, 5]
_rng = random.Random(7)
RUNS = [
    # PairRM's lengths: nothing is cut
    {"name": "plain", "source_max_length": 1224, "candidate_max_length": 412, "batch_sizes": BATCH_SIZES,
     "sources": [words(_rng, n) for n in (3, 12, 25)],
     "candidates": [[""] + [words(_rng, m) for m in (4, 9, 20)] for _ in range(3)]},
    # 16 + 2 * 8 tokens: sources and candidates cut, the candidates' cap depending on the source's length
    {"name": "cut", "source_max_length": 16, "candidate_max_length": 8, "batch_sizes": BATCH_SIZES,
     "sources": [words(_rng, n) for n in (2, 10, 30)],
     "candidates": [[words(_rng, m) for m in (1, 6, 15, 30)] for _ in range(3)]},
]


@pytest.fixture(scope="module")
def tiny_pairrm(tmp_path_factory) -> Path:
    pytest.importorskip("sentencepiece", reason="the tiny PairRM's tokenizer is trained with sentencepiece")
    pytest.importorskip("google.protobuf", reason="transformers reads the sentencepiece model with protobuf")
    return build_tiny_pairrm(tmp_path_factory.mktemp("pairrm") / "model")


@pytest.fixture(scope="module")
def blender(tiny_pairrm, tmp_path_factory) -> dict:
    overlay, why = llm_blender_overlay()
    if overlay is None:
        pytest.skip(f"llm-blender 0.0.2 cannot be installed in a throwaway folder: {why}")
    return run_reference(overlay, {"model": str(tiny_pairrm), "runs": RUNS}, tmp_path_factory.mktemp("llm-blender"))


def ranker(folder: Path, run: dict, batch_size: int):
    from selm_bench.trainers.pairrm import PairRMRanker

    return PairRMRanker(name=f"pairrm:{folder}", batch_size=batch_size, source_max_length=run["source_max_length"],
                        candidate_max_length=run["candidate_max_length"])


def max_diff(a, b) -> float:
    import numpy as np

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape
    return float(np.abs(a - b).max())


def ranks(scores: list[list[float]]) -> list[list[int]]:
    """llm-blender's rule (get_ranks_from_scores): 1 + how many score higher; equals share a rank."""
    return [[1 + sum(o > s for o in row) for s in row] for row in scores]


@pytest.mark.parametrize("batch_size", BATCH_SIZES)
@pytest.mark.parametrize("run", RUNS, ids=[r["name"] for r in RUNS])
def test_logits_matrix_scores_and_ranks_match_llm_blender(tiny_pairrm, blender, run, batch_size):
    ours = ranker(tiny_pairrm, run, batch_size)
    ref = blender[f"{run['name']}/{batch_size}"]
    hf_matrix = ref["hf"]["matrix"]
    n = len(run["candidates"][0])
    pairs = [(p, i, j) for p in range(len(run["sources"])) for i in range(n) for j in range(n) if i != j]
    logits = ours.compare([run["sources"][p] for p, _, _ in pairs], [run["candidates"][p][i] for p, i, _ in pairs],
                          [run["candidates"][p][j] for p, _, j in pairs])
    assert max_diff(logits, [hf_matrix[p][i][j] for p, i, j in pairs]) < ATOL
    assert max(abs(v) for v in logits) > 0.1  # the comparison is not trivially all zeros

    matrix = ours.matrices(run["sources"], run["candidates"])
    scores = ours.score([{"prompt": s} for s in run["sources"]], run["candidates"])
    assert max_diff(matrix, hf_matrix) < ATOL
    assert max_diff(scores, ref["hf"]["scores"]) < ATOL
    assert ranks(scores) == ref["hf"]["ranks"]
    # Blender.rank cuts candidates by the longest source of its batch, tokenize_pair by their own source:
    # the same inputs where nothing is cut, or one prompt a batch
    if run["name"] == "plain" or batch_size == 1:
        assert max_diff(matrix, ref["blender"]["matrix"]) < ATOL
        assert max_diff(scores, ref["blender"]["scores"]) < ATOL
        assert ranks(scores) == ref["blender"]["ranks"]


def test_the_cut_run_really_cuts_and_blender_rank_cuts_by_batch(tiny_pairrm, blender):
    """The "cut" run is a real test of the cutting: llm-blender's two paths part there at batch size 5."""
    ref = blender["cut/5"]
    assert max_diff(ref["hf"]["matrix"], ref["blender"]["matrix"]) > 1e-3
    assert max_diff(blender["cut/1"]["hf"]["matrix"], blender["cut/5"]["hf"]["matrix"]) < ATOL


def test_the_rank_stage_keeps_llm_blenders_first_and_last(tiny_pairrm, blender, tmp_path):
    """The online rank stage through the registry: chosen = llm-blender's rank 1, rejected = its last rank."""
    from selm_bench.harness.core.specs import RankSpec, Ref
    from selm_bench.trainers import online

    run = RUNS[0]
    rows = [{"prompt": s, "candidates": c, "y_ref": c[0]} for s, c in zip(run["sources"], run["candidates"])]
    (tmp_path / "c.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    online.rank(RankSpec(candidates=Ref(path="c.jsonl"), ranker=f"pairrm:{tiny_pairrm}", batch_size=4),
                tmp_path, tmp_path / "r")
    recs = [json.loads(line) for line in (tmp_path / "r" / "generations.jsonl").read_text().splitlines()]
    n = len(run["candidates"][0])
    ref = blender["plain/5"]["blender"]
    for rec, row, rank, scores in zip(recs, rows, ref["ranks"], ref["scores"], strict=True):
        assert rec["chosen"] == row["candidates"][rank.index(1)]
        assert rec["rejected"] == row["candidates"][rank.index(n)]
        assert max_diff(rec["scores"], scores) < ATOL


def test_registry_name_and_the_rank_stage_contract(tiny_pairrm, tmp_path):
    from selm_bench.harness.core import registry
    from selm_bench.harness.core.specs import RankSpec, Ref
    from selm_bench.trainers import online
    from selm_bench.trainers.pairrm import PairRMRanker

    assert registry.get("ranker", f"pairrm:{tiny_pairrm}") is PairRMRanker
    assert "PairRM-hf" in registry.entry("ranker", "pairrm").help
    # the rank stage's keyword arguments (judge options included) are taken
    r = registry.get("ranker", f"pairrm:{tiny_pairrm}")(name=f"pairrm:{tiny_pairrm}", device="cpu", batch_size=3,
                                                        trust_remote_code=False, base_url=None, cache_dir=str(tmp_path))
    prompts = [{"prompt": "kalo mi?", "id": 1}, {"prompt": "tan re su."}, {"prompt": "no"}]
    cands = [["vi ex.", "pla ta ne or", "zo"], ["wa"], []]
    scores = r.score(prompts, cands)
    assert [len(s) for s in scores] == [3, 1, 0] and scores[1] == [0.0]
    assert all(isinstance(v, float) for s in scores for v in s)
    assert abs(sum(scores[0])) < 1e-5  # mean_j (M[i][j] - M[j][i]) sums to 0 over i

    rows = [{"prompt": p["prompt"], "candidates": c, "y_ref": c[0]} for p, c in zip(prompts[:1] * 2, cands[:1] * 2)]
    (tmp_path / "c.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    online.rank(RankSpec(candidates=Ref(path="c.jsonl"), ranker=f"pairrm:{tiny_pairrm}"), tmp_path, tmp_path / "r")
    for rec in map(json.loads, (tmp_path / "r" / "generations.jsonl").read_text().splitlines()):
        assert len(rec["scores"]) == 3 and rec["used"]
        assert rec["chosen"] == rec["candidates"][max(range(3), key=rec["scores"].__getitem__)]
        assert rec["rejected"] == rec["candidates"][min(range(3), key=rec["scores"].__getitem__)]


def test_default_model_is_pairrm_hf_and_a_foreign_checkpoint_is_refused(tiny_pairrm, tmp_path, monkeypatch):
    import huggingface_hub
    from safetensors.torch import load_file, save_file
    from selm_bench.trainers.pairrm import PairRMRanker

    asked = []
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda repo, **kw: asked.append(repo) or str(tiny_pairrm))
    PairRMRanker(name="pairrm")
    assert asked == ["llm-blender/PairRM-hf"]

    other = shutil.copytree(tiny_pairrm, tmp_path / "no-head")
    weights = {k: v for k, v in load_file(other / "model.safetensors").items() if not k.startswith("head_layer.")}
    save_file(weights, str(other / "model.safetensors"))
    with pytest.raises(ValueError, match=r"not PairRM-hf's weights \(missing \['head_layer"):
        PairRMRanker(name=f"pairrm:{other}")
