#!/usr/bin/env bash
# Runs every integration test binary of the workspace (`cargo test --workspace --test '*'`), a
# few binaries side by side (VINFRA_TEST_JOBS, default 2), longest first, each binary's own
# tests one at a time (--test-threads=1, as every lab test expects). The lab tests mostly wait
# on timers (heartbeats, leases, grace periods, guest boots) rather than compute, and each lab
# has its own namespaces, directories and name (`it-<tag>`), so two of them side by side take
# about half the wall time on two cores. Each binary's output is printed whole when it ends, in
# cargo's format ("     Running tests/x.rs (…)" then libtest's lines), so scripts/test.sh's
# summary reads it as it reads cargo's. Each binary gets at most VINFRA_TEST_TIMEOUT seconds
# (default 1500) before it is killed and counted as failed.
#
#   scripts/integration.sh [ARGS FOR THE TEST BINARIES]     # e.g. --nocapture
#
# Exit status: 0 when every binary passed; 1 otherwise (also when the build fails).
set -uo pipefail
cd "$(dirname "$0")/.."

jobs=${VINFRA_TEST_JOBS:-2}
limit=${VINFRA_TEST_TIMEOUT:-1500}
work=$(mktemp -d -t vinfra-integration.XXXXXX)
trap 'rm -rf "$work"' EXIT

if ! cargo test --workspace --test '*' --no-run --message-format=json >"$work/build.json" 2>"$work/build.log"; then
    cat "$work/build.log"
    grep -o '"rendered":"[^"]*' "$work/build.json" | cut -d'"' -f4 | sed 's/\\n/\n/g' | head -200
    echo "integration tests: the build failed"
    exit 1
fi

# Seconds each binary took in a run of the whole suite (2 cores, 2026-12): the order in which
# they start, longest first, so that the last one to finish is a short one. A binary not listed
# counts as 5 s.
expected() {
    case $1 in
    crates/vinfra/tests/ha_faults.rs) echo 232 ;;
    crates/vinfra/tests/chaos.rs) echo 178 ;;
    crates/vinfra/tests/migration.rs) echo 166 ;;
    crates/vinfra/tests/network.rs) echo 90 ;;
    crates/vinfra/tests/routing.rs) echo 90 ;;
    crates/vinfra/tests/edge.rs) echo 50 ;;
    crates/vinfra-console/tests/edge.rs) echo 30 ;;
    crates/vinfra/tests/firewall.rs) echo 75 ;;
    crates/vinfra/tests/port_security.rs) echo 60 ;;
    crates/vinfra/tests/restart.rs) echo 63 ;;
    crates/vinfra/tests/failover.rs) echo 61 ;;
    crates/vinfra/tests/lifecycle.rs) echo 57 ;;
    crates/vinfra-agent/tests/network.rs) echo 46 ;;
    crates/vinfra-switchd/tests/*) echo 41 ;;
    crates/vinfra/tests/heartbeat.rs) echo 37 ;;
    crates/vinfra/tests/balancing.rs) echo 32 ;;
    crates/vinfra/tests/vlan.rs) echo 30 ;;
    crates/vinfra/tests/trunk_nic.rs) echo 40 ;;
    crates/vinfra/tests/lab.rs) echo 29 ;;
    crates/vinfra/tests/upstream.rs) echo 11 ;;
    crates/vinfra/tests/capacity.rs | crates/vinfra/tests/cli.rs) echo 27 ;;
    crates/vinfra/tests/guard.rs | crates/vinfra/tests/fence.rs) echo 25 ;;
    *) echo 5 ;;
    esac
}

# One line per test binary: expected seconds, package directory, executable, source path.
root=$PWD
grep '"reason":"compiler-artifact"' "$work/build.json" | grep '"kind":\["test"\]' |
    while IFS= read -r line; do
        exe=$(grep -o '"executable":"[^"]*"' <<<"$line" | cut -d'"' -f4)
        manifest=$(grep -o '"manifest_path":"[^"]*"' <<<"$line" | cut -d'"' -f4)
        src=$(grep -o '"src_path":"[^"]*"' <<<"$line" | cut -d'"' -f4)
        [[ -n $exe ]] || continue
        src=${src#"$root"/}
        echo "$(expected "$src") ${manifest%/Cargo.toml} $exe $src"
    done | sort -rn -k1,1 >"$work/queue"

count=$(wc -l <"$work/queue")
echo "integration tests: $count binaries, $jobs at a time"

run_one() {
    local n=$1 dir=$2 exe=$3 src=$4 rc=0 t0=$SECONDS
    shift 4
    (cd "$dir" && timeout --signal=KILL "$limit" "$exe" --test-threads=1 "$@") >"$work/$n.out" 2>&1 || rc=$?
    {
        echo "     Running $src (${exe#"$root"/}) [$((SECONDS - t0)) s]"
        cat "$work/$n.out"
        if [[ $rc -eq 137 ]]; then
            echo "test result: FAILED. 0 passed; 1 failed; killed after $limit s"
        fi
    } >"$work/$n.done"
    echo "$rc" >"$work/$n.rc"
}

n=0
running=0
while read -r _ dir exe src; do
    if [[ $running -ge $jobs ]]; then
        wait -n
        running=$((running - 1))
    fi
    n=$((n + 1))
    run_one "$n" "$dir" "$exe" "$src" "$@" &
    running=$((running + 1))
    # Print what has finished, in finishing order.
    for f in "$work"/*.done; do
        [[ -e $f ]] || continue
        cat "$f"
        mv "$f" "$f.printed"
    done
done <"$work/queue"
wait
for f in "$work"/*.done; do
    [[ -e $f ]] || continue
    cat "$f"
    mv "$f" "$f.printed"
done

failed=0
for f in "$work"/*.rc; do
    [[ $(cat "$f") -eq 0 ]] || failed=$((failed + 1))
done
echo "integration tests: $count binaries, $failed failed"
[[ $failed -eq 0 ]]
