#!/usr/bin/env bash
# capture install --root minimal for docs/benchmarks.md: the one-time bootstrap of the minimal
# root, a small capture over it (first and again), and PostgreSQL captured over it with each
# --base, with the capsules' sizes. Prints a Markdown section. Needs root, mmdebstrap and the
# network to Debian's archive (the bootstrap and apt download packages).
#
#   bash docs/bench/root.sh
#
# One run each (a capture downloads its packages every time, so network time is in them).
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release -q -p capsule-shim -p capsule-cli
CAP=$PWD/target/release/capsule
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export DEBIAN_FRONTEND=noninteractive
cap() { "$CAP" --store "$work/store" "$@"; }
# Wall time of a command in seconds, one decimal (output discarded; failure stops the script).
secs() { local s e; s=$(date +%s%N); "$@" >/dev/null 2>&1; e=$(date +%s%N); awk -v d=$((e - s)) 'BEGIN { printf "%.1f s", d / 1e9 }'; }
size() { cap --json inspect "$1" | python3 -c 'import json,sys; m=json.load(sys.stdin); print("%.1f MiB in %d entries" % (m["size"]/2**20, len(m["files"])))'; }

t_first=$(secs cap capture install --root minimal jq -- apt-get install -y jq)
t_again=$(secs cap capture install --root minimal jq2 -- apt-get install -y jq)
declare -A t_pg
for b in host minimal none; do
    t_pg[$b]=$(secs cap capture install --root minimal --base "$b" "pg-$b" -- apt-get install -y postgresql)
done
root_du=$(du -sh "$work/store/roots/"*/ | awk '{ print $1 }')

echo "### capture install --root minimal ($(date -u +%F), $(nproc) cores, one run each)"
echo
echo "| capture | time | capsule |"
echo "| --- | --- | --- |"
echo "| jq, first use (bootstraps the minimal root: mmdebstrap, then its capsule) | $t_first | $(size jq) |"
echo "| jq again (the kept root; \`apt-get update\` included) | $t_again | $(size jq2) |"
for b in host minimal none; do
    echo "| postgresql, \`--base $b\` | ${t_pg[$b]} | $(size "pg-$b") |"
done
echo
echo "The kept root takes $root_du on disk; \`capsule df\`:"
echo
echo '```'
cap df | tail -n 2
echo '```'
