#!/usr/bin/env bash
# Opens of sandbox-tree files for writing (docs/benchmarks.md, issue 16): one shell creating N
# files in a write-copy directory (`echo x > /opt/wb/fI`: open O_CREAT|O_WRONLY|O_TRUNC, write,
# close). Side by side: native (a directory of its own), capsule (the materialiser opens tree
# files for writing: OP_OPEN, every confined run since the store is write-copy in all of them),
# capsule --unconfined (no Landlock domain: the shim opens them itself), and bwrap binding the
# directory. Prints a Markdown table of medians, ratios to native and µs added per open.
#
#   bash docs/bench/writeopen.sh      # RUNS=15, N=2000; needs a release build
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNS=${RUNS:-15}
N=${N:-2000}
command -v hyperfine >/dev/null || { echo "writeopen.sh: needs hyperfine" >&2; exit 1; }
bin=$PWD/target/release
[ -x "$bin/capsule" ] || { echo "writeopen.sh: build with cargo build --release first" >&2; exit 1; }
work=$(mktemp -d /tmp/capsule-writeopen-XXXXXX)
trap 'rm -rf "$work"' EXIT
store=$work/store
mkdir -p "$work/stage" "$work/native" "$work/bw"
"$bin/capsule-cli" --store "$store" -q capture snapshot begin --root "$work/stage" --roots /usr,/etc,/opt >/dev/null
mkdir -p "$work/stage/opt/wb" && echo seed >"$work/stage/opt/wb/seed"
"$bin/capsule-cli" --store "$store" -q capture snapshot end wb >/dev/null
loop="for i in \$(seq $N); do echo x > DIR/f\$i; done"
cmds=(
  "/bin/sh -c '${loop//DIR/$work/native}'"
  "$bin/capsule --store $store run wb --entry /bin/sh -- -c '${loop//DIR//opt/wb}'"
  "$bin/capsule --store $store run wb --unconfined --entry /bin/sh -- -c '${loop//DIR//opt/wb}'"
)
names=(native "capsule (OP_OPEN)" "capsule --unconfined (the shim's own open)")
if command -v bwrap >/dev/null; then
  cmds+=("bwrap --bind / / --bind $work/bw /opt --dev /dev --proc /proc /bin/sh -c '${loop//DIR//opt}'")
  names+=(bwrap)
fi
hyperfine -N -w 2 -r "$RUNS" "${cmds[@]}" --export-json "$work/w.json" >/dev/null 2>&1
python3 - "$N" "$work/w.json" "${names[@]}" <<'PY'
import json, sys
n, path, names = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
r = json.load(open(path))["results"]
base = r[0]["median"]
print(f"| tool | {n} opens for writing, median | ratio | µs added per open |")
print("|---|---:|---:|---:|")
for name, x in zip(names, r):
    m = x["median"]
    print(f"| {name} | {m * 1000:.0f} ms | {m / base:.2f}× | {(m - base) / n * 1e6:.0f} |")
PY
