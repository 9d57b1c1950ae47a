#!/usr/bin/env bash
# The compatibility corpus runner (issue 17). Each file tests/compat/cases/NAME.case declares one
# application: the Debian packages, how an admin captures it, and a workload run from the capsule
# with default options. Per case the runner
#   1. puts the host's packages in the state the capture method needs (purged for `install` and
#      `snapshot`, installed for `elf` and `trace`), under `flock /tmp/apt.lock`;
#   2. captures into a temporary store ($CAPSULE_HOME of the case);
#   3. runs the case's `native:` steps (the packages still on the host), then puts the host's
#      packages back as they were;
#   4. runs the workload twice, the first run against a cold cache and a second, warm one,
#      checking outputs, exit codes and that every process a `serve:` started is gone after
#      `stop:`;
#   5. removes the store and scratch directory.
# It prints one line per case and merges the results into the matrix of docs/compat.md
# (`--no-doc` to leave it alone). The case format is documented in tests/compat/README.md.
#
#   bash tests/compat/run.sh              every case (what tests/compat/run-all.sh runs)
#   bash tests/compat/run.sh --fast       the cases marked `fast: yes` (CI, through cargo test)
#   bash tests/compat/run.sh jq redis     the named cases
# Options: --no-doc (leave docs/compat.md alone), --doc FILE (write the matrix there),
# --cases DIR (the case files of another directory). $CAPSULE_BIN: the `capsule` to test
# (default target/release/capsule); $COMPAT_KEEP=1 keeps a failed case's scratch directory.
# Exit status: 0 when every case run passed, 1 otherwise, 2 on a usage error.
# pipefail: a pipeline fails with any of its commands. (So no `… | grep -q`: grep leaving
# early would fail the writer with SIGPIPE, and the pipeline with it.)
set -uo pipefail
shopt -s nullglob

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cases_dir=$here/cases
doc=$root/docs/compat.md
bin=${CAPSULE_BIN:-$root/target/release/capsule}
apt_lock=/tmp/apt.lock
step_timeout=${COMPAT_STEP_TIMEOUT:-600}
wait_limit=${COMPAT_WAIT_LIMIT:-90}
grace=${COMPAT_GRACE:-20}

fast=0
write_doc=1
tag=
work=
names=()
while [ $# -gt 0 ]; do
    case $1 in
    --fast) fast=1 ;;
    --no-doc) write_doc=0 ;;
    --doc) doc=$2; shift ;;
    --cases) cases_dir=$(cd "$2" && pwd); shift ;;
    -h | --help) sed -n '2,25p' "$0"; exit 0 ;;
    -*) echo "run.sh: unknown option $1" >&2; exit 2 ;;
    *) names+=("${1%.case}") ;;
    esac
    shift
done

if [ ! -x "$bin" ]; then
    echo "run.sh: $bin is missing: cargo build -p capsule-shim --release && cargo build --release" >&2
    exit 2
fi
bindir=$(cd "$(dirname "$bin")" && pwd)
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "SKIP the compatibility corpus needs root and apt-get (it installs and purges packages)" >&2
    exit 3
fi

# --- the case file --------------------------------------------------------------------------
# `key: value` lines; `#` starts a comment line; a line ending in `\` continues on the next.
# Header keys are single-valued; the others are steps, kept in order.
declare -A head
steps=()
parse() {
    head=()
    steps=()
    local line key val acc=
    while IFS= read -r line || [ -n "$line" ]; do
        if [ -n "$acc" ]; then line="$acc$line"; acc=; fi
        case $line in '#'* | '') continue ;; esac
        if [ "${line%\\}" != "$line" ]; then acc="${line%\\}"$'\n'; continue; fi
        key=${line%%:*}
        val=${line#*:}
        val=${val# }
        case $key in
        app | packages | method | entry | fast | capture-args | install | trace | elf | name | needs | purge | timeout | note)
            head[$key]=$val ;;
        setup | native | run | expect | expect-not | exit | serve | wait | stop | reset | files)
            steps+=("$key"$'\t'"$val") ;;
        *) echo "bad key '$key' in $1" >&2; return 1 ;;
        esac
    done <"$1"
    [ -n "${head[app]:-}" ] && [ -n "${head[method]:-}" ] || { echo "$1: app and method are required" >&2; return 1; }
}

