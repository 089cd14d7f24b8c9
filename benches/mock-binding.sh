#!/usr/bin/env bash
# mock-llm with its TPM limit binding under the same load as benches/mock-server.sh: do the tokens
# it admits per minute match the limit? Reads /metrics after a 15 s warm-up (the bucket starts
# full: one minute's worth) and again SECONDS later, and compares the rate with --tpm.
# Usage: bash benches/mock-binding.sh [SECONDS]     (needs wrk: apt-get install wrk)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-45}
tpm=6000000
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 2; }
cargo build --release -q -p mock-llm --features server --bin mock-llm
lua=benches/chat.lua
./target/release/mock-llm --port 18080 --tpm $tpm --rpm 1000000000000 --base-ms 0 --per-token-ms 0 --sigma 0 --reject-ms 0 >/dev/null &
m=$!
trap 'kill $m 2>/dev/null || true' EXIT
sleep 1
# Measure these servers, not a stale one still holding the port.
kill -0 $m 2>/dev/null || { echo "mock-llm did not start: is port 18080 taken?" >&2; exit 2; }
admitted() { curl -s http://127.0.0.1:18080/metrics | awk '/^mock_llm_tokens_admitted_total/ {print $2}'; }
wrk -t2 -c64 -d"$((secs + 20))s" -s "$lua" http://127.0.0.1:18080/v1/chat/completions >/dev/null &
w=$!
sleep 15
a=$(admitted); t0=$(date +%s.%N)
sleep "$secs"
b=$(admitted); t1=$(date +%s.%N)
wait $w
python3 -c "r = ($b - $a) / ($t1 - $t0) * 60; print(f'admitted {r:,.0f} tokens/min against {$tpm:,} TPM ({(r / $tpm - 1) * 100:+.3f}%)')"
