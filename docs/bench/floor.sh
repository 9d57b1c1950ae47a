#!/usr/bin/env bash
# The kernel's floor under benchmark (b) of docs/bench/run.sh (docs/benchmarks.md, issue 16):
# statloop run natively, under a guard-like seccomp filter, under a Landlock ruleset like a
# run's, and under both (fixtures/bench/floor.c), with no shim at all. Prints a Markdown table
# of medians, ratios to none and ns added per iteration.
#
#   bash docs/bench/floor.sh          # RUNS=31 per mode, N=200000 iterations
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNS=${RUNS:-31}
N=${N:-200000}
command -v hyperfine >/dev/null || { echo "floor.sh: needs hyperfine" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cc -O2 -o "$work/statloop" fixtures/bench/statloop.c
cc -O2 -o "$work/floor" fixtures/bench/floor.c
mkdir -p "$work/opt/benchtree"
for i in $(seq 1 50); do echo "file $i" >"$work/opt/benchtree/f$i"; done
cd "$work"
cmds=()
for m in none seccomp seccomp+args landlock seccomp+landlock seccomp+args+landlock; do cmds+=("./floor $m ./statloop opt/benchtree $N"); done
hyperfine -N -w 3 -r "$RUNS" "${cmds[@]}" --export-json floor.json >/dev/null 2>&1
python3 - "$N" <<'PY'
import json, sys
n = int(sys.argv[1])
r = json.load(open("floor.json"))["results"]
base = r[0]["median"]
print("| kernel-side | (b) median | ratio | ns added per iteration |")
print("|---|---:|---:|---:|")
for x in r:
    m = x["median"]
    print(f"| {x['command'].split()[1]} | {m * 1000:.0f} ms | {m / base:.2f}× | {(m - base) / n * 1e9:.0f} |")
PY
