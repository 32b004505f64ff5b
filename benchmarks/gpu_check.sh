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
#     bf16), when deepspeed imports (else skipped; carry its wheel in .whl/): each checkpoint's
#     train_info (ZeRO stage, precision, parameters at load) and a from_pretrained load;
# (5) each run's per-stage durations (manifest.json) and its leaderboard (markdown).
#
# Steps are independent: a failing step prints "STEP n FAILED (rc)" and the script goes on;
# it exits non-zero at the end if any step failed.
# RUN (the run folders) defaults to /tmp/gpu-check, not under $OUT: checkpoints would be far more
# than the 8 files the device tool brings back. With OUT set, the leaderboards (csv), the manifests
# and the whole log go to $OUT under flat names (8 files at most: hf-, vllm-, accel-leaderboard.csv,
# hf-, vllm-, accel-, zero3-manifest.json, gpu-check.log; zero3's leaderboard is in the log).
# Per-step time limits (seconds, env): T_HF (default 200), T_VLLM (180), T_ACCEL (260), T_ZERO3 (150),
# each cut to what is left of BUDGET (default 560 s from the start, 30 s kept for the summary), so the
# whole script fits a 600 s device call. STEPS (default "1 2 3 4") picks the runs, e.g.
# STEPS=4 bash benchmarks/gpu_check.sh for the ZeRO-3 check alone.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
RUN=${RUN:-/tmp/gpu-check}
T_HF=${T_HF:-200}
T_VLLM=${T_VLLM:-180}
T_ACCEL=${T_ACCEL:-260}
T_ZERO3=${T_ZERO3:-150}
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
if ! python3 -c "import selm_bench.harness.cli, selm_bench.harness.registry as r; r.load_all(); import trl, datasets; from trl import DPOTrainer, SFTTrainer"; then
    step_failed 0 "imports"
fi

# run_step N NAME LIMIT ARGS...: one timed train-and-eval, its log in $RUN/NAME.log
run_step() {
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
    echo "== STEP $n: $name ($(date -u +%TZ)): $SB train-and-eval --out $RUN/$name $*"
    set +e
    timeout -k 15 "$limit" $SB train-and-eval --out "$RUN/$name" "$@" 2>&1 | tee "$RUN/$name.log"
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
elif python3 -c 'import deepspeed' >/dev/null 2>&1; then
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
    echo "== STEP 4: zero3: deepspeed not installed, skipped"
fi

# ---------------------------------------------------------------- (5) summary
echo
echo "== STEP 5: summary"
for name in hf vllm accel zero3; do
    [ -d "$RUN/$name" ] || continue
    echo
    echo "### $name: stages ($RUN/$name/manifest.json)"
    python3 - "$RUN/$name/manifest.json" <<'EOF' || step_failed 5 "$name manifest"
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
    $SB leaderboard --results "$RUN/$name" --format markdown || step_failed 5 "$name leaderboard"
    if [ -n "${OUT:-}" ]; then
        if [ "$name" = zero3 ]; then
            :  # its leaderboard is in the log: 8 files at most come back
        elif [ -f "$RUN/$name/leaderboard.csv" ]; then
            cp "$RUN/$name/leaderboard.csv" "$OUT/$name-leaderboard.csv"
        else
            $SB leaderboard --results "$RUN/$name" --format csv >"$OUT/$name-leaderboard.csv" 2>/dev/null \
                || rm -f "$OUT/$name-leaderboard.csv"
        fi
        if [ -f "$RUN/$name/manifest.json" ]; then
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
