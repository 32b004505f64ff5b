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
        pytest.skip(f"shared data not available: {path} (see README, 'Data mirrors')")
    return path


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory) -> Path:
    """A small tiny-world data folder (eval, dev, two_turn, mc, sft, pref, prompts .jsonl)."""
    from harness.config import WorldConfig
    from harness.tinyworld import build_world

    out = tmp_path_factory.mktemp("world")
    cfg = WorldConfig(n_sft=64, n_pref=32, n_prompts=32, n_dev=16, n_eval=24, n_two_turn=8, n_mc=12)
    build_world(cfg, seed=1, out=out)
    return out


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """An untrained tiny Llama with the tiny world's tokenizer, saved with save_pretrained."""
    from harness.config import ModelConfig
    from harness.tinyworld import build_base_model, build_tokenizer

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
