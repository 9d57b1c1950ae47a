#!/usr/bin/env bash
# Tier-2 benchmarks for docs/benchmarks.md: what a call answered by the seccomp supervisor
# costs beside native and proot, and how many of a dynamic program's path calls reach the
# supervisor with the shim's cookie on and off. Prints a Markdown section.
#
#   bash docs/bench/tier2.sh       # N=20000 iterations of stat, then of open+close, RUNS=11,
#                                  # PROOT_DIV=10 (proot runs N/10, time scaled up)
#
# The loop is fixtures/bench/statloop.c (modes stat and open) built with -static, so no shim
# can load: under `capsule run --seccomp always` each stat is emulated (process_vm_writev) and
# each open is performed by the supervisor and injected (ADDFD + SEND); close is not trapped. Native runs
# the same binary on the staging copy of the tree; proot binds it at /opt/benchtree.
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${N:-20000}
RUNS=${RUNS:-11}
PROOT_DIV=${PROOT_DIV:-10}
PY=/usr/bin/python3
have() { command -v "$1" >/dev/null 2>&1; }
have hyperfine || { echo "tier2.sh: needs hyperfine (apt-get install hyperfine)" >&2; exit 1; }

STATLOOP_CFLAGS=-static . docs/bench/benchtree.sh

cd "$STAGE"
want=$("$LOOP" opt/benchtree 1000)
got=$("$CAP" --store "$S" run benchtree --seccomp always --entry "$LOOP" -- /opt/benchtree 1000)
[ "$got" = "$want" ] || { echo "tier2.sh: capsule printed '$got', native '$want'" >&2; exit 1; }
# One hyperfine run per call kind: the loop doing only stat, then only open + close.
declare -A MED
for mode in stat open; do
    args=(-n native "$LOOP opt/benchtree $N $mode"
          -n capsule "$CAP --store $S run benchtree --seccomp always --entry $LOOP -- /opt/benchtree $N $mode")
    if have proot; then args+=(-n proot "proot -b $TREE:/opt/benchtree $LOOP /opt/benchtree $((N / PROOT_DIV)) $mode"); fi
    hyperfine -N --style none --warmup 2 --runs "$RUNS" --export-json "$work/$mode.json" "${args[@]}" >/dev/null 2>&1
    read -r -a med < <(python3 -c 'import json, statistics, sys
r = json.load(open(sys.argv[1]))["results"]
print(" ".join(str(statistics.median(x["times"]) * 1e6) for x in r))' "$work/$mode.json")
    MED[$mode.native]=${med[0]}
    MED[$mode.capsule]=${med[1]}
    [ ${#med[@]} -gt 2 ] && MED[$mode.proot]=$(awk -v t="${med[2]}" -v d="$PROOT_DIV" 'BEGIN { print t * d }')
done

# Fractions: the supervisor's counts (--stats) for python3 with the cookie on and off. With
# it off, the shim's calls and glibc's internal ones are all trapped (no dispatch windows
# without a cookie), but not the loader's before the shim armed the filter; so the total is
# counted natively with strace (the trapped kinds, fstat-style AT_EMPTY_PATH calls aside),
# or, without strace, taken from the cookie-off run.
PYARGS=(-c 'import json, email')
count() { "$CAP" --store "$S" run benchtree --seccomp always --stats "$@" --entry "$PY" -- "${PYARGS[@]}" 2>&1 >/dev/null |
    sed -n 's/.*supervisor): \([0-9]*\) served, \([0-9]*\) passed.*/\1 \2/p' | awk '{ print $1 + $2 }'; }
on=$(count); off=$(count --no-cookie)
total=$off
if have strace; then
    strace -f -qq -o "$work/strace" -e trace=open,openat,stat,lstat,newfstatat,statx,access,faccessat,faccessat2,readlink,readlinkat \
        "$PY" "${PYARGS[@]}"
    total=$(grep -vc AT_EMPTY_PATH "$work/strace")
fi

per() { awk -v t="$1" -v n="$N" 'BEGIN { printf "%.2f µs", t / n }'; }
extra() { awk -v t="$1" -v b="$2" -v n="$N" 'BEGIN { printf "%+.2f µs", (t - b) / n }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f×", a / b }'; }
pct() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f %%", 100 * a / b }'; }
cat <<MD
### Tier 2: calls answered by the supervisor ($(date -u +%Y-%m-%d), $(nproc) cores, hyperfine -N, medians of $RUNS runs)

$N iterations of one call on files inside the capsule, by a static binary (no shim: the
supervisor answers every stat, by \`process_vm_writev\`, and every open, by \`ADDFD\` + \`SEND\`;
close is not trapped). Per call, and beyond native:

| call | native | capsule, tier 2 | beyond native | proot | beyond native |
| --- | --- | --- | --- | --- | --- |
MD
for mode in stat open; do
    label=$([ "$mode" = stat ] && echo "stat" || echo "open + close")
    row="| $label | $(per "${MED[$mode.native]}") | $(per "${MED[$mode.capsule]}") | $(extra "${MED[$mode.capsule]}" "${MED[$mode.native]}")"
    if [ -n "${MED[$mode.proot]:-}" ]; then
        row+=" | $(per "${MED[$mode.proot]}") | $(extra "${MED[$mode.proot]}" "${MED[$mode.native]}") |"
    else
        row+=" | not installed | |"
    fi
    echo "$row"
done
cat <<MD

\`python3 -c 'import json, email'\` (dynamic, shim loaded) under \`--seccomp always\`: calls
that reached the supervisor, with the shim's cookie on (dispatch windows open too) and off.

| cookie | calls to the supervisor | fraction of path calls |
| --- | --- | --- |
| on | $on | $(pct "$on" "$total") |
| off | $off | $(pct "$off" "$total") |

All path calls of the trapped kinds, counted natively$(have strace && echo " with strace" || echo " (no strace: the cookie-off count)"): $total.
MD
