#!/usr/bin/env bash
# Runs every benchmark, one after the other (each compares vinfra with its peer in the same run),
# then prints a summary of their RESULT lines and the key numbers. Results: docs/benchmarks.md.
#
#   scripts/bench.sh            # all benchmarks
#   scripts/bench.sh api_list   # only the named ones (placement placement_api range api_list
#                               # vm_create migration balance optimum datapath throughput)
#
# The lab benchmarks (vm_create, migration) need root and QEMU; without them they print a note and
# are skipped. Full output goes to target/bench-logs/<name>.log.
set -uo pipefail
cd "$(dirname "$0")/.."
. scripts/common.sh
vinfra_ensure_rust

BENCHES=(
    "vinfra-placement placement"
    "vinfra-console placement_api"
    "vinfra-store range"
    "vinfra-console api_list"
    "vinfra vm_create"
    "vinfra migration"
    "vinfra-placement balance"
    "vinfra-placement optimum"
    "vinfra-switch datapath"
    "vinfra-switchd throughput"
)
LOGDIR=target/bench-logs
mkdir -p "$LOGDIR"

wanted() {
    [[ $# -eq 0 ]] && return 0
    local b=$1
    shift
    for w in "$@"; do [[ $w == "$b" ]] && return 0; done
    return 1
}

failed=()
ran=()
for entry in "${BENCHES[@]}"; do
    read -r crate bench <<<"$entry"
    wanted "$bench" "$@" || continue
    echo "==> cargo bench -p $crate --bench $bench"
    if cargo bench -p "$crate" --bench "$bench" 2>&1 | tee "$LOGDIR/$bench.log"; then
        ran+=("$bench")
    else
        failed+=("$bench")
        echo "==> $bench FAILED (log: $LOGDIR/$bench.log)"
    fi
done

echo
echo "==> summary ($(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) cores)"
for bench in "${ran[@]}" "${failed[@]}"; do
    log=$LOGDIR/$bench.log
    case $bench in
    placement) grep -E "placements/s|faster" "$log" ;;
    placement_api) grep -E "^  (set-up|created|latency|split|console CPU|CPU|steps|rule-aware|background|the placement library)" "$log" ;;
    range) grep -E "^range " "$log" ;;
    api_list) grep -E "^  (API|floor|ratio|during)" "$log" ;;
    vm_create) grep -E "^  (POST|QEMU|overhead)|skipped" "$log" ;;
    migration) grep -E "^(case|idle|busy|network)|^  (ours|plain)( #[0-9]+)?:|skipped|does not converge" "$log" ;;
    throughput) sed -n '/^== medians/,$p' "$log" | grep -v "^RESULT \|^round " ;;
    *) tail -n 15 "$log" ;;
    esac
    grep -E "^RESULT " "$log"
done
if [[ ${#failed[@]} -gt 0 ]]; then
    echo "failed to run: ${failed[*]}"
    exit 1
fi
misses=$(grep -h "^RESULT .*FAIL$" "$LOGDIR"/*.log 2>/dev/null | wc -l)
echo "targets missed: $misses (see docs/benchmarks.md for the known ones)"
