"""Sampled mutation testing over trainers/, harness/ and evals/.

mutmut (2.x) makes the mutants; each is tested only against the tests that run its line, fastest
first, stopping at the first failure. Three steps:

    python tools/mutation/mutation_sample.py map             # the suite under coverage: line -> tests that run it
    python tools/mutation/mutation_sample.py run --n 200     # a uniform random sample of all mutants, 2 workers
    python tools/mutation/mutation_sample.py report          # killed / survived, the rate and its 95% interval

Every mutant of every module is enumerated and a seeded uniform sample is tested, so the kill
rate estimates the whole population's (Wilson interval). Mutants run in detached git worktrees of
the commit the map was made at, imported as selm_bench.* through a folder of links, so the
checkout is never touched. A mutant whose line no test runs survives; one whose tests time out
counts as killed (reported apart); one whose covering tests were cut at --budget and survived is
marked `partial`. Survivors get a verdict by hand in --verdicts (JSON: {id: "equivalent: why",
"docs: why" or "gap: why"}), and the report gives the rate over the mutants that change behaviour.
Needs: pip install 'mutmut<3' 'coverage>=7.10'.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
PACKAGES = ("trainers", "harness", "evals")
WORK = Path(os.environ.get("SELM_MUT_DIR", "/tmp/selm-mut-map"))


def _commit() -> str:
    return subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()


def build_map(args: argparse.Namespace) -> None:
    """Run the tests under coverage with one context per test; write map.json {file: {line: [tests]}}.
    With --merge: run only the given tests and fold them into the existing map (replacing their old
    entries), provided the packages are unchanged since the map's commit; the map moves to HEAD."""
    if subprocess.run(["git", "-C", str(REPO), "diff", "--quiet", "HEAD", "--", *PACKAGES]).returncode:
        sys.exit("error: trainers/, harness/ or evals/ differ from HEAD; commit first (mutants run on HEAD)")
    base = None
    if args.merge:
        base = json.loads((WORK / "map.json").read_text())
        if subprocess.run(["git", "-C", str(REPO), "diff", "--quiet", base["commit"], "HEAD", "--", *PACKAGES]).returncode:
            sys.exit(f"error: the packages changed since the map's commit {base['commit'][:8]}: build a new map")
    work = WORK / "merge" if args.merge else WORK
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    rc = work / "main.ini"
    rc.write_text(f"[run]\ndata_file = {work / 'coverage'}\nparallel = true\nsource_pkgs = selm_bench\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "SELM_MUT_DIR": str(work),
           "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    cmd = [sys.executable, "-m", "coverage", "run", f"--rcfile={rc}", "-m", "pytest", "-q", "-p", "mutation_contexts",
           "-p", "no:cacheprovider", *args.pytest_args]
    t0 = time.time()
    proc = subprocess.run(cmd, cwd=REPO, env=env)
    print(f"suite under coverage: exit {proc.returncode} in {time.time() - t0:.0f} s")
    subprocess.run([sys.executable, "-m", "coverage", "combine", f"--rcfile={rc}", "--keep", "-q"], cwd=REPO, env=env,
                   check=True)
    db = sqlite3.connect(work / "coverage")
    files = dict(db.execute("select id, path from file"))
    contexts = dict(db.execute("select id, context from context"))
    covered: dict[str, dict[int, set[str]]] = {}
    from coverage.numbits import numbits_to_nums

    for file_id, context_id, numbits in db.execute("select file_id, context_id, numbits from line_bits"):
        rel = os.path.relpath(files[file_id], REPO)
        test = contexts[context_id]
        if rel.split(os.sep)[0] not in PACKAGES or not test:
            continue
        for line in numbits_to_nums(numbits):
            covered.setdefault(rel, {}).setdefault(line, set()).add(test)
    durations: dict[str, float] = {}
    for row in (work / "durations.jsonl").read_text().splitlines():
        r = json.loads(row)
        durations[r["test"]] = max(durations.get(r["test"], 0.0), r["seconds"])
    if base is not None:  # the merged tests' old entries out, their new ones in
        for f, lines in base["lines"].items():
            for n, tests in lines.items():
                covered.setdefault(f, {}).setdefault(int(n), set()).update(t for t in tests if t not in durations)
        durations = {**{t: d for t, d in base["durations"].items() if t not in durations}, **durations}
    out = {"commit": _commit(), "suite_exit": proc.returncode if base is None else max(base["suite_exit"], proc.returncode),
           "durations": durations, "merged": (base or {}).get("merged", []) + (args.pytest_args if base else []),
           "lines": {f: {str(n): sorted(t) for n, t in lines.items()} for f, lines in covered.items()}}
    (WORK / "map.json").write_text(json.dumps(out))
    print(f"map: {len(covered)} files, {sum(len(v) for v in covered.values())} covered lines, {len(durations)} tests "
          f"-> {WORK / 'map.json'}")


