#!/usr/bin/env bash
# Issue 5 benchmark for docs/benchmarks.md: redis-benchmark against Debian's redis-server run
# natively and from a capsule (with its own address), in one run. Prints a Markdown section.
#
#   bash docs/bench/redis.sh     # REQUESTS=100000 per test, ROUNDS=5 (alternating), root + apt
#
# The capsule is made with `capsule capture install redis -- apt-get install -y redis-server`
# (the host is not changed). "Native" runs the very same redis-server binary straight from the
# capsule's materialised files (no shim, no supervisor) on 127.0.0.1:6390; the capsule run binds
# 0.0.0.0:6391, which its `--ip 127.0.0.2` turns into 127.0.0.2:6391. The client is the
# capsule's redis-benchmark, run natively against both, one after the other in each round.
set -euo pipefail
cd "$(dirname "$0")/../.."
REQUESTS=${REQUESTS:-100000}
ROUNDS=${ROUNDS:-5}
cargo build --release -q -p capsule-cli -p capsule-shim
CAP=$PWD/target/release/capsule
work=$(mktemp -d)
S=$work/store
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
"$CAP" --store "$S" -q capture install redis -- apt-get install -y -q redis-server >/dev/null 2>&1
# Materialise the programs (and, through their runs, their libraries) in the capsule's tree.
"$CAP" --store "$S" run redis -- redis-server --version >/dev/null
"$CAP" --store "$S" run redis --entry /bin/cat -- /usr/bin/redis-benchmark >/dev/null
TREE=$S/sandboxes/redis/root
SERVER=$TREE/usr/bin/redis-check-rdb   # /usr/bin/redis-server links to it; argv[0] decides
BENCH=$TREE/usr/bin/redis-benchmark
# The capsule's own libraries (liblzf, libjemalloc): the loader path `capsule run` also sets.
export LD_LIBRARY_PATH=$TREE/usr/lib/x86_64-linux-gnu:$TREE/lib/x86_64-linux-gnu
conf=(--save "" --appendonly no --daemonize no --logfile "" --protected-mode no)
(exec -a redis-server "$SERVER" "${conf[@]}" --bind 127.0.0.1 --port 6390 >/dev/null) &
pids+=($!)
env -u LD_LIBRARY_PATH "$CAP" --store "$S" run redis --ip 127.0.0.2 --sandbox bench -- redis-server "${conf[@]}" --bind 0.0.0.0 --port 6391 >/dev/null &
pids+=($!)
for hp in 127.0.0.1:6390 127.0.0.2:6391; do
    for _ in $(seq 100); do timeout 5 "$BENCH" -h "${hp%:*}" -p "${hp#*:}" -n 1 -q -t ping >/dev/null 2>&1 && break; sleep 0.1; done
done
rps() { timeout 120 "$BENCH" -h "$1" -p "$2" -n "$REQUESTS" -q -t set,get 2>/dev/null | tr '\r' '\n' | awk '/requests per second/ { for (i = 1; i <= NF; i++) if ($(i+1) == "requests") s += $i } END { print s / 2 }'; }
nat=(); cap=()
for _ in $(seq "$ROUNDS"); do
    nat+=("$(rps 127.0.0.1 6390)")
    cap+=("$(rps 127.0.0.2 6391)")
done
med() { printf '%s\n' "$@" | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
n=$(med "${nat[@]}"); c=$(med "${cap[@]}")
cat <<MD
### redis-benchmark: native vs capsule ($(date -u +%Y-%m-%d), $(nproc) cores, $REQUESTS requests per test, median of $ROUNDS alternating rounds)

\`redis-benchmark -n $REQUESTS -t set,get\` (mean of the SET and GET rates), the same Debian
redis-server binary natively on 127.0.0.1 and from its capsule with \`--ip 127.0.0.2\`:

| server | requests per second | ratio to native |
| --- | ---: | ---: |
| native | $(printf '%.0f' "$n") | 1.00 |
| capsule (\`--ip 127.0.0.2\`) | $(printf '%.0f' "$c") | $(awk -v a="$c" -v b="$n" 'BEGIN { printf "%.2f", a / b }') |

Target: throughput ratio >= 0.95.
MD
