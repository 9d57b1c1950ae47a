#!/usr/bin/env bash
# Run-time benchmarks for docs/benchmarks.md: `capsule run` beside native, proot, fakechroot
# and bwrap on (a) start-up of /bin/true, (b) 200k × stat+open+close on files that exist only
# inside the capsule (fixtures/bench/statloop.c), (c) python3 importing json, email,
# http.client and asyncio. Prints a Markdown section.
#
#   bash docs/bench/run.sh       # START_RUNS=50 for (a), RUNS=41 for (b), PY_RUNS=41 for (c),
#                                # N=200000, PROOT_DIV=100 (proot runs N/100 iterations of (b),
#                                # time scaled up), ROUNDS=0 (one round per run: each round
#                                # runs every tool once; ROUNDS=k groups the runs in k rounds)
#   BASE_CAP=DIR/target/release/capsule BASE_LABEL=REV bash docs/bench/run.sh
#                                # adds a column for another build of capsule (its shim beside
#                                # it), e.g. the revision a target was measured on, built in a
#                                # worktree: `git worktree add DIR REV && (cd DIR && cargo build
#                                # --release -p capsule-cli -p capsule-shim)`
#
# Besides the tools, the column `kernel-floor` runs each workload natively under the kernel-side
# confinement every capsule run has, without the shim or any capsule code
# (fixtures/bench/floor.c seccomp+args+landlock: a guard-like filter that tests openat's flags,
# and a Landlock ruleset handling the rights that change the filesystem): what the kernel
# alone adds, in the same rounds as the capsule.
#
# Run counts are high because single runs of (b) and (c) spread by −15…+40 % on this VM kind,
# native included (python3 here is bimodal, ~75 or ~100 ms, whatever the tool), which would
# swamp a 10 % target with 7 runs; ratios pair each run with native's run of the same round
# (see `summary`) so that the drift between rounds cancels.
#
# Every tool sees the same ~50-file tree at /opt/benchtree, which is not on the host:
#   native      the staging copy itself, no interposition: `statloop opt/benchtree N` run in
#               STAGE, so the kernel walks the same 3 components as for /opt/benchtree/FILE
#               (the absolute STAGE path, 3 components longer, made native ~20 % slower here)
#   capsule     capsule --store S run benchtree --entry PROG -- ARGS   (the tree is in the capsule)
#   proot       proot -b STAGE/opt/benchtree:/opt/benchtree PROG ARGS
#   fakechroot  env LD_PRELOAD=libfakechroot.so FAKECHROOT_BASE=FROOT
#               FAKECHROOT_EXCLUDE_PATH=/dev:/proc:/sys PROG ARGS, where FROOT holds a copy of
#               the tree at opt/benchtree and a symlink to every other host top-level entry
#               (and /opt entry): what `fakechroot chroot FROOT PROG` ends up exec'ing, less the
#               wrapper script and chroot.fakechroot, plus one `env` exec
#   bwrap       bwrap --bind / / --tmpfs /opt --bind /opt/X /opt/X (each host /opt entry)
#               --bind STAGE/opt/benchtree /opt/benchtree PROG ARGS (a tmpfs /opt provides the
#               mount point without creating /opt/benchtree on the host)
# Timing is hyperfine (-N: no shell; medians from --export-json), else (or with NO_HYPERFINE=1)
# bash's $EPOCHREALTIME around each command.
# All tools are measured in one invocation, so the ratios compare like with like.
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNS=${RUNS:-41}
START_RUNS=${START_RUNS:-50}
PY_RUNS=${PY_RUNS:-41}
ROUNDS=${ROUNDS:-0}
PROOT_DIV=${PROOT_DIV:-100}
N=${N:-200000}
PY=/usr/bin/python3 # not whatever python3 is first on PATH (a pyenv shim is a shell script)