def all_mutants(root: Path) -> list[dict]:
    """Every mutant mutmut makes in the packages: {id, file, line (1-based), index, source line}."""
    from mutmut import Context, list_mutations

    mutants = []
    for pkg in PACKAGES:
        for path in sorted((root / pkg).rglob("*.py")):
            rel = str(path.relative_to(root))
            for m in list_mutations(Context(filename=str(path))):
                mutants.append({"file": rel, "line": m.line_number + 1, "index": m.index, "text": m.line.strip(),
                                "id": f"{rel}:{m.line_number + 1}:{m.index}"})
    return mutants


def _mutated_source(root: Path, m: dict) -> str:
    from mutmut import Context, RelativeMutationID, mutate

    path = root / m["file"]
    mid = RelativeMutationID(line=path.read_text().split("\n")[m["line"] - 1], index=m["index"],
                             line_number=m["line"] - 1, filename=str(path))
    source, count = mutate(Context(filename=str(path), mutation_id=mid))
    if count != 1:
        raise RuntimeError(f"{m['id']}: {count} mutations applied")
    return source


def _worktree(commit: str, n: int) -> tuple[Path, Path]:
    """A detached worktree at `commit` and a folder of links that imports it as selm_bench."""
    wt, ns = Path(f"/tmp/selm-mut-w{n}"), Path(f"/tmp/selm-mut-w{n}.ns")
    if not wt.exists():
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "-q", "--detach", str(wt), commit], check=True)
    subprocess.run(["git", "-C", str(wt), "checkout", "-q", "--detach", "--force", commit], check=True)
    (ns / "selm_bench" / "results").mkdir(parents=True, exist_ok=True)
    for d in (*PACKAGES, "configs"):
        link = ns / "selm_bench" / d
        if not link.is_symlink():
            link.symlink_to(wt / d)
    ref = ns / "selm_bench" / "results" / "reference"
    if not ref.is_symlink():
        ref.symlink_to(wt / "results" / "reference")
    for cache in wt.rglob("__pycache__"):
        shutil.rmtree(cache)
    return wt, ns


def _env(ns: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ns), "HF_HUB_OFFLINE": "1", "PYTHONDONTWRITEBYTECODE": "1",
            "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def statement_line(path: Path, line: int) -> int:
    """The first line of the statement `line` is in: where coverage records a multi-line statement."""
    from coverage.parser import PythonParser

    parser = PythonParser(filename=str(path))
    parser.parse_source()
    return parser.first_line(line)


def import_time(path: Path, line: int) -> bool:
    """Whether `line` runs when its module is imported (module level, a class body, a def line with
    its decorators and defaults) rather than inside a function body. Coverage credits such a line
    only to the test that first imported the module in-process (and to tests' subprocesses), so its
    covering tests are taken as every test that runs any line of the module (they import it)."""
    import ast

    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            body = node.body if isinstance(node.body, list) else [node.body]
            if body[0].lineno <= line <= max(getattr(b, "end_lineno", b.lineno) for b in body):
                return False
    return True


def test_mutant(m: dict, wt: Path, ns: Path, cov: dict, budget: float) -> dict:
    lines = cov["lines"].get(m["file"], {})
    tests = lines.get(str(m["line"])) or lines.get(str(statement_line(wt / m["file"], m["line"]))) or []
    if import_time(wt / m["file"], m["line"]):
        tests = sorted({t for ts in lines.values() for t in ts})
    tests = sorted(tests, key=lambda t: cov["durations"].get(t, 60))
    if not tests:
        return {**m, "status": "survived", "reason": "no test runs this line", "tests": 0, "seconds": 0.0}
    chosen, total = [], 0.0
    for t in tests:
        if chosen and total + cov["durations"].get(t, 60) > budget:
            break
        chosen.append(t)
        total += cov["durations"].get(t, 60)
    path = wt / m["file"]
    original = path.read_text()
    path.write_text(_mutated_source(wt, m))
    t0 = time.time()
    try:
        proc = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *chosen], cwd=wt,
                              env=_env(ns), capture_output=True, text=True, timeout=max(120.0, 3 * total + 60))
        status = "killed" if proc.returncode else "survived"
        tail = (proc.stdout.strip().splitlines() or [""])[-1]
    except subprocess.TimeoutExpired:
        status, tail = "timeout", f"over {max(120.0, 3 * total + 60):.0f} s"
    finally:
        path.write_text(original)
    partial = status == "survived" and len(chosen) < len(tests)
    return {**m, "status": status, "partial": partial, "tests": len(chosen), "covering_tests": len(tests),
            "seconds": round(time.time() - t0, 1), "pytest": tail[-200:]}


