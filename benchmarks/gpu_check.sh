#!/usr/bin/env bash
# One-shot CUDA check of the tiny default, meant for a lent single-GPU machine (no network).
#
#   bash benchmarks/gpu_check.sh            # from the repository root
#
# (0) installs the carried wheels in .whl/ (if any) into /tmp/site, prints the GPU and versions,
#     stops early when CUDA is not available;
# (1) train-and-eval, tiny-world suite, hf backend, device=auto (the tiny default's methods);
# (2) the same with the vllm backend, when vllm imports (else skipped);
# (3) sft,dpo,selm with one online iteration, every training stage under `accelerate launch`
#     with one process (configs/accelerate/single_gpu.yaml);
# (4) sft,dpo under DeepSpeed ZeRO-3 with one process (configs/accelerate/zero3.yaml as shipped,
#     bf16), when deepspeed imports (else skipped, saying why): each checkpoint's train_info (ZeRO
#     stage, precision, parameters at load) and a from_pretrained load;
# (5) configs/zephyr-7b.yaml and (6) configs/llama-3-8b-instruct.yaml at micro scale on CUDA: the test
#     functions of tests/runs/test_micro_recipes.py themselves (its --set list and its checks of the records,
#     rows and leaderboard), with three of its settings changed for the GPU: device=cuda (not cpu), and
#     the recipe's own precision (bf16) and gradient checkpointing (its precision=fp32 and
#     gradient_checkpointing=false dropped); skipped, naming the missing module, where pytest,
#     sentencepiece, lm_eval or the micro model's tokenizer package (mistral_common; llama_models and
#     tiktoken) does not import. A dry run on a CPU machine (GPU_CHECK_ALLOW_CPU=1, .venv/bin first on
#     PATH) runs them exactly as the test does: STEPS="5 6" took 66 s and 87 s on 2 cores;
# (7) each run's per-stage durations (manifest.json) and its leaderboard (markdown).
#
# DeepSpeed on the device: it is pure Python (its ops compile when first used), so it travels as a
# py3-none-any wheel in .whl/ (gitignored: give the device tool carry: [".whl"]). PyPI has only its
# sdist, which step 0 does not install, so build the wheel from the installed version here:
#     V=$(.venv/bin/python -c 'import deepspeed; print(deepspeed.__version__)')   # 0.19.8 at the time of writing
#     .venv/bin/pip download "deepspeed==$V" --no-deps -d /tmp/ds        # deepspeed-$V.tar.gz
#     .venv/bin/pip wheel /tmp/ds/deepspeed-$V.tar.gz --no-deps --no-build-isolation -w .whl/
# (--no-build-isolation builds it against this venv's torch: no download of another torch). Where the
# device lacks its requirements (hjson, py-cpuinfo, msgpack, ninja, einops), step 4 prints the import
# error; `pip download hjson py-cpuinfo msgpack ninja einops --no-deps --only-binary=:all: -d .whl/` carries them.
# The micro recipes' packages travel the same way (`pip download mistral-common llama-models tiktoken
# sentencepiece --no-deps --only-binary=:all: --python-version <the device's> -d .whl/`).
#
# Steps are independent: a failing step prints "STEP n FAILED (rc)" and the script goes on;
# it exits non-zero at the end if any step failed.
# RUN (the run folders) defaults to /tmp/gpu-check, not under $OUT: checkpoints would be far more
# than the 8 files the device tool brings back. With OUT set, the leaderboards (csv), the manifests
# and the whole log go to $OUT under flat names (8 files at most: hf-, vllm-, accel-leaderboard.csv,
# hf-, vllm-, accel-, zero3-manifest.json, gpu-check.log; zero3's leaderboard is in the log).
# Per-step time limits (seconds, env): T_HF (default 200), T_VLLM (180), T_ACCEL (260), T_ZERO3 (150),
# T_RECIPE (200, each of 5 and 6), each cut to what is left of BUDGET (default 560 s from the start, 30 s
# kept for the summary), so the whole script fits a 600 s device call. STEPS (default "1 2 3 4") picks
# the runs, e.g. STEPS=4 bash benchmarks/gpu_check.sh for the ZeRO-3 check alone, and
# STEPS="4 5 6" for ZeRO-3 on one GPU and both recipes at micro scale.
# The micro recipes' runs come back in the log only (their manifests and leaderboards are printed).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
RUN=${RUN:-/tmp/gpu-check}
T_HF=${T_HF:-200}
T_VLLM=${T_VLLM:-180}
T_ACCEL=${T_ACCEL:-260}
T_ZERO3=${T_ZERO3:-150}
T_RECIPE=${T_RECIPE:-200}
STEPS=" ${STEPS:-1 2 3 4} "
BUDGET=${BUDGET:-560}
rm -rf "$RUN"
mkdir -p "$RUN"
LOG=${OUT:-$RUN}/gpu-check.log
if [ -n "${OUT:-}" ]; then mkdir -p "$OUT"; fi
exec > >(tee "$LOG") 2>&1
TEE_PID=$!

