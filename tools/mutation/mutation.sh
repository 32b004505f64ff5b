#!/usr/bin/env bash
# Mutation testing with mutmut 2.x, outside the working tree: a detached git
# worktree of HEAD, imported as selm_bench.* through a namespace folder of links, so mutants never
# touch the checkout. Each module runs with the fast tests that cover it. Needs: pip install 'mutmut<3'.
# Usage: bash tools/mutation/mutation.sh [MODULE ...]   (default: the modules below)
# Prints killed / survived / timeout per module ("suspicious" = killed, slowly); `mutmut show ID` in $WT
# shows a mutant. Needs bash >= 4 (associative array).
set -euo pipefail
REPO=$(git -C "$(dirname "$0")/.." rev-parse --show-toplevel)
PY=${PY:-$REPO/.venv/bin/python}
WT=${WT:-/tmp/selm-mut}
NS=$WT.ns
declare -A TESTS=(
  [trainers/losses.py]="tests/training/test_losses.py"
  [trainers/online.py]="tests/runs/test_catches_bugs.py tests/runs/test_recipes.py -k 'pairs or y_ref or chunks or rank_stage or chunk_arithmetic or authors_pairing or ranker_failures or judge_ranker'"
  [evals/judges.py]="tests/evals/test_mt_bench.py tests/evals/test_alpaca_eval.py -k 'oracle or two_checkpoints'"
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
  # (after that error mutmut 2.5.1 does not exit: the timeout ends it)
  timeout "${MUTMUT_TIMEOUT:-5400}" nice -n 10 "$PY" -m mutmut run --paths-to-mutate "$mod" --tests-dir tests --no-progress \
    --runner "$PY -m pytest -x -q -p no:cacheprovider ${TESTS[$mod]}" > "$WT/mutmut-${mod//\//_}.log" 2>&1 || true
  # mutmut 2.5.1 can stop with "Attribute Mutant.line is required" part-way through a file; the mutants
  # it did not test are then taken from its cache (`mutmut show ID`), applied and tested here.
  git -C "$WT" checkout -q -- . && find "$WT" -name '*.py.bak' -delete
  RUNNER="$PY -m pytest -x -q -p no:cacheprovider ${TESTS[$mod]}" "$PY" - "$mod" <<'PYEOF'
import os, sqlite3, subprocess, sys
db = sqlite3.connect(".mutmut-cache")
for (mid,) in db.execute("select id from Mutant where status = 'untested' order by id").fetchall():
    show = subprocess.run([sys.executable, "-m", "mutmut", "show", str(mid)], capture_output=True, text=True).stdout.splitlines()
    heads = [line for line in show if line.startswith("--- ")]
    if not heads:
        continue
    path = heads[0].split()[1].removeprefix("a/")
    old = "\n".join(x[1:] for x in show if x.startswith("-") and not x.startswith("---")) + "\n"
    new = "\n".join(x[1:] for x in show if x.startswith("+") and not x.startswith("+++")) + "\n"
    src = open(path).read()
    if src.count(old) != 1:
        continue
    open(path, "w").write(src.replace(old, new))
    try:
        failed = subprocess.run(["nice", "-n", "10", "bash", "-c", os.environ["RUNNER"]], capture_output=True).returncode
    finally:
        open(path, "w").write(src)
    db.execute("update Mutant set status = ? where id = ?", ("ok_killed" if failed else "bad_survived", mid))
    db.commit()
rows = dict(db.execute("select status, count(*) from Mutant group by status"))
killed, survived = rows.get("ok_killed", 0) + rows.get("ok_suspicious", 0), rows.get("bad_survived", 0)
timeout, untested = rows.get("bad_timeout", 0), rows.get("untested", 0)
print(f"{sys.argv[1]}: {killed + survived + timeout + untested} mutants: killed {killed}, timeout {timeout}, "
      f"survived {survived}, untested {untested}")
for mid, in db.execute("select id from Mutant where status = 'bad_survived'"):
    print(f"  survived: mutmut show {mid}")
PYEOF
  git -C "$WT" checkout -q -- . && cp .mutmut-cache "$WT/mutmut-${mod//\//_}.cache"
done