# --- host packages ---------------------------------------------------------------------------
installed_set() { dpkg-query -W -f='${db:Status-Abbrev} ${Package}\n' 2>/dev/null | awk '$1=="ii"{print $2}' | sort; }
added=()   # packages this case installed on the host (to purge when restoring)
removed=() # packages this case purged from the host (to install again when restoring)
removed_auto=()
needs_added=() # packages installed for the workload (purged when the case ends)
# apt_change VERB PKGS...: under the lock, records what changed.
apt_change() {
    local verb=$1; shift
    local pre post
    pre=$(mktemp); post=$(mktemp)
    installed_set >"$pre"
    local auto
    auto=$(apt-mark showauto 2>/dev/null | sort)
    DEBIAN_FRONTEND=noninteractive apt-get "$verb" -y -q --no-install-recommends "$@" >>"$work/apt.log" 2>&1
    local rc=$?
    installed_set >"$post"
    local p
    for p in $(comm -13 "$pre" "$post"); do added+=("$p"); done
    for p in $(comm -23 "$pre" "$post"); do
        removed+=("$p")
        if grep -qx "$p" <<<"$auto"; then removed_auto+=("$p"); fi
    done
    rm -f "$pre" "$post"
    return $rc
}
restore_host() {
    [ ${#added[@]} -eq 0 ] && [ ${#removed[@]} -eq 0 ] && return 0
    (
        flock 9
        if [ ${#added[@]} -gt 0 ]; then
            DEBIAN_FRONTEND=noninteractive apt-get purge -y -q "${added[@]}" >>"$work/apt.log" 2>&1
        fi
        if [ ${#removed[@]} -gt 0 ]; then
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${removed[@]}" >>"$work/apt.log" 2>&1
            if [ ${#removed_auto[@]} -gt 0 ]; then apt-mark auto "${removed_auto[@]}" >/dev/null 2>&1; fi
        fi
    ) 9>"$apt_lock"
    local rc=$?
    added=(); removed=(); removed_auto=()
    return $rc
}
# What a subshell under the lock recorded, into this shell's arrays.
load_pkgstate() { if [ -f "$work/pkgstate" ]; then source "$work/pkgstate"; rm -f "$work/pkgstate"; fi; }
# The packages of a case that the host has.
present() {
    local p out=()
    for p in "$@"; do
        if [[ $(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null) == ii* ]]; then out+=("$p"); fi
    done
    echo "${out[*]}"
}
missing() {
    local p out=()
    for p in "$@"; do
        if [[ $(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null) != ii* ]]; then out+=("$p"); fi
    done
    echo "${out[*]}"
}

# --- processes a case started ----------------------------------------------------------------
# Every `serve:` runs with COMPAT_TAG in its environment; what inherits it belongs to the case.
tagged() {
    local e pid
    for e in /proc/[0-9]*/environ; do
        pid=${e#/proc/}; pid=${pid%/environ}
        [ "$pid" = $$ ] && continue
        if grep -qxzF "COMPAT_TAG=$tag" "$e" 2>/dev/null; then echo "$pid"; fi
    done
}
tagged_names() {
    local pid out=()
    for pid in $(tagged); do out+=("$(cat "/proc/$pid/comm" 2>/dev/null)[$pid]"); done
    echo "${out[*]}"
}
kill_tagged() {
    local pids
    pids=$(tagged)
    [ -z "$pids" ] && return 0
    kill -TERM $pids 2>/dev/null
    sleep 2
    pids=$(tagged)
    [ -n "$pids" ] && kill -KILL $pids 2>/dev/null
    sleep 0.5
}

# --- steps -----------------------------------------------------------------------------------
fail_reason=
fail() { [ -z "$fail_reason" ] && fail_reason=$(printf '%s' "$1" | tr '\r\n\t|' '    ' | tr -s ' ' | cut -c1-160); return 1; }
first_error() {
    # The first line of a failed command's output that says what went wrong (stderr first),
    # else its first line.
    local f=$1 line
    # A line with an errno's text first (dpkg's "unable to …: Is a directory" says more than
    # apt's "dpkg returned an error code"), then any line that names an error.
    line=$(cat "$f.err" "$f.out" 2>/dev/null | grep -E 'Input/output error|Permission denied|Is a directory|Not a directory|No such file|Operation not permitted|Read-only file system|Invalid argument' | head -1)
    [ -n "$line" ] || line=$(cat "$f.err" "$f.out" 2>/dev/null | grep -iE 'error|fail|cannot|unable|denied|refus|not found|no such|unexpected' | grep -v '^debconf: ' | head -1)
    [ -n "$line" ] || line=$(cat "$f.err" "$f.out" 2>/dev/null | grep -v '^\s*$' | head -1)
    printf '%s' "$line"
}
first_error_in() {
    # The same for one file (a server's log): an errno's text, else an ERROR or FATAL line,
    # else its first line.
    local line
    line=$(grep -E 'Input/output error|Permission denied|Is a directory|Not a directory|No such file|Operation not permitted|Read-only file system|Cannot assign requested address' "$1" | head -1)
    [ -n "$line" ] || line=$(grep -E 'ERROR|FATAL|[Ee]rror' "$1" | head -1)
    [ -n "$line" ] || line=$(grep -v '^\s*$' "$1" | head -1)
    printf '%s' "$line"
}
sh_step() {
    # sh_step LABEL CMD: runs CMD in the case's directory; output in $work/last.{out,err}.
    local cmd=$2
    (cd "$casework" && COMPAT_TAG=$tag timeout -k 5 "$step_timeout" bash -c "$cmd") >"$work/last.out" 2>"$work/last.err" </dev/null
}
serves=()
run_steps() {
    # run_steps PHASE: the steps of that phase (native: only `native`; workload: the rest).
    local phase=$1 i kind val next rc
    serves=()
    for ((i = 0; i < ${#steps[@]}; i++)); do
        kind=${steps[i]%%$'\t'*}
        val=${steps[i]#*$'\t'}
        case $phase:$kind in
        native:native | setup:setup) ;;
        native:* | setup:* | work:native | work:setup | work:reset) continue ;;
        reset:reset) ;;
        reset:*) continue ;;
        esac
        case $kind in
        setup | native | reset | run)
            sh_step "$kind" "$val"
            rc=$?
            next=${steps[i + 1]:-}
            if [ "${next%%$'\t'*}" = exit ] && [ "$kind" = run ]; then
                i=$((i + 1))
                local want=${next#*$'\t'}
                [ "$rc" = "$want" ] || { fail "$kind \`$(head -c 60 <<<"$val")\`: exit $rc, not $want: $(first_error "$work/last")"; return 1; }
            elif [ $rc -ne 0 ]; then
                fail "$kind \`$(head -c 60 <<<"$val")\`: exit $rc: $(first_error "$work/last")"
                return 1
            fi ;;
        exit) ;;
        expect)
            grep -qF -- "$val" "$work/last.out" "$work/last.err" || { fail "expected '$val' in the output of the run before, got: $(head -c 100 "$work/last.out" | tr '\n' ' ') $(first_error "$work/last")"; return 1; } ;;
        expect-not)
            ! grep -qF -- "$val" "$work/last.out" "$work/last.err" || { fail "unexpected '$val' in the output"; return 1; } ;;
        files)
            local f
            for f in $val; do [ -e "$casework/$f" ] || { fail "no file $f"; return 1; }; done ;;
        serve)
            local n=${#serves[@]}
            (cd "$casework" && COMPAT_TAG=$tag exec setsid bash -c "exec $val") >"$work/serve$n.log" 2>&1 </dev/null &
            serves+=($!) ;;
        wait)
            local t0=$SECONDS ok=0
            while [ $((SECONDS - t0)) -lt "$wait_limit" ]; do
                if (cd "$casework" && timeout 15 bash -c "$val") >"$work/last.out" 2>"$work/last.err" </dev/null; then ok=1; break; fi
                local s dead=
                for s in "${!serves[@]}"; do kill -0 "${serves[s]}" 2>/dev/null || dead=$s; done
                if [ -n "$dead" ]; then
                    wait "${serves[dead]}"
                    local st=$?
                    fail "server \`$(head -c 60 <<<"$(step_of serve "$dead")")\` exited ($st) before it was ready: $(first_error_in "$work/serve$dead.log")"
                    return 1
                fi
                sleep 0.5
            done
            [ $ok = 1 ] || { fail "not ready after ${wait_limit}s: \`$(head -c 60 <<<"$val")\`: $(first_error "$work/last") / $(first_error_in "$work/serve0.log" 2>/dev/null)"; return 1; } ;;
        stop)
            stop_serves || return 1 ;;
        esac
    done
    [ ${#serves[@]} -eq 0 ] || stop_serves
}
step_of() { local kind=$1 n=$2 s c=0; for s in "${steps[@]}"; do [ "${s%%$'\t'*}" = "$kind" ] || continue; [ $c = "$n" ] && { echo "${s#*$'\t'}"; return; }; c=$((c + 1)); done; }
stop_serves() {
    # SIGTERM to each `capsule run` a serve started; everything of the run must be gone within
    # the grace period.
    local s pid t0 left
    for pid in "${serves[@]}"; do kill -TERM "$pid" 2>/dev/null; done
    t0=$SECONDS
    for pid in "${serves[@]}"; do
        while kill -0 "$pid" 2>/dev/null && [ $((SECONDS - t0)) -lt "$grace" ]; do sleep 0.2; done
    done
    while [ -n "$(tagged)" ] && [ $((SECONDS - t0)) -lt "$grace" ]; do sleep 0.2; done
    left=$(tagged_names)
    for pid in "${serves[@]}"; do kill -KILL "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; done
    serves=()
    if [ -n "$left" ]; then
        kill_tagged
        fail "processes left ${grace}s after SIGTERM to capsule run: $left"
        return 1
    fi
}

# --- one case --------------------------------------------------------------------------------
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
cleanup_case() {
    kill_tagged
    added+=("${needs_added[@]}")
    needs_added=()
    restore_host || echo "  (restoring the host's packages failed: see $work/apt.log)" >&2
    if [ -n "${work:-}" ] && [ -d "$work" ]; then
        if [ -n "$fail_reason" ] && [ -n "${COMPAT_KEEP:-}" ]; then echo "  kept $work" >&2; else rm -rf "$work"; fi
    fi
}
run_case() {
    local file=$1 id
    id=$(basename "$file" .case)
    fail_reason=
    first=-; warm=-; captured=-; result=FAIL
    parse "$file" 2>"/tmp/capsule-compat-parse.$$" || { fail "bad case file: $(head -1 "/tmp/capsule-compat-parse.$$")"; rm -f "/tmp/capsule-compat-parse.$$"; return; }
    rm -f "/tmp/capsule-compat-parse.$$"
    work=$(mktemp -d /tmp/capsule-compat.XXXXXX)
    casework=$work/case
    mkdir -p "$casework" "$work/store"
    # Searchable by the users a case runs programs as (--user postgres starts in this
    # directory, as a server started from an admin's shell would).
    chmod 755 "$work" "$casework"
    tag=compat-$id-$$
    export CAPSULE_HOME=$work/store CASE_DIR=$cases_dir NATIVE=$work/native
    mkdir -p "$NATIVE"
    local t0 t1 rc name=${head[name]:-$id} pkgs=${head[packages]:-} method=${head[method]}
    local capture_args=${head[capture-args]:-}
    # The system's PATH, as an admin's root shell has it (not the caller's: a pyenv or a
    # toolchain of the caller's must not stand in for Debian's programs).
    export PATH=$bindir:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

    # Host programs the workload needs (Xvfb): installed for the whole case.
    local need
    need=$(missing ${head[needs]:-})
    if [ -n "$need" ]; then
        (
            flock 9
            apt_change install $need || exit 1
            declare -p added removed removed_auto | sed "s/^declare -a/declare -ga/" >"$work/pkgstate"
        ) 9>"$apt_lock"
        rc=$?
        load_pkgstate
        needs_added=("${added[@]}")
        added=()
        [ $rc = 0 ] || { fail "apt-get install $need failed: $(tail -1 "$work/apt.log")"; return; }
    fi

    run_steps setup || return

    # 1-2. Packages and capture.
    local tc0
    tc0=$(now)
    case $method in
    install)
        # `capture install` never changes the host; the host must not have the packages,
        # or the install inside the capsule finds them installed and captures nothing of them.
        (
            flock 9
            local have=
            # With --reinstall the capture takes the packages in full though the host has them.
            case " $capture_args " in *" --reinstall "*) ;; *) have=$(present $pkgs ${head[purge]:-}) ;; esac
            if [ -n "$have" ]; then apt_change purge $have || exit 1; fi
            declare -p added removed removed_auto | sed "s/^declare -a/declare -ga/" >"$work/pkgstate"
        ) 9>"$apt_lock"
        rc=$?
        load_pkgstate
        [ $rc = 0 ] || { fail "purging $pkgs from the host failed: $(tail -1 "$work/apt.log")"; return; }
        local cmd=${head[install]:-apt-get install -y --no-install-recommends $pkgs}
        # The installer's words as an admin types them (capture install reads an apt-get
        # command's package names: --reinstall needs them).
        local attempt argv
        eval "argv=($cmd)"
        for attempt in 1 2 3; do
            if [ "${argv[0]}" = apt-get ]; then
                (flock 9; "$bin" -q capture install "$name" $capture_args -- "${argv[@]}") 9>"$apt_lock" >"$work/capture.out" 2>"$work/capture.err"
            else
                "$bin" -q capture install "$name" $capture_args -- "${argv[@]}" >"$work/capture.out" 2>"$work/capture.err"
            fi
            rc=$?
            # apt in the capsule reads the host's dpkg database: a dpkg running on the host
            # outside the apt lock (another test suite) leaves its journal there for a moment,
            # and apt refuses ("dpkg was interrupted"). Once that dpkg is done, again.
            [ $rc != 0 ] && grep -q "dpkg was interrupted\|Could not get lock" "$work/capture.err" || break
            echo "  (capture $attempt: the host's dpkg was busy; again)" >&2
            while [ -n "$(ls -A /var/lib/dpkg/updates 2>/dev/null)" ]; do sleep 2; done
            sleep 5
        done ;;
    snapshot)
        (
            flock 9
            local have
            have=$(present $pkgs ${head[purge]:-})
            if [ -n "$have" ]; then apt_change purge $have || exit 1; fi
            "$bin" -q capture snapshot begin >"$work/capture.out" 2>"$work/capture.err" || exit 2
            apt_change install $pkgs || exit 3
            local entry=()
            [ -n "${head[entry]:-}" ] && entry=(--entry "${head[entry]}")
            "$bin" -q capture snapshot end "$name" "${entry[@]}" $capture_args >>"$work/capture.out" 2>>"$work/capture.err" || exit 4
            declare -p added removed removed_auto | sed "s/^declare -a/declare -ga/" >"$work/pkgstate"
        ) 9>"$apt_lock"
        rc=$?
        load_pkgstate
        [ $rc = 1 ] && { fail "purging $pkgs from the host failed: $(tail -1 "$work/apt.log")"; return; }
        [ $rc = 3 ] && { fail "apt-get install $pkgs failed: $(tail -1 "$work/apt.log")"; return; } ;;
    elf | trace)
        # Under the lock throughout: the packages must stay put while they are captured (other
        # test suites purge and reinstall jq under the same lock).
        (
            flock 9
            local need
            need=$(missing $pkgs)
            if [ -n "$need" ]; then apt_change install $need || exit 101; fi
            declare -p added removed removed_auto | sed "s/^declare -a/declare -ga/" >"$work/pkgstate"
            if [ "$method" = elf ]; then
                "$bin" -q capture elf "$name" ${head[elf]} $capture_args >"$work/capture.out" 2>"$work/capture.err"
            else
                local argv
                eval "argv=(${head[trace]})"
                (cd "$casework" && "$bin" -q capture trace "$name" $capture_args -- "${argv[@]}") >"$work/capture.out" 2>"$work/capture.err"
            fi
        ) 9>"$apt_lock"
        rc=$?
        load_pkgstate
        [ $rc = 101 ] && { fail "apt-get install $pkgs failed: $(tail -1 "$work/apt.log")"; return; } ;;
    *) fail "unknown capture method $method"; return ;;
    esac
    if [ "$rc" != 0 ]; then fail "capture $method: $(first_error "$work/capture")"; return; fi
    captured=$(secs "$tc0" "$(now)")

    # 3. Native reference while the host still has the packages; then the host as it was.
    if ! run_steps native; then fail_reason="native reference: $fail_reason"; return; fi
    restore_host || { fail "restoring the host's packages failed: $(tail -1 "$work/apt.log")"; return; }

    # 4. The workload, first against a cold cache, then warm.
    t0=$(now)
    run_steps work || return
    t1=$(now)
    first=$(secs "$t0" "$t1")
    # Fresh sandboxes, warm cache: the second run starts from the capsule as captured again.
    rm -rf "$CAPSULE_HOME"/sandboxes/*
    run_steps reset || { fail_reason="reset: $fail_reason"; return; }
    t0=$(now)
    if ! run_steps work; then fail_reason="warm run: $fail_reason"; return; fi
    t1=$(now)
    warm=$(secs "$t0" "$t1")
    result=PASS
}

# --- the matrix ------------------------------------------------------------------------------
declare -A rows
load_rows() {
    [ -f "$doc" ] || return 0
    local line id
    while IFS= read -r line; do
        case $line in '| ['*) ;; *) continue ;; esac
        id=${line#| [}; id=${id%%]*}
        rows[$id]=$line
    done < <(sed '/^## /q' "$doc")
}
write_doc() {
    local id pass=0 total=0
    for id in "${!rows[@]}"; do
        total=$((total + 1))
        case ${rows[$id]} in *'| PASS |'*) pass=$((pass + 1)) ;; esac
    done
    {
        cat <<HEAD
# Compatibility corpus

Real Debian applications captured the way an admin would and run from their capsules with
default options (no \`--seccomp always\`, no \`--isolation\`, no apt options). One case per
application in \`tests/compat/cases/\` (format: \`tests/compat/README.md\`);
\`bash tests/compat/run.sh\` runs them all and rewrites this matrix (a run of some cases
updates their rows only). *Capture*: the capture with the package changes on the host around
it (under the apt lock: a wait for another apt-get counts too). *First run*: the whole
workload against the capsule just captured (cold cache: every file materialised on first
open); *warm run*: the same workload again, in fresh sandboxes with the cache warm. Times are
wall-clock seconds on a 2-core VM shared with other builds; they include server start-up and
the readiness wait. A failing case shows the first line of its reason.

Passing: $pass of $total. Last run: $(date -u +%Y-%m-%d) on $(uname -r), $(. /etc/os-release; echo "$PRETTY_NAME").

| case | application | capture | workload | result | capture (s) | first run (s) | warm run (s) |
| --- | --- | --- | --- | --- | --- | --- | --- |
HEAD
        for id in $(printf '%s\n' "${!rows[@]}" | sort); do echo "${rows[$id]}"; done
        # What people wrote below the matrix (the failures and their causes) stays.
        if [ -f "$doc" ] && grep -q '^## ' "$doc"; then echo; sed -n '/^## /,$p' "$doc"; fi
    } >"$doc.tmp" && mv "$doc.tmp" "$doc"
}

files=()
if [ ${#names[@]} -gt 0 ]; then
    for n in "${names[@]}"; do
        [ -f "$cases_dir/$n.case" ] || { echo "run.sh: no case $cases_dir/$n.case" >&2; exit 2; }
        files+=("$cases_dir/$n.case")
    done
else
    for f in "$cases_dir"/*.case; do
        if [ $fast = 1 ]; then grep -qx 'fast: yes' "$f" || continue; fi
        files+=("$f")
    done
fi
[ ${#files[@]} -gt 0 ] || { echo "run.sh: no cases" >&2; exit 2; }

load_rows
trap 'cleanup_case; exit 130' INT TERM
failed=0
for f in "${files[@]}"; do
    id=$(basename "$f" .case)
    printf '%-14s ' "$id"
    run_case "$f"
    cleanup_case
    work=
    if [ "$result" = PASS ]; then
        printf 'PASS  capture %6ss  first %6ss  warm %6ss\n' "$captured" "$first" "$warm"
    else
        failed=1
        printf 'FAIL  %s\n' "$fail_reason"
    fi
    # The first two commands of the workload, `|` escaped for the table.
    workload=$(printf '%s\n' "${steps[@]}" | awk -F'\t' '$1=="run"||$1=="serve"{print $2}' | head -2 | cut -c1-90 | awk 'NR > 1 { printf "` ⏎ `" } { printf "%s", $0 }' | sed 's/|/\\|/g')
    reason=
    [ "$result" = FAIL ] && reason=": $fail_reason"
    rows[$id]="| [$id](../tests/compat/cases/$id.case) | ${head[app]:-?} | ${head[method]:-?} | \`$workload\` | $result$reason | $captured | $first | $warm |"
    [ $write_doc = 1 ] && write_doc
done
exit $failed