def run(args: argparse.Namespace) -> None:
    cov = json.loads((WORK / "map.json").read_text())
    results_path = WORK / "results.jsonl"
    rows = [json.loads(r) for r in results_path.read_text().splitlines()] if results_path.exists() else []
    verdicts = json.loads(Path(args.verdicts).read_text()) if Path(args.verdicts).exists() else {}
    no_change = {k for k, v in verdicts.items() if v.startswith(("docs", "equivalent"))}  # nothing to learn again
    retest = {"uncovered": lambda r: r.get("tests") == 0, "partial": lambda r: bool(r.get("partial")) and r["id"] not in no_change,
              "import-time": lambda r: (r["status"] == "survived" and r["id"] not in no_change
                                        and import_time(REPO / r["file"], r["line"]))}
    done = {r["id"] for r in rows if not any(retest[k](r) for k in args.retest)}
    wt0, _ = _worktree(cov["commit"], 0)
    population = all_mutants(wt0)
    sample = random.Random(args.seed).sample(population, min(args.n, len(population)))
    todo = [m for m in sample if m["id"] not in done]
    if args.only_retest:  # leave the untested rest of the sample alone
        todo = [m for m in todo if m["id"] in {r["id"] for r in rows}]
    print(f"{len(population)} mutants in {', '.join(PACKAGES)} at {cov['commit'][:8]}; sample {len(sample)} "
          f"(seed {args.seed}), {len(todo)} to test", flush=True)
    (WORK / "population.json").write_text(json.dumps({"commit": cov["commit"], "count": len(population),
                                                      "seed": args.seed, "sample": [m["id"] for m in sample]}))
    trees = [_worktree(cov["commit"], i) for i in range(args.workers)]
    free = list(range(args.workers))

    def one(m: dict) -> dict:
        slot = free.pop()
        try:
            return test_mutant(m, *trees[slot], cov, args.budget)
        finally:
            free.append(slot)

    with ThreadPoolExecutor(args.workers) as pool:
        for r in pool.map(one, todo):
            with open(results_path, "a") as f:
                f.write(json.dumps(r) + "\n")
            print(f"{r['status']:8s} {r['seconds']:6.1f}s  {r['id']}  {r['text'][:70]}", flush=True)
    report(args)