notes=()
missing=()
for pair in proot:proot fakechroot:fakechroot bwrap:bubblewrap hyperfine:hyperfine; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
done
if [ ${#missing[@]} -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null 2>&1 ||
        echo "run.sh: apt-get install ${missing[*]} failed; skipping what is still missing" >&2
fi
have() { command -v "$1" >/dev/null 2>&1; }
use_hyperfine() { [ -z "${NO_HYPERFINE:-}" ] && have hyperfine; }

# --- the capsule: ~50 small files under /opt/benchtree, captured from a staging root --------
. docs/bench/benchtree.sh

# --- each tool's command prefix -------------------------------------------------------------
declare -A PRE
# capsule: a repeated run, started from its launch plan (the warm-up runs write it); capsule-prep:
# the same run prepared in full, as a first run is (`-q` before the verb is a command line the
# front end does not read, so it goes to capsule-cli, which prepares; -q changes nothing in a run).
order=(native capsule capsule-prep)
PRE[native]=""
PRE[capsule]="$CAP --store $S run benchtree --entry"
PRE[capsule-prep]="$CAP -q --store $S run benchtree --entry"
if have proot; then
    order+=(proot)
    PRE[proot]="proot -b $TREE:/opt/benchtree"
else notes+=("proot: not installed, column skipped"); fi
FCLIB=$(find /usr/lib -name libfakechroot.so -path '*fakechroot*' 2>/dev/null | head -n1 || true)
if [ -n "$FCLIB" ]; then
    FROOT=$work/froot
    mkdir -p "$FROOT/opt"
    for e in /*; do
        case $e in /opt | /lost+found) ;; *) ln -s "$e" "$FROOT/${e#/}" ;; esac
    done
    for e in /opt/*; do [ -e "$e" ] && ln -s "$e" "$FROOT/opt/"; done
    cp -a "$TREE" "$FROOT/opt/benchtree"
    order+=(fakechroot)
    PRE[fakechroot]="env LD_PRELOAD=$FCLIB FAKECHROOT_BASE=$FROOT FAKECHROOT_EXCLUDE_PATH=/dev:/proc:/sys"
else notes+=("fakechroot: not installed, column skipped"); fi
if have bwrap && bwrap --bind / / /bin/true 2>/dev/null; then
    b="bwrap --bind / / --tmpfs /opt"
    for e in /opt/*; do [ -e "$e" ] && b+=" --bind $e $e"; done
    order+=(bwrap)
    PRE[bwrap]="$b --bind $TREE /opt/benchtree"
else notes+=("bwrap: not installed or no user namespaces here, column skipped"); fi
cc -O2 -o "$work/floor" fixtures/bench/floor.c
order+=(kernel-floor)
PRE[kernel-floor]="$work/floor seccomp+args+landlock"
if [ -n "${BASE_CAP:-}" ]; then
    # Its own store, captured by that build from a staging root holding the same tree.
    [ -x "$BASE_CAP" ] || { echo "run.sh: BASE_CAP=$BASE_CAP is not an executable" >&2; exit 1; }
    mkdir -p "$work/base-stage/opt"
    # Builds before session 12 name the staging root --base.
    flag=--root
    "$BASE_CAP" capture snapshot begin --help 2>/dev/null | grep -q -- '--root <' || flag=--base
    "$BASE_CAP" --store "$work/base-store" -q capture snapshot begin "$flag" "$work/base-stage" --roots /opt
    cp -a "$TREE" "$work/base-stage/opt/benchtree"
    "$BASE_CAP" --store "$work/base-store" -q capture snapshot end benchtree
    order+=(capsule-base)
    PRE[capsule-base]="$BASE_CAP --store $work/base-store run benchtree --entry"
fi

# The command line of workload W ("a", "b", "c") under tool T, as one string (no spaces in
# any path we create: mktemp -d makes /tmp/tmp.XXXXXXXXXX). (b) runs N iterations, or $3.
cmdline() {
    local t=$1 w=$2 n=${3:-$(iters "$1")} prog args
    case $w in
        a) prog=/bin/true args="" ;;
        b) prog=$LOOP args="/opt/benchtree $n" ;;
        c) prog=$PY args="-c 'import json, email, http.client, asyncio'" ;;
    esac
    case $t in
        native) [ "$w" = b ] && args="opt/benchtree $n"; echo "$prog $args" ;;
        kernel-floor) [ "$w" = b ] && args="opt/benchtree $n"; echo "${PRE[$t]} $prog $args" ;;
        capsule | capsule-prep | capsule-base) echo "${PRE[$t]} $prog${args:+ -- $args}" ;;
        *) echo "${PRE[$t]} $prog $args" ;;
    esac
}
# (b) iterations per tool: proot traces every call (~0.1–0.6 ms per iteration here, depending
# on where the scheduler puts tracer and tracee), so it runs N / PROOT_DIV and its time is
# scaled back up; the loop repeats one identical iteration, so time is linear in N.
iters() { if [ "$1" = proot ]; then echo $((N / PROOT_DIV)); else echo "$N"; fi; }

# Check every tool first: the workload must run and (b) must print what native prints.
cd "$STAGE" # from here on: native (b) names the tree relative to the staging root
want=$("$LOOP" "$TREE" 1000)
for t in "${order[@]}"; do
    got=$(eval "$(cmdline "$t" b 1000)" 2>&1) || true
    if [ "$got" != "$want" ]; then
        echo "run.sh: $t: statloop printed '$got', native '$want'" >&2
        exit 1
    fi
    eval "$(cmdline "$t" c)" >/dev/null || { echo "run.sh: $t: python3 failed" >&2; exit 1; }
    eval "$(cmdline "$t" a)" || { echo "run.sh: $t: /bin/true failed" >&2; exit 1; }
done

# split_runs RUNS: "ROUNDS PER_ROUND" (RUNS rounds of 1 unless $ROUNDS says fewer; at least
# RUNS runs in all).
split_runs() {
    local rounds=$ROUNDS
    { [ "$rounds" = 0 ] || [ "$rounds" -gt "$1" ]; } && rounds=$1
    echo "$rounds $(( ($1 + rounds - 1) / rounds ))"
}
total_runs() { local r p; read -r r p < <(split_runs "$1"); echo $((r * p)); }

# measure W RUNS: time workload W under every tool in $order, RUNS times each, into
# $work/W.times ("ROUND TOOL MICROSECONDS" lines). The runs are taken in rounds that cycle
# through the tools (by default one run of each tool per round), so a slow spell on the shared
# VM hits every tool alike rather than whichever ran during it.
measure() {
    local w=$1 runs=$2 t r rounds per
    read -r rounds per < <(split_runs "$runs")
    if use_hyperfine; then
        local args=() warm=2
        [ "$w" = a ] && warm=10
        for t in "${order[@]}"; do args+=(-n "$t" "$(cmdline "$t" "$w")"); done
        for r in $(seq "$rounds"); do
            hyperfine -N --style none --warmup "$([ "$r" = 1 ] && echo "$warm" || echo 0)" \
                --runs "$per" --export-json "$work/$w.$r.json" "${args[@]}" >/dev/null 2>&1 ||
                { echo "run.sh: hyperfine failed on workload ($w)" >&2; exit 1; }
        done
        python3 -c 'import json, sys
for r, f in enumerate(sys.argv[1:]):
    for res in json.load(open(f))["results"]:
        for t in res["times"]:
            print(r, res["command"], round(t * 1e6))' "$work/$w".*.json >"$work/$w.times"
    else
        # $EPOCHREALTIME is a bash builtin, so no fork is timed besides the command's own.
        local i s e line
        for t in "${order[@]}"; do eval "$(cmdline "$t" "$w")" >/dev/null 2>&1 || true; done
        for r in $(seq "$rounds"); do
            for t in "${order[@]}"; do
                line=$(cmdline "$t" "$w")
                for i in $(seq "$per"); do
                    s=${EPOCHREALTIME/./}
                    eval "$line" >/dev/null 2>&1
                    e=${EPOCHREALTIME/./}
                    echo "$r $t $((e - s))"
                done
            done
        done >"$work/$w.times"
    fi
}

# summary W SCALE: one line per tool in $order: the median time (µs) over all runs, then the
# medians over rounds of (tool's time / native's time in the same round) and of (tool − native).
# Pairing a tool's run with native's run of the same round, seconds apart, cancels the VM's
# drift between rounds (native alone spreads ±25 % within a minute here) out of the ratio.
# SCALE: "TOOL=K ..." multiplies a tool's times by K first (proot's shorter (b) loop).
summary() {
    python3 -c 'import collections, statistics, sys
order, scale = sys.argv[2].split(), dict(kv.split("=") for kv in sys.argv[3].split())
t = collections.defaultdict(lambda: collections.defaultdict(list))
for line in open(sys.argv[1]):
    r, tool, us = line.split()
    t[tool][r].append(int(us) * int(scale.get(tool, 1)))
for tool in order:
    mine = [x for r in t[tool] for x in t[tool][r]]
    pairs = [(x, y) for r in t[tool] for x, y in zip(t[tool][r], t["native"][r])]
    print(round(statistics.median(mine)), "%.4f" % statistics.median(x / y for x, y in pairs),
          round(statistics.median(x - y for x, y in pairs)))' "$work/$1.times" "${order[*]}" "$2"
}

declare -A A B C RB RC DA
measure a "$START_RUNS"
measure b "$RUNS"
measure c "$PY_RUNS"
summary a "" >"$work/a.sum"
summary b "proot=$PROOT_DIV" >"$work/b.sum"
summary c "" >"$work/c.sum"
i=0; while read -r m _ d; do A[${order[i]}]=$m; DA[${order[i]}]=$d; i=$((i + 1)); done <"$work/a.sum"
i=0; while read -r m q _; do B[${order[i]}]=$m; RB[${order[i]}]=$q; i=$((i + 1)); done <"$work/b.sum"
i=0; while read -r m q _; do C[${order[i]}]=$m; RC[${order[i]}]=$q; i=$((i + 1)); done <"$work/c.sum"

ms() { awk -v t="$1" 'BEGIN { if (t >= 1e7) printf "%.0f s", t / 1e6; else printf (t < 10000 ? "%.2f ms" : "%.0f ms"), t / 1000 }'; }
delta() { awk -v d="$1" 'BEGIN { printf "%+.2f ms", d / 1000 }'; }
ratio() { awk -v q="$1" 'BEGIN { printf (q >= 100 ? "%.0f×" : "%.2f×"), q }'; }
timer=$(use_hyperfine && echo "hyperfine -N" || echo "\$EPOCHREALTIME")

cat <<MD
### Running: start-up, path calls, python3 ($(date -u +%Y-%m-%d), $(nproc) cores, $timer, medians of $(total_runs "$START_RUNS") / $(total_runs "$RUNS") / $(total_runs "$PY_RUNS") runs)

(a) \`/bin/true\`; (b) \`statloop /opt/benchtree $N\` ([fixtures/bench/statloop.c](../fixtures/bench/statloop.c)):
$N × stat+open+close cycling over 50 small files of a tree that exists only inside the
capsule (or the tool's bind or chroot of it); (c) \`$PY -c 'import json, email, http.client, asyncio'\`.
What each tool runs (STAGE: the staging root the capsule was captured from):

- native: the program itself; (b) as \`statloop opt/benchtree $N\` in STAGE (same path depth)
- capsule: \`capsule --store S run benchtree --entry PROG -- ARGS\`, repeated: started from its launch plan
- capsule-prep: the same with \`-q\` before the verb, which the front end leaves to \`capsule-cli\`: prepared in full, as a first run is
- proot: \`proot -b STAGE/opt/benchtree:/opt/benchtree PROG ARGS\`$([ "$PROOT_DIV" -gt 1 ] && echo "; (b) runs $(( N / PROOT_DIV )) iterations, time ×$PROOT_DIV")
- fakechroot: \`env LD_PRELOAD=libfakechroot.so FAKECHROOT_BASE=FROOT FAKECHROOT_EXCLUDE_PATH=/dev:/proc:/sys PROG ARGS\`,
  FROOT holding the tree at opt/benchtree and a symlink to every other host top-level entry
  (what \`fakechroot chroot FROOT\` sets up, without its wrapper script; one \`env\` exec more)
- bwrap: \`bwrap --bind / / --tmpfs /opt --bind /opt/X /opt/X… --bind STAGE/opt/benchtree /opt/benchtree PROG ARGS\`
- kernel-floor: \`floor seccomp+args+landlock PROG ARGS\` ([fixtures/bench/floor.c](../fixtures/bench/floor.c)), run as
  native is: the kernel-side confinement of every capsule run (a guard-like seccomp filter
  testing \`openat\`'s flags, a Landlock ruleset handling the rights that change the filesystem),
  with no shim and no capsule code
$([ -n "${BASE_CAP:-}" ] && echo "- capsule-base: as capsule, with the build of ${BASE_LABEL:-another revision}, from its own store holding the same tree")

Times are medians over all runs; Δ and ratios are medians over rounds of the tool's run
against native's run in the same round (see the script).

| tool | (a) start-up | Δ to native | (b) stat+open+close | ratio | ns per iteration | (c) python3 imports | ratio |
|---|---:|---:|---:|---:|---:|---:|---:|
MD
for t in "${order[@]}"; do
    d=$([ "$t" = native ] && echo "—" || delta "${DA[$t]}")
    per=$(awk -v t="${B[$t]}" -v n="$N" 'BEGIN { printf "%.0f", t * 1000 / n }')
    echo "| $t | $(ms "${A[$t]}") | $d | $(ms "${B[$t]}") | $(ratio "${RB[$t]}") | $per | $(ms "${C[$t]}") | $(ratio "${RC[$t]}") |"
done
met() { if awk "BEGIN { exit !($1) }"; then echo "met"; else echo "**not met**"; fi; }
cat <<MD

Targets for \`capsule run\`: start-up within 2 ms of native: $(met "${DA[capsule]} <= 2000") ($(delta "${DA[capsule]}"));
(b) within 1.10× of native: $(met "${RB[capsule]} <= 1.10") ($(ratio "${RB[capsule]}"); ratio of the medians $(awk -v a="${B[capsule]}" -v b="${B[native]}" 'BEGIN { printf "%.2f×", a / b }'));
(c) within 1.10× of native: $(met "${RC[capsule]} <= 1.10") ($(ratio "${RC[capsule]}"); ratio of the medians $(awk -v a="${C[capsule]}" -v b="${C[native]}" 'BEGIN { printf "%.2f×", a / b }')).
MD
rel() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f×", a / b }'; }
cat <<MD

The kernel alone (kernel-floor, no capsule code): (a) $(delta "${DA[kernel-floor]}"), (b) $(ratio "${RB[kernel-floor]}"),
(c) $(ratio "${RC[kernel-floor]}"); the capsule's own part of (b) on top of it: $(rel "${RB[capsule]}" "${RB[kernel-floor]}").
MD
if [ -n "${BASE_CAP:-}" ]; then
    cat <<MD
Against capsule-base (${BASE_LABEL:-another build}) in the same rounds: (a) $(delta "$(( DA[capsule] - DA[capsule-base] ))"),
(b) $(rel "${RB[capsule]}" "${RB[capsule-base]}"), (c) $(rel "${RC[capsule]}" "${RC[capsule-base]}").
MD
fi
for note in "${notes[@]}"; do echo; echo "Note: $note."; done
