"""Model cards: a `README.md` in every checkpoint folder of a run; `push_run` / `push_to_hub` upload them.

A card is Hub front matter (`library_name`, `tags`, `base_model` and `datasets` where they are Hub
ids) and markdown: method, iteration, what it was trained from, on which data slice, every training
setting of its spec, its eval rows with their labels, and the run's provenance. Everything comes
from the run's own files (manifest.json, config.yaml, leaderboard.json, each checkpoint's spec.json,
stage.json and train_info.json), so the same run gives byte-identical cards; a card whose text is
unchanged is not rewritten (its mtime stays, as caches keyed on a folder's files want).

`push_to_hub` uploads what loads the model (config, weights, tokenizer, generation config, chat
template) and the card, in one commit; the harness's bookkeeping (`UPLOAD_IGNORE`) stays behind:
the card already says what it records.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
from pathlib import Path
from typing import Any

import yaml
from jinja2 import Environment

from selm_bench.harness.reports.leaderboard import parse_checkpoint
from selm_bench.harness.core.store import atomic_write_text, read_json

# Files of a checkpoint folder that are the harness's records, not the model: never uploaded.
UPLOAD_IGNORE = ["spec.json", "stage.json", "stage_info.json", "train_info.json", "train_log.json",
                 "training_args.bin", "checkpoint-*", "*.tmp", ".*", "*/.*"]
METHOD_TAGS = {"sft": ["sft"], "dpo": ["dpo"], "iterative-dpo": ["dpo", "iterative-dpo"], "selm": ["dpo", "selm"]}
PREFERENCE_SETTINGS = ["loss", "beta", "alpha", "nll_weight"]
RESOLVED = ["global_batch", "optim", "lr_scheduler", "mixed_precision", "distributed_type"]  # from train_info.json

TEMPLATE = """\
---
{{ front_matter }}---

# {{ run_name }}: {{ name }}

A `{{ method }}` checkpoint{% if iteration %} (iteration {{ iteration }}){% endif %} trained by
selm-bench in the run `{{ run_folder }}`. It loads with
`AutoModelForCausalLM.from_pretrained` and `AutoTokenizer.from_pretrained`.

## Trained from

{% for line in origin %}
- {{ line }}
{% endfor %}

## Data

{% for line in data %}
- {{ line }}
{% endfor %}

## Hyperparameters

From this checkpoint's `spec.json` (strings as they are, other values as JSON).

| setting | value |
|---|---|
{% for k, v in settings %}
| {{ k }} | {{ v | cell }} |
{% endfor %}
{% if resolved %}

As resolved at training time (`train_info.json`): {{ resolved }}.
{% endif %}

## Evaluation

{% if rows %}
{% for row in rows %}
- {{ row.label and "not the canonical benchmark: " ~ row.label or "the canonical benchmark" }}
- provenance: {{ row.provenance }}

| suite | metric | value |
|---|---|---|
{% for suite, metric, value in row.metrics %}
| {{ suite }} | {{ metric }} | {{ value }} |
{% endfor %}
{% endfor %}
{% else %}
No eval rows for `{{ name }}` in the run's `leaderboard.json`.
{% endif %}

## Provenance