def confirm(args: argparse.Namespace) -> None:
    """Each survivor judged "gap: <test node id> ..." applied to a worktree of HEAD (which has the new
    test) and run against that test: confirmed.jsonl says whether the new test kills it."""
    verdicts = json.loads(Path(args.verdicts).read_text())
    rows = {json.loads(r)["id"]: json.loads(r) for r in (WORK / "results.jsonl").read_text().splitlines()}
    wt, ns = _worktree(_commit(), 9)
    with open(WORK / "confirmed.jsonl", "a") as f:
        for mid, verdict in verdicts.items():
            test = verdict.split()[1] if verdict.startswith("gap: tests/") else None
            if test is None or mid not in rows:
                continue
            m, path = rows[mid], wt / rows[mid]["file"]
            original = path.read_text()
            lines = original.split("\n")
            if lines[m["line"] - 1].strip() != m["text"]:  # the file changed since the map: find the line by its text
                at = [n + 1 for n, line in enumerate(lines) if line.strip() == m["text"]]
                if len(at) != 1:
                    print(f"moved    {mid}: its line is {'not' if not at else 'not uniquely'} at HEAD; not confirmed", flush=True)
                    continue
                m = {**m, "line": at[0]}
            path.write_text(_mutated_source(wt, m))
            try:
                proc = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", test],
                                      cwd=wt, env=_env(ns), capture_output=True, text=True, timeout=900)
            finally:
                path.write_text(original)
            f.write(json.dumps({"id": mid, "test": test, "killed": proc.returncode != 0, "commit": _commit()}) + "\n")
            print(f"{'killed' if proc.returncode else 'SURVIVED':8s} {mid} by {test}", flush=True)


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return 0.0, 1.0
    p = k / n
    mid, half = (p + z * z / (2 * n)) / (1 + z * z / n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return mid - half, mid + half


def report(args: argparse.Namespace) -> None:
    rows = [json.loads(r) for r in (WORK / "results.jsonl").read_text().splitlines()]
    sample = set(json.loads((WORK / "population.json").read_text())["sample"])
    rows = [r for r in {r["id"]: r for r in rows}.values() if r["id"] in sample]  # the latest result per mutant
    verdicts = json.loads(Path(args.verdicts).read_text()) if args.verdicts and Path(args.verdicts).exists() else {}
    killed = [r for r in rows if r["status"] == "killed"]
    timeouts = [r for r in rows if r["status"] == "timeout"]
    survived = [r for r in rows if r["status"] == "survived"]
    # "equivalent: why" (no observable change) and "docs: why" (only --help or description text) do not
    # change behaviour; "gap: test" marks a real survivor (and the test written for it since).
    equivalent = [r for r in survived if str(verdicts.get(r["id"], "")).startswith(("equivalent", "docs"))]
    detected, behaviour = len(killed) + len(timeouts), len(rows) - len(equivalent)
    lo, hi = wilson(detected, behaviour)
    print(f"tested {len(rows)} of {len(sample)} sampled mutants: killed {len(killed)}, timeout {len(timeouts)}, "
          f"survived {len(survived)} ({len(equivalent)} judged not to change behaviour: equivalent or docs only)")
    print(f"kill rate over behaviour-changing mutants: {detected}/{behaviour} = {detected / max(1, behaviour):.1%} "
          f"(95% Wilson interval {lo:.1%} - {hi:.1%}); over all: {detected}/{len(rows)} = {detected / max(1, len(rows)):.1%}")
    by_pkg: dict[str, list[int]] = {}
    for r in rows:
        if r in equivalent:
            continue
        k = by_pkg.setdefault(r["file"].split("/")[0], [0, 0])
        k[0] += r["status"] != "survived"
        k[1] += 1
    print("  " + ", ".join(f"{p}: {k}/{n}" for p, (k, n) in sorted(by_pkg.items())))
    confirmed_path = WORK / "confirmed.jsonl"
    confirmed = {json.loads(c)["id"]: json.loads(c)["killed"] for c in confirmed_path.read_text().splitlines()} \
        if confirmed_path.exists() else {}
    now_killed = sum(1 for r in survived if confirmed.get(r["id"]) and r not in equivalent)
    if confirmed:
        print(f"after this session's new tests (`confirm`): {now_killed} more killed -> {detected + now_killed}/{behaviour}"
              f" = {(detected + now_killed) / max(1, behaviour):.1%} of this sample (optimistic: the tests were written "
              "for these survivors)")
    for r in sorted(survived, key=lambda r: r["id"]):
        mark = verdicts.get(r["id"], "unjudged") + (" [confirmed killed]" if confirmed.get(r["id"]) else "")
        print(f"  survived {r['id']}{' (partial)' if r.get('partial') else ''}: {r['text'][:80]}  [{mark}]")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("map", help="run the suite under coverage with one context per test")
    m.add_argument("pytest_args", nargs="*", default=["tests"])
    m.add_argument("--merge", action="store_true", help="run only PYTEST_ARGS and fold them into the existing map")
    r = sub.add_parser("run", help="test a seeded random sample of mutants")
    r.add_argument("--n", type=int, default=200)
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--workers", type=int, default=2)
    r.add_argument("--retest", action="append", default=[], choices=["uncovered", "partial", "import-time"],
                   help="test again the survivors no test ran (older maps) or whose tests were cut at --budget")
    r.add_argument("--only-retest", action="store_true", help="with --retest: test nothing not tested before")
    r.add_argument("--budget", type=float, default=300.0, help="seconds of covering tests (their map-run durations) per mutant")
    r.add_argument("--verdicts", default=str(HERE / "mutation_verdicts.json"))
    c = sub.add_parser("confirm", help="run the survivors judged 'gap: <test>' against that test at HEAD")
    c.add_argument("--verdicts", default=str(HERE / "mutation_verdicts.json"))
    p = sub.add_parser("report", help="summarise results.jsonl")
    p.add_argument("--verdicts", default=str(HERE / "mutation_verdicts.json"))
    args = ap.parse_args()
    {"map": build_map, "run": run, "confirm": confirm, "report": report}[args.cmd](args)


if __name__ == "__main__":
    main()
