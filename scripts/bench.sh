#!/usr/bin/env bash
# Runs every benchmark, one after the other (each compares vinfra with its peer in the same run),
# then prints a summary of their RESULT lines and the key numbers. Results: docs/benchmarks.md.
#
#   scripts/bench.sh            # all benchmarks
#   scripts/bench.sh api_list   # only the named ones (placement placement_api range api_list tasks
#                               # metrics_scrape inventory_page vm_create migration failover balance optimum datapath
#                               # firewall throughput qos firewall_vs_nft admission
#                               # routed_vs_kernel snat_vs_masquerade flows_on_off
#                               # agent_metrics_scrape)
#
# As root it first installs the packages of scripts/common.sh (iperf3 among them), the
# benchmarks' peers (VINFRA_BENCH_PACKAGES: Open vSwitch, nftables, conntrack) included. The lab
# benchmarks (vm_create, migration) and the switch daemon's need root and QEMU; without them they
# print a line starting with "SKIPPED:". Full output goes to target/bench-logs/<name>.log.
#
# Every benchmark prints at least one "RESULT … PASS|FAIL" line; the summary counts them. Exits
# non-zero when a benchmark failed to run or printed no such line (a skipped one included); a
# missed target (FAIL) is a result, not an error.
set -uo pipefail
cd "$(dirname "$0")/.."
. scripts/common.sh
if [[ $(id -u) -eq 0 ]]; then
    vinfra_install_packages "${VINFRA_PACKAGES[@]}" "${VINFRA_BENCH_PACKAGES[@]}"
    bash scripts/check-programs.sh --installed --bench >/dev/null || exit 1
else
    echo "not root: skipping package installation (the lab and switch daemon benchmarks will skip)"
fi
vinfra_ensure_rust

BENCHES=(
    "vinfra-placement placement"
    "vinfra-console placement_api"
    "vinfra-store range"
    "vinfra-console api_list"
    "vinfra-console tasks"
    "vinfra-console metrics_scrape"
    "vinfra-agent agent_metrics_scrape"
    "vinfra-console inventory_page"
    "vinfra vm_create"
    "vinfra migration"
    "vinfra failover"
    "vinfra-placement balance"
    "vinfra-placement optimum"
    "vinfra-switch datapath"
    "vinfra-switch firewall"
    "vinfra-switchd throughput"
    "vinfra-switchd qos"
    "vinfra-switchd firewall_vs_nft"
    "vinfra-switchd routed_vs_kernel"
    "vinfra-switchd snat_vs_masquerade"
    "vinfra-switchd flows_on_off"
    "vinfra-ha admission"
)
LOGDIR=target/bench-logs
mkdir -p "$LOGDIR"

# wanted BENCH [NAMES…]: true when no names are given or BENCH is one of them.
wanted() {
    local b=$1
    shift
    [[ $# -eq 0 ]] && return 0
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
no_result=()
pass=0
fail=0
for bench in "${ran[@]}" "${failed[@]}"; do
    log=$LOGDIR/$bench.log
    case $bench in
    placement) grep -E "placements/s|faster" "$log" ;;
    placement_api) grep -E "^  (set-up|created|one VM per request|count [0-9]+ per request|latency|split|console CPU|CPU|steps|rule-aware|background|the placement library)" "$log" ;;
    range) grep -E "^range " "$log" ;;
    api_list) grep -E "^  (API|floor|ratio|during)" "$log" ;;
    metrics_scrape) grep -E "^  (scrape|during)" "$log" ;;
    inventory_page) grep -E "^  (page|JSON|ratio)" "$log" ;;
    vm_create) grep -E "^  (POST|QEMU|overhead)" "$log" ;;
    failover) grep -E "^(kill|HA failover)|^  (detected|moved|QEMU|guest)" "$log" ;;
    migration) grep -E "^(case|idle|busy|network|completed|Encryption)|^  (ours|plain|bridge|encrypted|mean gap)( #[0-9]+)?:|does not converge" "$log" ;;
    throughput) sed -n '/^== medians/,$p' "$log" | grep -v "^RESULT \|^round " ;;
    routed_vs_kernel | snat_vs_masquerade | flows_on_off) sed -n "/^== medians/,\$p" "$log" | grep -v "^RESULT " ;;
    firewall_vs_nft) sed -n '/^== firewall/,$p' "$log" | grep -v "^RESULT \|^round \| rounds: \|^    " ;;
    datapath) grep -E " Mpps " "$log" | grep -v "^RESULT " ;;
    qos) grep -E "^(rate |10M |100M |1G |vinfra without)" "$log" ;;
    *) grep -v "^RESULT " "$log" | tail -n 15 ;;
    esac
    grep -E "^SKIPPED:" "$log"
    grep -E "^RESULT " "$log"
    p=$(grep -cE "^RESULT .*PASS$" "$log")
    f=$(grep -cE "^RESULT .*FAIL$" "$log")
    pass=$((pass + p))
    fail=$((fail + f))
    if [[ $((p + f)) -eq 0 ]]; then
        no_result+=("$bench")
        echo "==> $bench printed no RESULT … PASS|FAIL line"
    fi
done
echo
echo "results: $pass PASS, $fail FAIL (a FAIL is a missed target: see docs/benchmarks.md)"
status=0
if [[ $((${#ran[@]} + ${#failed[@]})) -eq 0 ]]; then
    echo "no benchmark ran: the names given ($*) match none of: ${BENCHES[*]#* }"
    status=1
fi
if [[ ${#failed[@]} -gt 0 ]]; then
    echo "failed to run: ${failed[*]}"
    status=1
fi
if [[ ${#no_result[@]} -gt 0 ]]; then
    echo "no RESULT line: ${no_result[*]}"
    status=1
fi
exit $status