- run: `{{ run_folder }}` (config `{{ config_name }}`, config.yaml sha256 `{{ config_hash }}`)
- training stage: key `{{ stage.key }}`, finished {{ stage.ended }}, commit `{{ commit }}`
{% if run_commit != commit %}
- the run's latest command: commit `{{ run_commit }}`
{% endif %}
- command: `{{ command }}`
- packages: {{ packages }}
"""


def _cell(value: Any) -> str:
    return str(value).replace("|", "\\|")


_ENV = Environment(trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True, autoescape=False)
_ENV.filters["cell"] = _cell


def checkpoint_folders(run_dir: Path) -> dict[str, Path]:
    """Checkpoint name (`sft`, `selm/iter-2`) -> its finished model folder."""
    out = {}
    root = Path(run_dir) / "checkpoints"
    for spec in sorted(root.glob("**/model/spec.json")) if root.is_dir() else []:
        folder = spec.parent
        rel = folder.relative_to(root)
        rec = read_json(folder / "stage.json") or {}
        if rec.get("status") == "done" and not any(p.startswith(".") for p in rel.parts):
            out[rel.parent.as_posix()] = folder
    return out


def _hub_id(ref: dict[str, Any]) -> str | None:
    """A Ref's path when it names a Hub repo: not a run folder (those have a key), not an existing path."""
    path = ref.get("path", "")
    if ref.get("key") or not re.fullmatch(r"[\w][\w.-]*(/[\w.-]+)?", path) or Path(path).expanduser().exists():
        return None
    return path


def _origin(run_dir: Path, spec: dict[str, Any]) -> tuple[list[str], str | None]:
    """(lines: the chain of checkpoints back to the base model, the base's Hub id or None)."""
    lines: list[str] = []
    ref = spec["base"] if spec["kind"] == "sft" else spec["policy"]
    if spec["kind"] == "preference" and spec["reference"] != spec["policy"]:
        lines.append(f"reference model: `{spec['reference']['path']}`")
    while ref.get("key") and (parent := read_json(run_dir / ref["path"] / "spec.json")) and "train" in parent:
        lines.append(f"this run's `{ref['path'].removeprefix('checkpoints/').removesuffix('/model')}` "
                     f"(`{ref['path']}`, stage key `{ref['key']}`), trained from")
        ref = parent["base"] if parent["kind"] == "sft" else parent["policy"]
    hub = _hub_id(ref)
    if hub:
        lines.append(f"base model: [`{hub}`](https://huggingface.co/{hub})")
    elif ref["path"].startswith("world/"):
        world = read_json(run_dir / "world" / "spec.json") or {}
        tiny = ", ".join(f"{k} {v}" for k, v in (world.get("tiny_model") or {}).items())
        lines.append(f"base model: the tiny world's randomly initialised Llama ({tiny}; seed {world.get('seed')}), "
                     "made in this run, not on the Hub")
    else:
        lines.append(f"base model: `{ref['path']}` (a local folder)")
    return lines, hub


def _data(run_dir: Path, ref: dict[str, Any]) -> tuple[str, str | None]:
    """(what a data file is, the Hub dataset id it comes from or None)."""
    path = ref["path"]
    if path.startswith("world/data/"):
        world = read_json(run_dir / "world" / "spec.json") or {}
        stem = Path(path).stem
        n = (world.get("world") or {}).get(f"n_{stem}")
        return f"the tiny world's `{stem}` set ({n} rows, seed {world.get('seed')})", None
    if m := re.fullmatch(r"data/chunk-(\d+)\.jsonl", path):
        data = read_json(run_dir / "data" / "spec.json") or {}
        source, split = data.get("source", "?"), data.get("split")
        hub = source if _hub_id({"path": source}) else None
        return (f"chunk {m.group(1)} of {data.get('chunks')} of `{source}`" + (f" (split `{split}`)" if split else ""),
                hub)
    return f"`{path}`", _hub_id(ref)