export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export TOKENIZERS_PARALLELISM=false PYTHONWARNINGS=ignore::SyntaxWarning  # fastchat's regex escapes

FAILED=()
step_failed() {  # step_failed N RC
    echo "STEP $1 FAILED ($2)"
    FAILED+=("$1")
}

# ---------------------------------------------------------------- (0) setup
echo "== STEP 0: setup ($(date -u +%FT%TZ))"
# The code imports as selm_bench.<folder> (pyproject's package-dir mapping); without an install,
# a namespace folder of links gives the same names.
mkdir -p /tmp/ns/selm_bench
for d in harness trainers evals configs results; do ln -sfn "$ROOT/$d" "/tmp/ns/selm_bench/$d"; done
if [ -d .whl ] && compgen -G ".whl/*.whl" >/dev/null; then
    t0=$SECONDS
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || { echo "STEP 0 FAILED: pip could not install .whl/*.whl"; exit 1; }
    export PYTHONPATH=/tmp/site:/tmp/ns
    echo "installed $(ls .whl/*.whl | wc -l) wheels into /tmp/site in $((SECONDS - t0)) s"
    if compgen -G ".whl/*.tar.gz" >/dev/null; then
        echo "WARNING: not installed (sdists; build wheels with pip wheel, see the top): $(ls .whl/*.tar.gz)"
    fi
else
    export PYTHONPATH=/tmp/ns${PYTHONPATH:+:$PYTHONPATH}
    echo "no .whl/: using the installed packages"
fi
nvidia-smi -L || echo "nvidia-smi: not available"
python3 - <<'EOF'
import importlib.metadata as md, os, sys
print("python", sys.version.split()[0], sys.executable)
for d in ("torch", "transformers", "accelerate", "trl", "datasets", "peft", "huggingface_hub", "tokenizers",
          "pyarrow", "fsspec", "pandas", "numpy", "typer", "click", "pydantic", "lm_eval", "fschat", "vllm", "deepspeed"):
    try:
        print(f"  {d:16s} {md.version(d)}")
    except md.PackageNotFoundError:
        print(f"  {d:16s} -")
import torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())
if not torch.cuda.is_available():
    if os.environ.get("GPU_CHECK_ALLOW_CPU") == "1":  # dry run of the script itself, on a CPU machine
        print("WARNING: no CUDA; GPU_CHECK_ALLOW_CPU=1, going on with the CPU")
        sys.exit(0)
    sys.exit("CUDA NOT AVAILABLE: torch.cuda.is_available() is False; this check needs a GPU")
print("device 0:", torch.cuda.get_device_name(0), "bf16", torch.cuda.is_bf16_supported())
EOF
SB="python3 -m selm_bench.harness.cli"
if ! python3 -c "import selm_bench.harness.cli, selm_bench.harness.core.registry as r; r.load_all(); import trl, datasets; from trl import DPOTrainer, SFTTrainer"; then
    step_failed 0 "imports"
fi

