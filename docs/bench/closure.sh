#!/usr/bin/env bash
# Capsule size and capture time by base (docs/benchmarks.md, issue 18): each capture of the
# portable-capsule tests made with `--base host`, `minimal` and `none`, on this host. Prints a
# Markdown table. Changes host packages (under `flock /tmp/apt.lock`) and puts them back.
#
#   bash docs/bench/closure.sh                 # every capture
#   bash docs/bench/closure.sh jq redis        # some: pyapp jq redis pg-root
#
# A snapshot capture is one `begin`, the install, one `end` per base (the install is repeated
# for each base: `end` consumes the pending snapshot). Times are wall-clock seconds of the
# capture alone (`snapshot end`, or the whole `capture install` with its apt run), one run
# each: a capture is not a hot path, and the ratio between bases is what the table shows.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release -q -p capsule-shim
cargo build --release -q -p capsule-cli
CAP=$PWD/target/release/capsule
work=$(mktemp -d)
app=/usr/local/bin/capsule-bench-reqapp
trap 'rm -rf "$work"; rm -f "$app"' EXIT
export DEBIAN_FRONTEND=noninteractive
apt() { flock /tmp/apt.lock apt-get -y -q -o DPkg::Lock::Timeout=600 "$@" >/dev/null 2>&1; }
installed() { dpkg-query -W -f '${Status}' "$1" 2>/dev/null | grep -q 'ok installed'; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", (b - a) / 1e9 }'; }
size() { "$CAP" --store "$1" inspect --json "$2" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["size"], len(d["inventory"]["packages"]))'; }
mib() { awk -v n="$1" 'BEGIN { printf "%.1f MiB", n / 1048576 }'; }

row() { # NAME BASE STORE START END
    local s p
    read -r s p < <(size "$3" "$1")
    printf '| %s | %s | %s | %s | %s |\n' "$1" "$2" "$(mib "$s")" "$p" "$(secs "$4" "$5")"
}

# snapshot NAME BASE PURGE INSTALL ENTRY [SETUP]: purge, begin, install, (setup), end.
snapshot() {
    local name=$1 base=$2 purge=$3 install=$4 entry=$5 setup=${6:-true} store=$work/$1-$2 t0 t1
    # shellcheck disable=SC2086
    apt purge $purge
    "$CAP" --store "$store" -q capture snapshot begin
    # shellcheck disable=SC2086
    apt install --no-install-recommends $install
    eval "$setup"
    t0=$(date +%s%N)
    "$CAP" --store "$store" -q capture snapshot end "$name" --entry "$entry" --base "$base"
    t1=$(date +%s%N)
    row "$name" "$base" "$store" "$t0" "$t1"
}

pyapp_setup() {
    printf '#!/usr/bin/python3\nimport requests\nprint(requests.__version__)\n' >"$app"
    chmod 755 "$app"
}

echo "| capture | base | size | packages | capture time (s) |"
echo "| --- | --- | --- | --- | --- |"
which=("$@")
[ ${#which[@]} -gt 0 ] || which=(pyapp jq redis pg-root)
for what in "${which[@]}"; do
    for base in host minimal none; do
        case $what in
        pyapp)
            had=$(installed python3-requests && echo y || echo n)
            snapshot pyapp "$base" python3-requests python3-requests "$app" pyapp_setup
            [ "$had" = y ] || apt purge python3-requests
            ;;
        jq)
            had=$(installed jq && echo y || echo n)
            snapshot jq "$base" "jq libjq1 libonig5" jq /usr/bin/jq
            [ "$had" = y ] || apt purge jq libjq1 libonig5
            ;;
        redis)
            had=$(installed redis-server && echo y || echo n)
            [ "$had" = n ] || apt purge redis-server redis-tools
            store=$work/redis-$base
            t0=$(date +%s%N)
            flock /tmp/apt.lock "$CAP" --store "$store" -q capture install redis --base "$base" -- \
                apt-get install -y --no-install-recommends redis-server >/dev/null 2>&1
            t1=$(date +%s%N)
            row redis "$base" "$store" "$t0" "$t1"
            [ "$had" = n ] || apt install --no-install-recommends redis-server
            ;;
        pg-root)
            # One store for the three: the minimal root is bootstrapped once, by the first.
            store=$work/pg
            "$CAP" capture install --help | grep -q -- '--root' || { echo "| pg-$base | $base | (no --root in this build) | | |"; continue; }
            t0=$(date +%s%N)
            "$CAP" --store "$store" -q capture install --root minimal "pg-$base" --base "$base" -- \
                apt-get install -y postgresql >/dev/null 2>&1
            t1=$(date +%s%N)
            row "pg-$base" "$base" "$store" "$t0" "$t1"
            ;;
        *) echo "closure.sh: unknown capture $what" >&2; exit 2 ;;
        esac
    done
done
