#!/usr/bin/env bash
# OCI benchmark for docs/benchmarks.md, in one run against a local docker-registry (Debian's
# package; started here with its own config on a free 127.0.0.1 port, stopped by PID):
#  - time to the first output of `capsule run` after `pull --lazy` vs after a full pull, for a
#    capsule with a big payload the program never reads (BIG_MIB of random data beside cat);
#  - bytes uploaded by the first push vs a push of a version that changes one small file;
#  - stored vs logical size (`capsule df`) of two python3 applications captured by tracing
#    (`capture trace`), which share the interpreter and the standard library they both load.
# Prints a Markdown section.
#
#   bash docs/bench/oci.sh              # RUNS=5, BIG_MIB=200 by default
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNS=${RUNS:-5}
BIG_MIB=${BIG_MIB:-200}
command -v docker-registry >/dev/null || { echo "needs docker-registry (apt-get install docker-registry)" >&2; exit 1; }
cargo build --release -q -p capsule-cli
CAP=$PWD/target/release/capsule
work=$(mktemp -d)
reg_pid=
cleanup() { if [ -n "$reg_pid" ]; then kill "$reg_pid" 2>/dev/null || true; wait "$reg_pid" 2>/dev/null || true; fi; rm -rf "$work"; }
trap cleanup EXIT

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >"$work/registry.yml" <<YAML
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $work/registry
http:
  addr: 127.0.0.1:$port
  secret: capsule-bench
YAML
docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
reg_pid=$!
for _ in $(seq 100); do
    if curl -fs "http://127.0.0.1:$port/v2/" >/dev/null 2>&1; then break; fi
    sleep 0.1
done
REF=127.0.0.1:$port/bench/app

# The capsule: /usr/bin/cat, a greeting, and BIG_MIB MiB of incompressible data it never reads.
head -c "$((BIG_MIB << 20))" /dev/urandom >"$work/big.bin"
capture() { # capture STORE GREETING
    local host=$work/host-$RANDOM
    mkdir -p "$host/usr/bin" "$host/opt/app"
    "$CAP" --store "$1" -q capture snapshot begin --root "$host" --roots /usr,/opt
    cp /usr/bin/cat "$host/usr/bin/cat"
    cp "$work/big.bin" "$host/opt/app/big.bin"
    echo "$2" >"$host/opt/app/greeting"
    "$CAP" --store "$1" -q capture snapshot end app
}
capture "$work/v1" "hello v1"
up1=$("$CAP" --store "$work/v1" --json push app "$REF:v1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["bytes_uploaded"])')
capture "$work/v2" "hello v2"
up2json=$("$CAP" --store "$work/v2" --json push app "$REF:v2")
up2=$(echo "$up2json" | python3 -c 'import json,sys; print(json.load(sys.stdin)["bytes_uploaded"])')
blobs2=$(echo "$up2json" | python3 -c 'import json,sys; print(json.load(sys.stdin)["blobs_uploaded"])')

# Time from the start of the pull to the first line the program prints, in ms (fresh store).
first_output() { # first_output PULL-FLAGS...
    local s e store=$work/s-$RANDOM
    s=$(date +%s%N)
    "$CAP" --store "$store" -q pull "$@" "$REF:v1" >/dev/null
    "$CAP" --store "$store" run app --entry /usr/bin/cat -- /opt/app/greeting | head -n1 >/dev/null
    e=$(date +%s%N)
    rm -rf "$store"
    echo $(( (e - s) / 1000000 ))
}
median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
full=$(for _ in $(seq "$RUNS"); do first_output; done | median)
lazy=$(for _ in $(seq "$RUNS"); do first_output --lazy; done | median)

# Dedup: two applications that share their libraries, in one store.
D=$work/dedup
"$CAP" --store "$D" -q capture trace app-json -- /usr/bin/python3 -c 'import json, email; print(json.dumps({"ok": 1}))' >/dev/null
"$CAP" --store "$D" -q capture trace app-sqlite -- /usr/bin/python3 -c 'import sqlite3, csv; sqlite3.connect(":memory:")' >/dev/null
dfjson=$("$CAP" --store "$D" --json df)
dfrow() { echo "$dfjson" | python3 -c "import json,sys; d=json.load(sys.stdin); $1"; }
dedup_rows=$(dfrow 'print("\n".join("| %s | %.1f MiB | %.1f MiB | %d of %d |" % (c["name"], c["logical"]/2**20, c["stored"]/2**20, c["shared_blobs"], c["blobs"]) for c in d["capsules"]))')
dedup_sum=$(dfrow 'print("%.1f MiB" % (sum(c["stored"] for c in d["capsules"])/2**20))')
dedup_total=$(dfrow 't=d["total"]; print("| both, in the store | %.1f MiB | %.1f MiB (each blob once) | ratio %.2f |" % (t["logical"]/2**20, t["stored"]/2**20, t["dedup_ratio"]))')

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f×", a / b }'; }
cat <<MD
### OCI push/pull: lazy start and one-file updates ($(date +%F), $(nproc) cores, local docker-registry $(dpkg-query -W -f '${Version}' docker-registry 2>/dev/null || echo '?'), median of $RUNS runs)

Capsule: /usr/bin/cat, a one-line greeting and $BIG_MIB MiB of random data the program never
reads. Time from the start of \`capsule pull\` to the first line \`capsule run app --entry
/usr/bin/cat -- /opt/app/greeting\` prints, into an empty store each time:

| pull | to first output | ratio |
| --- | --- | --- |
| full (\`pull\`) | $full ms | $(ratio "$full" "$lazy") slower |
| lazy (\`pull --lazy\`, blobs fetched on first open) | $lazy ms | 1 |

Bytes uploaded (\`push --json\` \`bytes_uploaded\`: blobs, capsule manifest, blob map and OCI
manifest):

| push | bytes uploaded | file blobs uploaded |
| --- | --- | --- |
| first push of v1 | $up1 | all |
| v2, one changed file (the greeting) | $up2 | $blobs2 |
| ratio | $(ratio "$up1" "$up2") less for the update | |

Dedup (\`capsule --json df\`): two applications captured by \`capture trace\` from the same
python3, one importing json and email, the other sqlite3 and csv; each capsule holds the
interpreter, its libraries and the modules its run loaded, and the blobs they have in common
are stored once:

| capsule | logical | stored (its blobs) | blobs shared with the other |
| --- | --- | --- | --- |
$dedup_rows
$dedup_total

(The two capsules' own stored sizes add up to $dedup_sum; the store holds each shared blob once.)

Reproduce: \`RUNS=$RUNS BIG_MIB=$BIG_MIB bash docs/bench/oci.sh\` (needs \`docker-registry\`).
MD
