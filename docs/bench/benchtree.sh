# Sourced by run.sh and tier2.sh: build capsule, and capture the benchmark capsule `benchtree`
# (~50 small files under /opt/benchtree, which is not on the host) from a staging root.
# Sets CAP, work (removed on exit), S (the store), STAGE, TREE (the staging copy) and LOOP
# (fixtures/bench/statloop.c built with $STATLOOP_CFLAGS).
cargo build --release -q -p capsule-cli -p capsule-shim
CAP=$PWD/target/release/capsule
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
S=$work/store
STAGE=$work/stage
# shellcheck disable=SC2086 # flags, split on purpose
cc -O2 ${STATLOOP_CFLAGS:-} -o "$work/statloop" fixtures/bench/statloop.c
LOOP=$work/statloop
mkdir -p "$STAGE/opt"
"$CAP" --store "$S" -q capture snapshot begin --root "$STAGE" --roots /opt
mkdir -p "$STAGE/opt/benchtree"
for i in $(seq -w 0 49); do
    head -c $((200 + 10#$i * 97)) /dev/urandom >"$STAGE/opt/benchtree/file$i.dat"
done
"$CAP" --store "$S" -q capture snapshot end benchtree
TREE=$STAGE/opt/benchtree