# run_cmd N NAME LIMIT CMD...: one timed command (its stdin is the caller's), its log in $RUN/NAME.log
run_cmd() {
    local n=$1 name=$2 limit=$3 rc=0 t0=$SECONDS left=$((BUDGET - 30 - SECONDS))
    shift 3
    [ "$left" -lt "$limit" ] && limit=$left
    if [ "$limit" -lt 20 ]; then
        echo
        echo "== STEP $n: $name: skipped, only $left s left of BUDGET=$BUDGET"
        step_failed "$n" "no time left"
        return 0
    fi
    echo
    echo "== STEP $n: $name ($(date -u +%TZ)): $*"
    set +e
    timeout -k 15 "$limit" "$@" 2>&1 | tee "$RUN/$name.log"
    rc=${PIPESTATUS[0]}
    set -e
    echo "-- STEP $n ($name): rc=$rc, wall $((SECONDS - t0)) s (limit $limit s)"
    if [ "$rc" -ne 0 ]; then
        [ "$rc" -eq 124 ] && echo "   (timed out after $limit s)"
        for f in "$RUN/$name"/logs/*.log; do  # accelerate workers' own output
            [ -f "$f" ] && { echo "--- tail of $f"; tail -n 25 "$f"; }
        done
        step_failed "$n" "$rc"
    fi
    return 0
}

# run_step N NAME LIMIT ARGS...: one timed train-and-eval into $RUN/NAME
run_step() {
    local n=$1 name=$2 limit=$3
    shift 3
    run_cmd "$n" "$name" "$limit" $SB train-and-eval --out "$RUN/$name" "$@"
}

# missing MODULE...: those that do not import here (empty when all do)
missing() {
    python3 -c 'import importlib.util as u, sys; print(" ".join(m for m in sys.argv[1:] if u.find_spec(m) is None))' "$@"
}

# ---------------------------------------------------------------- (1) hf backend
case $STEPS in
    *" 1 "*) run_step 1 hf "$T_HF" --suites tiny-world --set device=auto ;;
    *) echo "== STEP 1: hf: not in STEPS" ;;
esac

# ---------------------------------------------------------------- (2) vllm backend
echo
if [[ $STEPS != *" 2 "* ]]; then
    echo "== STEP 2: vllm: not in STEPS"
elif python3 -c 'import vllm' >/dev/null 2>&1; then
    run_step 2 vllm "$T_VLLM" --suites tiny-world --set device=auto \
        --set online.backend=vllm --set eval.backend=vllm
else
    echo "== STEP 2: vllm: not installed, skipped"
fi

# ---------------------------------------------------------------- (3) accelerate, 1 process
echo
case $STEPS in
    *" 3 "*) run_step 3 accel "$T_ACCEL" --suites tiny-world --methods sft,dpo,selm --set online.iterations=1 \
        --launcher accelerate --num-processes 1 --accelerate-config configs/accelerate/single_gpu.yaml ;;
    *) echo "== STEP 3: accel: not in STEPS" ;;
esac

# ---------------------------------------------------------------- (4) DeepSpeed ZeRO-3, 1 process
echo
if [[ $STEPS != *" 4 "* ]]; then
    echo "== STEP 4: zero3: not in STEPS"
elif ds_error=$(python3 -c 'import deepspeed' 2>&1 >/dev/null); then
    run_step 4 zero3 "$T_ZERO3" --suites tiny-world --methods sft,dpo --set device=auto \
        --launcher accelerate --num-processes 1 --accelerate-config configs/accelerate/zero3.yaml
    if [ -d "$RUN/zero3/checkpoints" ]; then
        python3 - "$RUN/zero3" <<'EOF' || step_failed 4 "zero3 checkpoints"
import json, sys
from pathlib import Path
from transformers import AutoModelForCausalLM
run, bad = Path(sys.argv[1]), []
for ckpt in ("sft", "dpo"):
    folder = run / "checkpoints" / ckpt / "model"
    info = json.loads((folder / "train_info.json").read_text())
    print(f"{ckpt}: {info['distributed_type']} zero_stage={info.get('zero_stage')} mixed_precision={info['mixed_precision']} "
          f"params_at_load={info.get('params_at_load')} strategy={json.loads((folder / 'spec.json').read_text())['train'].get('strategy')}")
    model = AutoModelForCausalLM.from_pretrained(folder)
    print(f"  loads: {sum(p.numel() for p in model.parameters())} parameters, {next(model.parameters()).dtype}")
    if info.get("zero_stage") != 3 or info["mixed_precision"] != "bf16":
        bad.append(ckpt)
sys.exit(f"not ZeRO-3 in bf16: {bad}" if bad else 0)
EOF
    fi
else
    echo "== STEP 4: zero3: skipped, deepspeed does not import: ${ds_error##*$'\n'} (carry it in .whl/, see the top)"
fi

# ---------------------------------------------------------------- (5, 6) the recipes at micro scale on CUDA
for recipe in "5 zephyr mistral_common" "6 llama3 llama_models tiktoken"; do
    set -- $recipe
    n=$1 name=$2
    shift 2
    echo
    if [[ $STEPS != *" $n "* ]]; then
        echo "== STEP $n: $name micro recipe: not in STEPS"
        continue
    fi
    gone=$(missing pytest sentencepiece lm_eval "$@")
    if [ -n "$gone" ]; then
        echo "== STEP $n: $name micro recipe: skipped, does not import: $gone (carry wheels in .whl/, see the top)"
        continue
    fi
    # tests/runs/test_micro_recipes.py's own test function (its inputs, --set list and checks), moved to CUDA
    run_cmd "$n" "$name" "$T_RECIPE" python3 - "$name" "$RUN/$name" <<'EOF'
import json, os, subprocess, sys, tempfile, types
from pathlib import Path
import torch
sys.path.insert(0, "tests")
import test_micro_recipes as t
from _real_models import build_micro_llama3, build_micro_mistral

recipe, base = sys.argv[1], Path(sys.argv[2])
dry = os.environ.get("GPU_CHECK_ALLOW_CPU") == "1" and not torch.cuda.is_available()  # the script's dry run: as the test
GPU = {} if dry else {"device=cpu": "device=cuda", "precision=fp32": None, "gradient_checkpointing=false": None}


def on_cuda(cmd, **kw):  # run_recipe's train-and-eval with the GPU's settings (the recipe's bf16 and checkpointing)
    new = []
    for a in cmd:
        if new and new[-1] == "--set" and a in GPU:
            new.pop()
            new += ["--set", GPU[a]] if GPU[a] else []
        else:
            new.append(a)
    print("$", " ".join(new[3:]), flush=True)
    res = subprocess.run(new, **kw)
    print(res.stderr[-3000:], flush=True)
    return res


t.subprocess = types.SimpleNamespace(run=on_cuda)
base.mkdir(parents=True)
fixture = t.recipe_inputs.__wrapped__(types.SimpleNamespace(mktemp=lambda n: Path(tempfile.mkdtemp(prefix=n, dir=base))))
inputs = next(fixture)
if recipe == "zephyr":
    t.test_zephyr_recipe_at_micro_scale(build_micro_mistral(base / "micro-mistral"), inputs, base)
else:
    t.test_llama3_recipe_at_micro_scale(build_micro_llama3(base / "micro-llama3"), inputs, base)
next(fixture, None)  # the fixture's teardown: the loopback judge stops
for f in sorted((base / "run" / "checkpoints").rglob("train_info.json")):
    i = json.loads(f.read_text())
    print(f.parent.parent.relative_to(base / "run" / "checkpoints"), i["device"], i["mixed_precision"],
          "gradient_checkpointing", i["gradient_checkpointing"])
    assert dry or (i["device"].startswith("cuda") and i["mixed_precision"] == "bf16"), i
print(f"micro {recipe} recipe on {'CPU (dry run)' if dry else 'CUDA'}: the checks of tests/runs/test_micro_recipes.py passed")
EOF
done

# ---------------------------------------------------------------- (7) summary
echo
echo "== STEP 7: summary"
for name in hf vllm accel zero3 zephyr/run llama3/run; do
    [ -d "$RUN/$name" ] || continue
    echo
    echo "### $name: stages ($RUN/$name/manifest.json)"
    python3 - "$RUN/$name/manifest.json" <<'EOF' || step_failed 7 "$name manifest"
import json, sys
try:
    stages = json.load(open(sys.argv[1])).get("stages", {})
except (OSError, ValueError) as e:
    sys.exit(f"no manifest: {e}")
w = max([len(k) for k in stages] + [5])
print(f"{'stage':{w}s}  {'status':8s}  {'seconds':>8s}")
total = 0.0
for k, v in stages.items():
    d = v.get("duration_s")
    total += d or 0.0
    print(f"{k:{w}s}  {str(v.get('status')):8s}  {'-' if d is None else format(d, '8.1f'):>8s}")
print(f"{'sum':{w}s}  {'':8s}  {total:8.1f}")
EOF
    echo
    echo "### $name: leaderboard"
    $SB leaderboard --results "$RUN/$name" --format markdown || step_failed 7 "$name leaderboard"
    if [ -n "${OUT:-}" ]; then
        if [ "$name" = zero3 ] || [[ $name == */* ]]; then
            :  # in the log only: 8 files at most come back
        elif [ -f "$RUN/$name/leaderboard.csv" ]; then
            cp "$RUN/$name/leaderboard.csv" "$OUT/$name-leaderboard.csv"
        else
            $SB leaderboard --results "$RUN/$name" --format csv >"$OUT/$name-leaderboard.csv" 2>/dev/null \
                || rm -f "$OUT/$name-leaderboard.csv"
        fi
        if [ -f "$RUN/$name/manifest.json" ] && [[ $name != */* ]]; then
            cp "$RUN/$name/manifest.json" "$OUT/$name-manifest.json"
        fi
    fi
done

echo
if [ ${#FAILED[@]} -gt 0 ]; then
    echo "GPU CHECK: FAILED steps: ${FAILED[*]} (total $SECONDS s)"
    status=1
else
    echo "GPU CHECK: all steps passed (total $SECONDS s)"
    status=0
fi
exec >/dev/null 2>&1  # let tee finish writing the log before the script returns
wait "$TEE_PID" 2>/dev/null || sleep 1
exit $status
