#!/usr/bin/env bash
# Store benchmarks for docs/benchmarks.md: snapshot scan rate beside find(1), and capture,
# export and import throughput beside tar | zstd on the same tree. Prints a Markdown section.
#
#   bash docs/bench/store.sh            # RUNS=5 by default; BENCH_TREE=/usr/lib/python3.11
#
# Each measurement is the median of RUNS warm runs, all taken in one invocation so the ratios
# compare like with like (absolute times drift run to run on a shared VM).
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNS=${RUNS:-5}
TREE=${BENCH_TREE:-/usr/lib/python3.11}
SCAN_ROOT=${BENCH_SCAN_ROOT:-/usr}
cargo build --release -q -p capsule-cli
CAP=$PWD/target/release/capsule
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Wall time of a command in microseconds (output discarded).
us() { local s e; s=$(date +%s%N); "$@" >/dev/null 2>&1; e=$(date +%s%N); echo $(( (e - s) / 1000 )); }
median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
# repeat N CMD...: the median of N timings, with a setup hook $PRE run (untimed) before each.
repeat() {
    local n=$1; shift
    for _ in $(seq "$n"); do
        if [ -n "${PRE:-}" ]; then eval "$PRE"; fi
        us "$@"
    done | median
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f×", a / b }'; }
rate() { awk -v n="$1" -v t="$2" 'BEGIN { printf "%.0f", n / (t / 1e6) }'; }
mbps() { awk -v n="$1" -v t="$2" 'BEGIN { printf "%.0f", n / 1048576 / (t / 1e6) }'; }

# --- scan rate ------------------------------------------------------------------------------
files=$(find "$SCAN_ROOT" | wc -l)
find "$SCAN_ROOT" >/dev/null # warm the dentry and inode caches
find_wc() { find "$SCAN_ROOT" | wc -l; }
t_find=$(repeat "$RUNS" find_wc)
t_find_stat=$(repeat "$RUNS" find "$SCAN_ROOT" -printf '%s %T@ %C@ %i %m %U %G\n')
PRE="rm -rf $work/scan" t_scan=$(PRE="rm -rf $work/scan" repeat "$RUNS" "$CAP" --store "$work/scan" -q capture snapshot begin --roots "$SCAN_ROOT")

# --- capture, export, import ----------------------------------------------------------------
rel=${TREE#/}
mkdir -p "$work/root"
capture() {
    rm -rf "$work/root" "$work/s1" && mkdir -p "$work/root"
    "$CAP" --store "$work/s1" -q capture snapshot begin --root "$work/root" --roots /usr
    mkdir -p "$work/root/$(dirname "$rel")" && cp -a "$TREE" "$work/root/$rel"
    "$CAP" --store "$work/s1" -q capture snapshot end bench
}
# Capture time includes copying the tree into the staging root; measure the copy alone too.
copy_only() { rm -rf "$work/c" && mkdir -p "$work/c/$(dirname "$rel")" && cp -a "$TREE" "$work/c/$rel"; }
t_copy=$(repeat "$RUNS" copy_only)
t_capture=$(repeat "$RUNS" capture)
bytes=$("$CAP" --store "$work/s1" --json inspect bench | awk -F': ' '/^  "size"/ { gsub(/,/, "", $2); print $2 }')
nfiles=$(find "$TREE" -type f | wc -l)
t_export=$(PRE="rm -f $work/b.capsule" repeat "$RUNS" "$CAP" --store "$work/s1" -q export bench -o "$work/b.capsule")
t_import=$(PRE="rm -rf $work/s2" repeat "$RUNS" "$CAP" --store "$work/s2" -q import "$work/b.capsule")
tar_c() { tar -C "$work/root" -cf - . | zstd -3 -q -T1 -f -o "$work/b.tar.zst"; }
tar_x() { rm -rf "$work/x" && mkdir "$work/x" && zstd -dc "$work/b.tar.zst" | tar -C "$work/x" -xf -; }
t_tarc=$(repeat "$RUNS" tar_c)
t_tarx=$(repeat "$RUNS" tar_x)
size_capsule=$(stat -c %s "$work/b.capsule")
size_tar=$(stat -c %s "$work/b.tar.zst")
t_pack=$(( t_capture > t_copy ? t_capture - t_copy : 1 ))

cat <<MD
### Store: scan, capture, export, import ($(date -u +%Y-%m-%d), $(nproc) cores, median of $RUNS warm runs)

Snapshot scan of \`$SCAN_ROOT\` ($files entries):

| what | time | entries/s | ratio to \`find\` |
|---|---:|---:|---:|
| \`find $SCAN_ROOT \| wc -l\` (readdir only) | $((t_find / 1000)) ms | $(rate "$files" "$t_find") | 1.00× |
| \`find $SCAN_ROOT -printf\` (stats every entry) | $((t_find_stat / 1000)) ms | $(rate "$files" "$t_find_stat") | $(ratio "$t_find_stat" "$t_find") |
| \`capsule capture snapshot begin --roots $SCAN_ROOT\` | $((t_scan / 1000)) ms | $(rate "$files" "$t_scan") | $(ratio "$t_scan" "$t_find") |

Capture, export and import of \`$TREE\` ($nfiles files, $(( bytes / 1048576 )) MiB logical):

| what | time | MiB/s | ratio to tar \| zstd |
|---|---:|---:|---:|
| \`tar c \| zstd -3\` (pack) | $((t_tarc / 1000)) ms | $(mbps "$bytes" "$t_tarc") | 1.00× |
| snapshot capture, less the \`cp -a\` into the staging root (hash + compress + commit) | $((t_pack / 1000)) ms | $(mbps "$bytes" "$t_pack") | $(ratio "$t_pack" "$t_tarc") |
| \`capsule export\` (blobs copied as stored) | $((t_export / 1000)) ms | $(mbps "$bytes" "$t_export") | $(ratio "$t_export" "$t_tarc") |
| \`zstd -d \| tar x\` (unpack) | $((t_tarx / 1000)) ms | $(mbps "$bytes" "$t_tarx") | 1.00× |
| \`capsule import\` into an empty store (verify every digest, fsync every blob) | $((t_import / 1000)) ms | $(mbps "$bytes" "$t_import") | $(ratio "$t_import" "$t_tarx") |

File sizes: export $(( size_capsule / 1024 )) KiB, tar.zst $(( size_tar / 1024 )) KiB.
MD
