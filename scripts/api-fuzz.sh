#!/usr/bin/env bash
# Fuzzes the console's REST API with schemathesis (from PyPI) against the API's own OpenAPI
# document: a console of its own on loopback (real TLS, no hosts, the rate limit off so that
# every request is looked at), every operation but `POST /token/rotate` (it would change the
# secret the run uses), bounded: at most VINFRA_API_FUZZ_EXAMPLES cases per operation and
# VINFRA_API_FUZZ_SECONDS in all, with the seed VINFRA_API_FUZZ_SEED (1: CI runs the same cases
# every time; give another to explore). Fails on any 5xx and on any answer the document does not
# describe (its schema, status code, content type or headers). One worker: with two, Debian 12's
# Python 3.11.2 sometimes fails inside schemathesis ("AST constructor recursion depth mismatch":
# `ast.parse` is not thread-safe before 3.11.5), an error of the tool, not of the API.
#
# schemathesis is installed by this script into a virtual environment under /var/cache/vinfra
# (python3-venv comes with VINFRA_PACKAGES). When it cannot be had, the run is skipped
# ("SKIPPED: …") outside CI and fails under CI. Prints a libtest-style "test result:" line, so
# scripts/test.sh counts it as one test.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/common.sh

SCHEMATHESIS_VERSION=4.32.5
VENV=${VINFRA_SCHEMATHESIS_VENV:-/var/cache/vinfra/schemathesis-$SCHEMATHESIS_VERSION}
EXAMPLES=${VINFRA_API_FUZZ_EXAMPLES:-25}
SECONDS_BUDGET=${VINFRA_API_FUZZ_SECONDS:-120}
SEED=${VINFRA_API_FUZZ_SEED:-1}

result() {
    local passed=$1 failed=$2
    if [[ $failed -eq 0 ]]; then
        echo "test result: ok. $passed passed; $failed failed; 0 ignored; 0 measured; 0 filtered out"
    else
        echo "test result: FAILED. $passed passed; $failed failed; 0 ignored; 0 measured; 0 filtered out"
    fi
}

missing() {
    if [[ -n ${CI:-} ]]; then
        echo "api fuzz: $* (CI needs it)" >&2
        result 0 1
        exit 1
    fi
    echo "SKIPPED: api fuzz: $*"
    result 1 0
    exit 0
}

# A virtual environment cannot be moved (its scripts name its path): it is made in place and
# marked complete once schemathesis is in it.
if [[ ! -f $VENV/.complete ]]; then
    [[ -x /usr/bin/python3 ]] || missing "python3 missing (package python3-venv)"
    { rm -rf "$VENV" && mkdir -p "$(dirname "$VENV")" && [[ -w $(dirname "$VENV") ]]; } 2>/dev/null ||
        missing "cannot write $(dirname "$VENV") (set VINFRA_SCHEMATHESIS_VENV)"
    /usr/bin/python3 -m venv "$VENV" || missing "cannot make a virtual environment (package python3-venv)"
    "$VENV/bin/pip" install --quiet "schemathesis==$SCHEMATHESIS_VERSION" ||
        missing "pip could not install schemathesis==$SCHEMATHESIS_VERSION"
    touch "$VENV/.complete"
fi

cargo build --quiet -p vinfra --bin vinfra
VINFRA=${CARGO_TARGET_DIR:-target}/debug/vinfra

WORK=$(mktemp -d -t vinfra-api-fuzz.XXXXXX)
CONSOLE_PID=
cleanup() {
    if [[ -n $CONSOLE_PID ]]; then
        kill "$CONSOLE_PID" 2>/dev/null || true
        wait "$CONSOLE_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

free_port() {
    "$VENV/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
API_PORT=$(free_port)
AGENT_PORT=$(free_port)
"$VINFRA" console --data-dir "$WORK/console" --listen "127.0.0.1:$API_PORT" \
    --agent-listen "127.0.0.1:$AGENT_PORT" --token-file "$WORK/token" --api-rate-limit off \
    >"$WORK/console.log" 2>&1 &
CONSOLE_PID=$!
for _ in $(seq 100); do
    [[ -s $WORK/token ]] && curl -s --cacert "$WORK/console/pki/ca.pem" \
        "https://127.0.0.1:$API_PORT/api/openapi.json" -o /dev/null && break
    kill -0 "$CONSOLE_PID" 2>/dev/null || { cat "$WORK/console.log"; result 0 1; exit 1; }
    sleep 0.1
done

echo "api fuzz: schemathesis $SCHEMATHESIS_VERSION, seed $SEED, $EXAMPLES examples per operation, at most $SECONDS_BUDGET s"
rc=0
(cd "$WORK" && "$VENV/bin/schemathesis" run "https://127.0.0.1:$API_PORT/api/openapi.json" \
    --tls-verify "$WORK/console/pki/ca.pem" \
    --header "Authorization: Bearer $(cat "$WORK/token")" \
    --checks not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance,response_headers_conformance \
    --exclude-path /api/v1/token/rotate \
    --max-examples "$EXAMPLES" --max-time "$SECONDS_BUDGET" --seed "$SEED" \
    --workers 1 --no-color) || rc=$?
if [[ $rc -ne 0 ]]; then
    echo "api fuzz: failed (seed $SEED); the console's log:"
    tail -n 50 "$WORK/console.log"
    result 0 1
    exit 1
fi
result 1 0
