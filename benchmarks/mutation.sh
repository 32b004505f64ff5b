#!/usr/bin/env bash
# Mutation testing (issue 10, item 9) with mutmut 2.x, outside the working tree: a detached git
# worktree of HEAD, imported as selm_bench.* through a namespace folder of links, so mutants never
# touch the checkout. Each module runs with the fast tests that cover it. Needs: pip install 'mutmut<3'.
# Usage: bash benchmarks/mutation.sh [MODULE ...]   (default: the modules below)
# Prints killed / survived / timeout per module; `mutmut show ID` in $WT shows a mutant.
set -euo pipefail
REPO=$(git -C "$(dirname "$0")/.." rev-parse --show-toplevel)
PY=${PY:-$REPO/.venv/bin/python}
WT=${WT:-/tmp/selm-mut}
NS=$WT.ns
declare -A TESTS=(
  [trainers/losses.py]="tests/test_losses.py"
  [trainers/online.py]="tests/test_catches_bugs.py tests/test_recipes.py -k 'pairs or y_ref or chunks or chunk_arithmetic or authors_pairing or ranker_failures or judge_ranker'"
  [evals/judges.py]="tests/test_mt_bench.py tests/test_alpaca_eval.py -k 'oracle or two_checkpoints'"
)
MODULES=("$@")
[ ${#MODULES[@]} -gt 0 ] || MODULES=("${!TESTS[@]}")

[ -d "$WT" ] || git -C "$REPO" worktree add -q --detach "$WT" HEAD
git -C "$WT" checkout -q --detach "$(git -C "$REPO" rev-parse HEAD)"
mkdir -p "$NS/selm_bench/results"
for d in harness trainers evals configs; do ln -sfn "$WT/$d" "$NS/selm_bench/$d"; done
ln -sfn "$WT/results/reference" "$NS/selm_bench/results/reference"
export PYTHONPATH=$NS HF_HUB_OFFLINE=1
(cd "$WT" && "$PY" -c 'import selm_bench.trainers.losses as m, sys; sys.exit(0 if m.__file__.startswith(sys.argv[1]) else 1)' "$NS") \
  || { echo "error: selm_bench does not import from the worktree" >&2; exit 1; }

for mod in "${MODULES[@]}"; do
  cd "$WT" && rm -f .mutmut-cache
  nice -n 10 "$PY" -m mutmut run --paths-to-mutate "$mod" --tests-dir tests --no-progress \
    --runner "$PY -m pytest -x -q -p no:cacheprovider ${TESTS[$mod]}" > "$WT/mutmut-${mod//\//_}.log" 2>&1 || true
  "$PY" - "$mod" <<'PYEOF'
import sqlite3, sys
rows = dict(sqlite3.connect(".mutmut-cache").execute("select status, count(*) from Mutant group by status"))
killed, survived = rows.get("ok_killed", 0), rows.get("bad_survived", 0)
timeout, suspicious = rows.get("bad_timeout", 0), rows.get("ok_suspicious", 0)
total = killed + survived + timeout + suspicious
print(f"{sys.argv[1]}: {total} mutants, killed {killed} (+{timeout} timeout, {suspicious} suspicious), survived {survived}")
PYEOF
  git -C "$WT" checkout -q -- . && cp .mutmut-cache "$WT/mutmut-${mod//\//_}.cache"
done
