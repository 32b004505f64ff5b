"""Real prompt data through `datasets`: a hub id or a local path (parquet, jsonl/json, or a
folder written by `save_to_disk`) in UltraFeedback-binarized's schema (`prompt`, and `chosen`
/ `rejected` as message lists; scores optional), cut into contiguous equal chunks.

Each chunk is written as `chunk-<k>.jsonl` rows {id, prompt, chosen, rejected} (the last
assistant message of each list), the same rows the tiny world's preference files hold, so
the DPO and online stages read both alike.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from selm_bench.harness.core.specs import DataSpec
from selm_bench.harness.core.store import atomic_write_json
from selm_bench.harness.world import write_jsonl

REQUIRED = ("prompt", "chosen", "rejected")


class DataError(ValueError):
    """The prompt data cannot be used as configured: one clear line."""


def chunk_bounds(rows: int, chunks: int) -> list[tuple[int, int]]:
    """[start, end) of each of `chunks` contiguous equal chunks (the remainder is dropped)."""
    size = rows // chunks
    if size == 0:
        raise DataError(f"{rows} rows cannot be cut into {chunks} chunks")
    return [(k * size, (k + 1) * size) for k in range(chunks)]


def load_prompt_dataset(source: str, split: str):
    from datasets import DatasetDict, load_dataset, load_from_disk

    path = Path(source).expanduser()
    if path.is_dir() and any((path / f).exists() for f in ("dataset_info.json", "dataset_dict.json", "state.json")):
        ds = load_from_disk(str(path))
        if isinstance(ds, DatasetDict):
            if split not in ds:
                raise DataError(f"{source}: no split {split!r} (has: {', '.join(ds)})")
            ds = ds[split]
    elif path.is_file():
        kind = {".parquet": "parquet", ".jsonl": "json", ".json": "json"}.get(path.suffix)
        if kind is None:
            raise DataError(f"{source}: expected .parquet, .jsonl or .json (or a saved dataset folder)")
        ds = load_dataset(kind, data_files=str(path), split="train")
    elif source.startswith((".", "/", "~")) or source.count("/") > 1:
        raise DataError(f"{source}: no such file or folder")
    else:
        ds = load_dataset(source, split=split)  # a hub id (or a local folder of data files)
    missing = [c for c in REQUIRED if c not in ds.column_names]
    if missing:
        raise DataError(f"{source}: missing column {missing[0]!r} (UltraFeedback-binarized schema: prompt, chosen, "
                        f"rejected; has: {', '.join(ds.column_names)})")
    return ds


def last_reply(messages: Any, column: str, i: int) -> str:
    if isinstance(messages, str):
        return messages
    replies = [m["content"] for m in messages if isinstance(m, dict) and m.get("role") == "assistant"]
    if not replies:
        raise DataError(f"row {i}: {column} has no assistant message")
    return replies[-1]


def prepare(spec: DataSpec, root: Path, out: Path) -> None:
    ds = load_prompt_dataset(spec.source, spec.split)
    if spec.expected_rows is not None and len(ds) != spec.expected_rows:
        raise DataError(f"{spec.source}" + (f" [{spec.split}]" if spec.split else "") + f": {len(ds)} rows, the config expects {spec.expected_rows}")
    counts = {}
    for k, (start, end) in enumerate(chunk_bounds(len(ds), spec.chunks), start=1):
        rows = [{"id": r.get("prompt_id", start + j), "prompt": r["prompt"],
                 "chosen": last_reply(r["chosen"], "chosen", start + j),
                 "rejected": last_reply(r["rejected"], "rejected", start + j)}
                for j, r in enumerate(ds.select(range(start, end)))]
        write_jsonl(out / f"chunk-{k}.jsonl", rows)
        counts[f"chunk-{k}"] = len(rows)
    atomic_write_json(out / "counts.json", {"rows": len(ds), "chunks": counts})
