#!/usr/bin/env bash
# Redirect benchmark: a bare axum 302 (baseline) and `GET /r/{code}` with every
# click persisted, on SQLite and on Postgres, measured in one run with wrk.
#
#   bench/redirect.sh                 # 64 connections, 10 s each
#   DURATION=20s CONNECTIONS=64 bench/redirect.sh
#   PG_URL=postgres://postgres@127.0.0.1:5432/test bench/redirect.sh
#
# Prints one line per target with requests/s, p99 and the ratio to the baseline,
# and checks that the stored clicks cover every click id that was answered.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10s}
CHECK_DURATION=${CHECK_DURATION:-5s}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-2}
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432/test}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/vouch-target}

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
cargo build --release -q -p vouch-cli -p vouch-server --bins --example bare_redirect
VOUCH=$CARGO_TARGET_DIR/release/vouch
BARE=$CARGO_TARGET_DIR/release/examples/bare_redirect

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

wait_for() { for _ in $(seq 100); do curl -fs "$1" >/dev/null 2>&1 && return 0; sleep 0.1; done; echo "no answer from $1" >&2; exit 1; }

# run_wrk NAME URL -> sets RPS P99_US ERRORS. Plain wrk: the figures.
run_wrk() {
  local out
  out=$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency "$2")
  echo "$out" > "$work/$1.wrk"
  RPS=$(awk '/^Requests\/sec:/{print $2}' <<<"$out")
  P99_US=$(awk '/^ +99%/{v=$2; if (v ~ /us$/) {sub(/us/,"",v); print v} else if (v ~ /ms$/) {sub(/ms/,"",v); print v*1000} else {sub(/s/,"",v); print v*1e6}}' <<<"$out")
  ERRORS=$(awk '/Non-2xx or 3xx|Socket errors/{n++} END{print n+0}' <<<"$out")
  REQUESTS=$(awk '/requests in/{print $1}' <<<"$out")
}

# count_wrk URL -> sets ANSWERED: a second pass that reads every Location header
# (slower, so not the one measured) and counts the click ids handed out.
count_wrk() {
  local out
  out=$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"$CHECK_DURATION" -s bench/count_vclid.lua "$1")
  ANSWERED=$(awk '/^VCLID_ANSWERED /{print $2}' <<<"$out")
}

report() { # name rps p99_us baseline_rps answered stored unrecorded
  awk -v n="$1" -v r="$2" -v p="$3" -v b="$4" -v a="$5" -v s="$6" -v u="$7" -v e="$8" 'BEGIN {
    printf "%-22s %9.0f req/s  p99 %6.2f ms  ratio %.2f  | check pass: click ids answered %d, clicks stored in all %s; unrecorded %s; wrk errors %s\n",
      n, r, p / 1000, (b > 0 ? r / b : 1), a, s, u, e }'
}

port=18090
"$BARE" "127.0.0.1:$port" >/dev/null & pids+=($!)
wait_for "http://127.0.0.1:$port/r/warmup" || true
sleep 0.5
run_wrk baseline "http://127.0.0.1:$port/r/BENCH1"
BASE=$RPS
report "bare 302 (baseline)" "$RPS" "$P99_US" "$BASE" 0 "-" "-" "$ERRORS"
CLICKS_BEFORE=0

bench_engine() { # name, db args...
  local name=$1; shift
  local port=$((port + 1))
  "$VOUCH" migrate "$@" >/dev/null
  "$VOUCH" program apply examples/programs/customer-credit.toml "$@" >/dev/null
  local key
  key=$("$VOUCH" api-key create --name bench "$@" | tail -1)
  VOUCH_LOG=warn "$VOUCH" serve --listen "127.0.0.1:$port" "$@" >"$work/$name.serve" 2>&1 & local pid=$!
  pids+=($pid)
  wait_for "http://127.0.0.1:$port/readyz"
  local code
  code=$(curl -fs -H "Authorization: Bearer $key" -H 'Content-Type: application/json' \
    -d '{"email":"bench@example.com","name":"Bench Referrer","kind":"customer"}' \
    "http://127.0.0.1:$port/api/v1/programs/customer-credit/participants" | sed -E 's/.*"code":"([A-Z0-9]+)".*/\1/')
  run_wrk "$name" "http://127.0.0.1:$port/r/$code"
  local metrics stored unrecorded batches
  metrics=$(curl -fs "http://127.0.0.1:$port/metrics")
  count_wrk "http://127.0.0.1:$port/r/$code"
  unrecorded=$(awk '/^vouch_clicks_unrecorded_total/{s+=$2} END{print s+0}' <<<"$metrics")
  batches=$(awk '/^vouch_click_batch_size_count/{c=$2} /^vouch_click_batch_size_sum/{s=$2} END{if (c>0) printf "%.1f", s/c; else print "-"}' <<<"$metrics")
  kill -TERM "$pid"; wait "$pid" || true
  # The count the click writer maintains in the same transaction as the clicks.
  "$VOUCH" serve --listen "127.0.0.1:$port" "$@" >/dev/null 2>&1 & pid=$!
  pids+=($pid)
  wait_for "http://127.0.0.1:$port/readyz"
  stored=$(curl -fs -H "Authorization: Bearer $key" "http://127.0.0.1:$port/api/v1/codes/$code/clicks?limit=1" | sed -E 's/.*"count":([0-9]+).*/\1/')
  kill -TERM "$pid"; wait "$pid" || true
  # Answered in the measured pass: every request, less those sent on unrecorded.
  local expected=$((REQUESTS - unrecorded + ANSWERED))
  report "$name" "$RPS" "$P99_US" "$BASE" "$ANSWERED" "$stored" "$unrecorded" "$ERRORS"
  echo "                       mean click batch in the measured run: $batches clicks per transaction"
  # Every click id answered in the counted pass must be stored, on top of the
  # clicks of the measured pass (all recorded unless counted as unrecorded).
  if [ "$stored" -lt "$expected" ]; then echo "FAIL: $name stored $stored clicks but answered $expected click ids" >&2; exit 1; fi
  echo "                       click ids answered in both passes: $expected; clicks stored: $stored"
}

bench_engine "vouch sqlite" --data "$work/sqlite"
db="vouch_bench_$(date +%s)"
psql "$PG_URL" -qc "CREATE DATABASE $db" >/dev/null
bench_engine "vouch postgres" --database-url "${PG_URL%/*}/$db"
psql "$PG_URL" -qc "DROP DATABASE $db" >/dev/null
echo "machine: $(nproc) cores, $(free -g | awk '/^Mem:/{print $2}') GiB; wrk -t$THREADS -c$CONNECTIONS -d$DURATION on loopback; $(date -u +%F)"
