#!/usr/bin/env bash
# mock-llm against a static-response wiremock server, same machine, same load:
#   wrk -t2 -c64 on loopback (wrk shares the cores with the server), non-streaming completions,
#   mock-llm with limits high enough not to throttle but enforced and reported in headers.
# Usage: bash benches/mock-server.sh [SECONDS]     (needs wrk: apt-get install wrk)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 2; }
cargo build --release -q -p mock-llm --features server --bin mock-llm
cargo build --release -q -p orchbench-benches --bin static-wiremock
lua=benches/chat.lua
run() { # name, url
  local out; out=$(wrk -t2 -c64 -d"${secs}s" --latency -s "$lua" "$2/v1/chat/completions")
  local rps p50 p99
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out"); p50=$(awk '$1=="50%" {print $2}' <<<"$out"); p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  printf '%-16s %12s req/s   p50 %-8s p99 %s\n' "$1" "$rps" "$p50" "$p99" >&2
  echo "$rps"
}
./target/release/mock-llm --port 18080 --tpm 1000000000000 --rpm 1000000000000 --base-ms 0 --per-token-ms 0 --sigma 0 >/dev/null &
m=$!
./target/release/static-wiremock 18090 >/dev/null &
w=$!
trap 'kill $m $w 2>/dev/null || true' EXIT
sleep 1
# Measure these servers, not a stale one still holding the port.
kill -0 $m 2>/dev/null || { echo "mock-llm did not start: is port 18080 taken?" >&2; exit 2; }
kill -0 $w 2>/dev/null || { echo "static-wiremock did not start: is port 18090 taken?" >&2; exit 2; }
a=$(run mock-llm http://127.0.0.1:18080)
b=$(run static-wiremock http://127.0.0.1:18090)
python3 -c "print(f'mock-llm / static wiremock = {$a / $b:.2f}')"
