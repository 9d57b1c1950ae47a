#!/usr/bin/env bash
# The kernel's floor under benchmark (b) of docs/bench/run.sh (docs/benchmarks.md, issue 16):
# statloop run natively, under a guard-like seccomp filter, under a Landlock ruleset like a
# run's, and under both (fixtures/bench/floor.c), with no shim at all. Prints a Markdown table
# of medians, ratios to none (medians over rounds, each round running every mode once) and ns
# added per iteration.
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
# Rounds: each round runs every mode once, so the VM's drift over the minutes this takes hits
# every mode alike (one hyperfine call per mode made the later modes look dearer: session 17's
# table rose with the order of its rows). Ratios are medians over rounds of a mode's run
# against `none`'s run in the same round.
hyperfine -N -w 3 -r 1 "${cmds[@]}" >/dev/null 2>&1
for r in $(seq "$RUNS"); do
    hyperfine -N -r 1 "${cmds[@]}" --export-json "floor.$r.json" >/dev/null 2>&1
done
python3 - "$N" floor.*.json <<'PY'
import collections, json, statistics, sys
n = int(sys.argv[1])
times, ratios = collections.defaultdict(list), collections.defaultdict(list)
order = []
for f in sys.argv[2:]:
    r = json.load(open(f))["results"]
    base = r[0]["median"]
    for x in r:
        mode = x["command"].split()[1]
        if mode not in order:
            order.append(mode)
        times[mode].append(x["median"])
        ratios[mode].append(x["median"] / base)
print("| kernel-side | (b) median | ratio | ns added per iteration |")
print("|---|---:|---:|---:|")
for mode in order:
    m, q = statistics.median(times[mode]), statistics.median(ratios[mode])
    base = statistics.median(times["none"])
    print(f"| {mode} | {m * 1000:.0f} ms | {q:.2f}× | {(q - 1) * base / n * 1e9:.0f} |")
PY