def _data_lines(run_dir: Path, spec: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(lines describing the training data, Hub dataset ids)."""
    if spec["kind"] == "sft":
        text, hub = _data(run_dir, spec["data"])
        return [f"SFT on {text}"], [hub] if hub else []
    pairs = spec["pairs"]["path"]
    rank = read_json(run_dir / Path(pairs).parent / "spec.json") or {}
    online = rank.get("kind") == "rank"  # pairs ranked in this run, from a generate stage's candidates
    gen = read_json(run_dir / Path(rank["candidates"]["path"]).parent / "spec.json") if online else None
    if not gen:  # offline pairs
        text, hub = _data(run_dir, spec["pairs"])
        return [f"preference pairs: {text}"], [hub] if hub else []
    text, hub = _data(run_dir, gen["prompts"])
    return [f"prompts: {text}, chunk {gen['chunk']} of {gen['chunks']}",
            f"candidates: {', '.join(gen['candidates'])}; {gen['num_samples']} policy samples per prompt "
            f"(temperature {gen['temperature']}, top_p {gen['top_p']}, max_new_tokens {gen['max_new_tokens']}, "
            f"backend {gen['backend']}), y_ref {gen['ref_response']}",
            f"ranked by `{rank['ranker']}` (keep_ties {rank['keep_ties']}): best vs worst -> `{pairs}`"], \
        [hub] if hub else []


def _commit(rec: dict[str, Any]) -> str:
    return (rec.get("git_commit") or "unknown") + ("+dirty" if rec.get("git_dirty") else "")


def _show(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def card_text(run_dir: Path, name: str) -> str:
    run_dir = Path(run_dir)
    folder = run_dir / "checkpoints" / name / "model"
    spec = json.loads((folder / "spec.json").read_text())
    stage = read_json(folder / "stage.json") or {}
    info = read_json(folder / "train_info.json") or {}
    manifest = read_json(run_dir / "manifest.json") or {}
    config = run_dir / "config.yaml"
    cfg = yaml.safe_load(config.read_text()) if config.is_file() else {}
    method, iteration = parse_checkpoint(name)

    origin, base = _origin(run_dir, spec)
    data, datasets = _data_lines(run_dir, spec)
    if stage.get("rows"):  # what the preference stage trained on after fitting rows to max_length
        data.append("rows: " + ", ".join(f"{k} {v}" for k, v in stage["rows"].items()))
    settings = [(k, _show(spec[k])) for k in PREFERENCE_SETTINGS if k in spec]
    settings += [(k, _show(v)) for k, v in spec["train"].items()]
    resolved = ", ".join(f"{k} {str(info[k]).rsplit('.', 1)[-1]}" for k in RESOLVED if k in info)  # enums: their name
    rows = []
    for row in read_json(run_dir / "leaderboard.json") or []:
        if row.get("checkpoint") == name and "run" not in row:
            metrics = [(*k.split("/", 1), json.dumps(v)) for k, v in row.items()
                       if "/" in k and isinstance(v, (int, float)) and not isinstance(v, bool)]
            rows.append({"label": row.get("label") or "", "provenance": row.get("provenance") or "",
                         "metrics": metrics})

    front: dict[str, Any] = {"library_name": "transformers", "pipeline_tag": "text-generation",
                             "tags": ["selm-bench", "trl", *METHOD_TAGS.get(method, [method])]
                             + (["tiny-world"] if (run_dir / "world" / "spec.json").is_file() else [])}
    if base:
        front["base_model"] = base
    if datasets:
        front["datasets"] = datasets
    packages = {**(manifest.get("packages") or {}), **((stage.get("env") or {}).get("packages") or {})}
    command = manifest.get("command") or []
    return _ENV.from_string(TEMPLATE).render(
        front_matter=yaml.safe_dump(front, sort_keys=False), run_name=cfg.get("name", run_dir.name), name=name,
        method=method, iteration=iteration, run_folder=run_dir.name, origin=origin, data=data, settings=settings,
        resolved=resolved, rows=rows, config_name=cfg.get("name", "?"),
        config_hash=hashlib.sha256(config.read_bytes()).hexdigest()[:10] if config.is_file() else "none",
        stage={"key": stage.get("key"), "ended": stage.get("ended")}, commit=_commit(stage),
        run_commit=_commit(manifest),
        command=("selm-bench " + shlex.join(command[1:])) if command else "unknown",
        packages=", ".join(f"{k} {v}" for k, v in packages.items() if v) + f"; python {manifest.get('python', '?')}",
    )


def write_model_cards(run_dir: Path) -> list[Path]:
    """Write (atomically, only when changed) `README.md` in every checkpoint folder of the run."""
    written = []
    for name, folder in checkpoint_folders(run_dir).items():
        card, text = folder / "README.md", card_text(run_dir, name)
        if not card.is_file() or card.read_text() != text:
            atomic_write_text(card, text)
        written.append(card)
    return written


def files_to_upload(folder: Path) -> list[str]:
    """Exactly what `push_to_hub` uploads from a checkpoint folder (huggingface_hub's own filter)."""
    from huggingface_hub.utils import filter_repo_objects

    folder = Path(folder)
    files = sorted(p.relative_to(folder).as_posix() for p in folder.glob("**/*") if p.is_file())
    return list(filter_repo_objects(files, ignore_patterns=list(UPLOAD_IGNORE)))


class PushError(RuntimeError):
    pass


def _valid_repo_id(repo_id: str) -> None:
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as e:
        raise PushError(f"--push-to-hub: {e}") from None


def _refuse_offline(where: str) -> None:
    import huggingface_hub

    if huggingface_hub.is_offline_mode():
        raise PushError(f"cannot push to {where}: HF_HUB_OFFLINE is set (unset it to push)")


def check_push(prefix: str) -> None:
    """Before a run that ends with `push_run(run, prefix)`: valid repo ids, Hub not offline (no Hub call)."""
    _valid_repo_id(hub_repo_id(prefix, "sft"))
    _refuse_offline(prefix)


def _check(folder: Path, repo_id: str) -> None:
    """A folder to push has a model, weights and a card, and the repo id is valid (no Hub call)."""
    _valid_repo_id(repo_id)
    files = files_to_upload(folder) if folder.is_dir() else []
    missing = [f for f in ("config.json", "README.md") if f not in files]
    if not any(f.endswith((".safetensors", ".bin")) for f in files):
        missing.append("weights (*.safetensors or *.bin)")
    if missing:
        raise PushError(f"{folder}: not a checkpoint folder with a model card (missing {', '.join(missing)}); "
                        "cards are written by train-and-eval")


def _push(targets: dict[Path, str], private: bool, token: str | None) -> dict[Path, str]:
    """Check every (folder -> repo id) first, so a bad one or offline mode uploads nothing; then per
    folder: create the repo (reused when it exists) and upload in one commit (all files or none)."""
    from huggingface_hub import HfApi

    for folder, repo_id in targets.items():
        _check(folder, repo_id)
    _refuse_offline(", ".join(targets.values()))
    api = HfApi(token=token)
    out = {}
    for folder, repo_id in targets.items():
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        info = api.upload_folder(repo_id=repo_id, folder_path=str(folder), repo_type="model",
                                 ignore_patterns=list(UPLOAD_IGNORE),  # a copy: upload_folder appends to it
                                 commit_message="selm-bench checkpoint and model card")
        out[folder] = str(getattr(info, "commit_url", info))
    return out


def push_to_hub(folder: Path, repo_id: str, private: bool = True, token: str | None = None) -> str:
    """Upload one checkpoint folder (`files_to_upload`) to `repo_id`, private by default; the commit URL."""
    return _push({Path(folder): repo_id}, private, token)[Path(folder)]


def hub_repo_id(prefix: str, checkpoint: str) -> str:
    """`me/tiny` + `selm/iter-2` -> `me/tiny-selm-iter-2`."""
    return f"{prefix}-{checkpoint.replace('/', '-')}"


def push_run(run_dir: Path, prefix: str, private: bool = True, token: str | None = None) -> dict[str, str]:
    """Every checkpoint of the run to `hub_repo_id(prefix, checkpoint)`: checkpoint -> commit URL.
    All are checked before the first upload; a network failure midway leaves the pushed ones whole."""
    folders = checkpoint_folders(run_dir)
    if not folders:
        raise PushError(f"{run_dir}: no finished checkpoint to push")
    urls = _push({f: hub_repo_id(prefix, name) for name, f in folders.items()}, private, token)
    return {name: urls[f] for name, f in folders.items()}
