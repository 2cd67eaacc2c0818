#!/usr/bin/env bash
# Everything CI checks, in order: packages, the program check, guest image, formatting, clippy,
# tests. Unit tests run in parallel; integration tests (which boot labs and QEMU guests) through
# scripts/integration.sh: two test binaries side by side, each binary's tests one at a time.
# Every test step runs to its end: one failing test binary does not hide the rest.
# A test whose prerequisite (root, QEMU, the guest image, a program) is missing prints a line
# starting with "SKIPPED:" and returns; under CI (CI set) it fails instead. Ends with a summary
# line "summary: N passed, N failed, N skipped" (skipped tests are not counted as passed) and a
# non-zero exit on failure.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/common.sh

GUEST_DIR=/var/cache/vinfra/guest
# The suite's builds keep no incremental caches and only line tables for debug information
# (backtraces keep file:line): a clean build of every test binary then takes about a third of the
# disk (15 GiB before) and links faster. A caller's own settings win.
export CARGO_INCREMENTAL=${CARGO_INCREMENTAL:-0}
export CARGO_PROFILE_DEV_DEBUG=${CARGO_PROFILE_DEV_DEBUG:-line-tables-only}
LOG=$(mktemp -t vinfra-test.XXXXXX)
trap 'rm -f "$LOG"' EXIT
failed_steps=()

step() {
    local name=$1
    shift
    echo "==> $name"
    if ! "$@" 2>&1 | tee -a "$LOG"; then
        failed_steps+=("$name")
        echo "==> $name FAILED"
    fi
}

if [[ $(id -u) -eq 0 ]]; then
    vinfra_install_packages
elif [[ -n ${CI:-} ]]; then
    echo "CI runs as root: the lab tests need namespaces, taps and QEMU" >&2
    exit 1
else
    echo "not root: skipping package installation (lab tests will be skipped)"
fi
# Every program the code executes is installed by scripts/common.sh (and, as root, now on PATH).
if [[ $(id -u) -eq 0 ]]; then
    step "program check" bash scripts/check-programs.sh --installed
else
    step "program check" bash scripts/check-programs.sh
fi
vinfra_ensure_rust
if [[ $(id -u) -eq 0 ]]; then
    step "guest image" bash scripts/build-guest-image.sh "$GUEST_DIR"
fi
step "cargo fmt --check" cargo fmt --all -- --check
step "cargo clippy" cargo clippy --workspace --all-targets -- -D warnings
step "unit tests" cargo test --workspace --lib --bins --no-fail-fast
step "doc tests" cargo test --workspace --doc --no-fail-fast
step "integration tests" timeout --signal=KILL 3000 bash scripts/integration.sh
# The REST API fuzzed against its OpenAPI document (schemathesis, bounded to 3 minutes).
step "API fuzz (schemathesis)" timeout --signal=KILL 900 bash scripts/api-fuzz.sh

# Bounded runs of the switch's fuzzers (libFuzzer through cargo-fuzz, on the nightly toolchain).
if cargo +nightly --version >/dev/null 2>&1; then
    if ! command -v cargo-fuzz >/dev/null; then
        step "install cargo-fuzz" cargo install cargo-fuzz --locked
    fi
    # libFuzzer reports every new coverage point: keep its log in a file, show the end.
    step "fuzz classify (40 s)" bash -c 'cd fuzz && mkdir -p corpus/classify && rc=0 &&
        { cargo +nightly fuzz run classify corpus/classify seeds/classify -- -max_total_time=40 \
            >../target/fuzz-classify.log 2>&1 || rc=$?; } && tail -n 4 ../target/fuzz-classify.log && exit $rc'
    step "fuzz segment (20 s)" bash -c 'cd fuzz && mkdir -p corpus/segment && rc=0 &&
        { cargo +nightly fuzz run segment corpus/segment seeds/segment -- -max_total_time=20 \
            >../target/fuzz-segment.log 2>&1 || rc=$?; } && tail -n 4 ../target/fuzz-segment.log && exit $rc'
    for target in firewall_rules conntrack; do
        step "fuzz $target (20 s)" bash -c "cd fuzz && mkdir -p corpus/$target && rc=0 &&
            { cargo +nightly fuzz run $target corpus/$target -- -max_total_time=20 \
                >../target/fuzz-$target.log 2>&1 || rc=\$?; } && tail -n 4 ../target/fuzz-$target.log && exit \$rc"
    done
elif [[ -n ${CI:-} ]]; then
    # CI must run the fuzzer: a machine without nightly Rust fails the run instead of skipping.
    step "fuzz (nightly toolchain missing)" false
else
    echo "nightly toolchain missing: fuzz step skipped"
fi

# Labs the integration tests left behind if they were killed (their roots are /tmp/vinfra-lab-NAME).
for root in /tmp/vinfra-lab-*; do
    [[ -d $root && -x target/debug/vinfra ]] || continue
    target/debug/vinfra lab down --name "${root#/tmp/vinfra-lab-}" --root "$root" >/dev/null 2>&1 || true
done

# Tests that returned early print "SKIPPED: …" and count as passed in libtest's own lines.
read -r passed failed ignored skipped < <(awk '/^test result:/ {
        for (i = 1; i <= NF; i++) {
            if ($(i) ~ /^passed/) p += $(i-1)
            if ($(i) ~ /^failed/) f += $(i-1)
            if ($(i) ~ /^ignored/) g += $(i-1)
        }
    }
    /^SKIPPED:/ { s++ }
    END { print p+0, f+0, g+0, s+0 }' "$LOG")
passed=$((passed - skipped))
skipped=$((skipped + ignored))
echo
if [[ -n ${CI:-} && $skipped -gt 0 ]]; then
    # The guards fail under CI; a skip here is a guard that does not look at CI.
    failed_steps+=("no skips under CI")
    grep '^SKIPPED:' "$LOG" || true
fi
if [[ ${#failed_steps[@]} -gt 0 ]]; then
    echo "failed steps: ${failed_steps[*]}"
fi
echo "summary: $passed passed, $failed failed, $skipped skipped"
[[ ${#failed_steps[@]} -eq 0 && $failed -eq 0 ]]
