#!/usr/bin/env bash
# Event ingestion benchmark: `signup` + `won` pairs through `POST /api/v1/events`
# (attribution by referral code, stage derivation, reward, outbox; each answered
# only once committed), on SQLite and on Postgres, beside a baseline measured in
# the same run on the same server: `GET /healthz` with the same wrk settings.
#
#   bench/events.sh                   # 32 connections, 10 s each
#   DURATION=20s CONNECTIONS=32 bench/events.sh
#   PG_URL=postgres://postgres@127.0.0.1:5432/test bench/events.sh
#   ENGINES=sqlite bench/events.sh    # or postgres
#   PROFILE=1 bench/events.sh         # also perf record -g the server during the events run
#
# Prints per engine: requests/s, pairs/s (requests / 2), p99 and the ratio to the
# baseline; fails if any event was answered other than 2xx, or if the won
# referrals stored differ from the `won` events answered 2xx (beyond those in
# flight when wrk stopped).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-32}
THREADS=${THREADS:-2}
REFERRERS=${REFERRERS:-4}
ENGINES=${ENGINES:-sqlite postgres}
PROGRAM_FILE=${PROGRAM_FILE:-examples/programs/customer-credit.toml}
PROGRAM=${PROGRAM:-customer-credit}
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432/test}
PROFILE=${PROFILE:-0}
OUT=${OUT:-}
KEEP=${OUT:+yes}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/vouch-target}

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
cargo build --release -q -p vouch-cli -p vouch-server --bins
VOUCH=$CARGO_TARGET_DIR/release/vouch

work=$(mktemp -d)
OUT=${OUT:-$work}
mkdir -p "$OUT"
pids=()
pg_db=""
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  if [ -n "$pg_db" ]; then psql "$PG_URL" -qc "DROP DATABASE IF EXISTS $pg_db WITH (FORCE)" >/dev/null 2>&1 || true; fi
  rm -rf "$work"   # the SQLite data; wrk outputs too unless OUT was given
}
trap cleanup EXIT

wait_for() { for _ in $(seq 100); do curl -fs "$1" >/dev/null 2>&1 && return 0; sleep 0.1; done; echo "no answer from $1" >&2; exit 1; }

# parse_wrk FILE -> sets RPS P99_US REQUESTS SOCKET_ERRORS
parse_wrk() {
  RPS=$(awk '/^Requests\/sec:/{print $2}' "$1")
  P99_US=$(awk '/^ +99%/{v=$2; if (v ~ /us$/) {sub(/us/,"",v); print v} else if (v ~ /ms$/) {sub(/ms/,"",v); print v*1000} else {sub(/s/,"",v); print v*1e6}}' "$1")
  REQUESTS=$(awk '/requests in/{print $1}' "$1")
  SOCKET_ERRORS=$(awk '/Socket errors/{n++} END{print n+0}' "$1")
}
# cpu_ticks PID... -> user+system clock ticks of those processes (and their threads).
cpu_ticks() { local t=0 p; for p in "$@"; do [ -r "/proc/$p/stat" ] && t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0))); done; echo "$t"; }
pg_pids() { pgrep -u postgres -d ' ' postgres || true; }
total_busy() { awk '/^cpu /{print $2 + $3 + $4 + $7 + $8}' /proc/stat; }
field() { awk -v k="$1" '$1==k{print $2}' "$2"; }

# count_won BASE KEY -> prints the referrals at stage won, counted page by page.
count_won() {
  local base=$1 key=$2 cursor="" total=0 page n
  while :; do
    page=$(curl -fs -H "Authorization: Bearer $key" "$base/api/v1/referrals?program=$PROGRAM&stage=won&limit=500${cursor:+&cursor=$cursor}")
    n=$(grep -o '"stage":"won"' <<<"$page" | wc -l)
    total=$((total + n))
    cursor=$(sed -nE 's/.*"next_cursor":"([^"]+)".*/\1/p' <<<"$page")
    [ -z "$cursor" ] && break
  done
  echo "$total"
}

port=18190
status=0
bench_engine() { # name, db args...
  local name=$1; shift
  port=$((port + 1))
  local base="http://127.0.0.1:$port"
  "$VOUCH" migrate "$@" >/dev/null
  "$VOUCH" program apply "$PROGRAM_FILE" "$@" >/dev/null
  local key
  key=$("$VOUCH" api-key create --name bench "$@" | tail -1)
  VOUCH_LOG=warn "$VOUCH" serve --listen "127.0.0.1:$port" "$@" >"$OUT/$name.serve.log" 2>&1 & local pid=$!
  pids+=($pid)
  wait_for "$base/readyz"
  local codes=() i
  for i in $(seq "$REFERRERS"); do
    codes+=("$(curl -fs -H "Authorization: Bearer $key" -H 'Content-Type: application/json' \
      -d "{\"email\":\"referrer$i@referrer$i.example\",\"name\":\"Bench Referrer $i\",\"kind\":\"customer\"}" \
      "$base/api/v1/programs/$PROGRAM/participants" | sed -E 's/.*"code":"([A-Z0-9]+)".*/\1/')")
  done

  # Baseline: the same wrk settings against /healthz of this server.
  wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency "$base/healthz" >"$OUT/$name.healthz.wrk"
  parse_wrk "$OUT/$name.healthz.wrk"
  local base_rps=$RPS base_p99=$P99_US

  local perf_pid=""
  if [ "$PROFILE" = 1 ]; then
    perf record -g -p "$pid" -o "$OUT/$name.perf.data" -- sleep "$(( ${DURATION%s} - 2 ))" >/dev/null 2>&1 & perf_pid=$!
  fi
  local s0 pg0 b0 pgs
  pgs=$(pg_pids); s0=$(cpu_ticks "$pid"); pg0=$(cpu_ticks $pgs); b0=$(total_busy)
  wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -s bench/events.lua "$base/api/v1/events" \
    -- "$key" "$PROGRAM" "${codes[@]}" >"$OUT/$name.events.wrk"
  local s1 pg1 b1
  s1=$(cpu_ticks "$pid"); pg1=$(cpu_ticks $(pg_pids)); b1=$(total_busy)
  local secs=${DURATION%s} hz
  hz=$(getconf CLK_TCK)
  CPU_LINE=$(awk -v s=$((s1 - s0)) -v g=$((pg1 - pg0)) -v b=$((b1 - b0)) -v hz="$hz" -v d="$secs" -v c="$(nproc)" 'BEGIN {
    printf "CPU during the events run (of %d cores): server %.2f, postgres processes %.2f, everything else (wrk, kernel) %.2f, idle %.2f",
      c, s/hz/d, g/hz/d, (b-s-g)/hz/d, c - b/hz/d }')
  if [ -n "$perf_pid" ]; then
    wait "$perf_pid" || true
    perf report -i "$OUT/$name.perf.data" --no-children --sort symbol --stdio 2>/dev/null | grep -v '^#' | grep -E '^ +[0-9.]+%' | head -40 >"$OUT/$name.perf.txt" || true
  fi
  parse_wrk "$OUT/$name.events.wrk"
  local f="$OUT/$name.events.wrk"
  local signup_ok won_ok non2xx unexpected wons_sent
  signup_ok=$(field SIGNUP_OK "$f"); won_ok=$(field WON_OK "$f"); non2xx=$(field NON_2XX "$f")
  unexpected=$(field UNEXPECTED_2XX "$f"); wons_sent=$(field WONS_SENT "$f")
  local won_stored
  won_stored=$(count_won "$base" "$key")
  kill -TERM "$pid"; wait "$pid" || true

  awk -v n="$name" -v r="$RPS" -v p="$P99_US" -v b="$base_rps" -v bp="$base_p99" 'BEGIN {
    printf "%-9s events %8.0f req/s = %7.0f pairs/s  p99 %6.2f ms  ratio %.3f  | baseline /healthz %8.0f req/s  p99 %5.2f ms\n",
      n, r, r / 2, p / 1000, (b > 0 ? r / b : 0), b, bp / 1000 }'
  echo "          answered 2xx: signups $signup_ok (each made a referral), wons $won_ok; non-2xx $non2xx; other 2xx $unexpected; socket errors $SOCKET_ERRORS; won referrals stored $won_stored (wons sent $wons_sent)"
  echo "          $CPU_LINE"
  grep '^FIRST_UNEXPECTED' "$f" || true
  local won_changed
  won_changed=$(field WON_CHANGED "$f")
  if [ "$won_changed" -ne "$won_ok" ]; then
    echo "FAIL: $name: $won_ok won events answered 2xx but only $won_changed moved their referral" >&2; status=1
  fi
  if [ "$non2xx" -gt 0 ] || [ "$unexpected" -gt 0 ]; then
    echo "FAIL: $name: $non2xx events answered non-2xx, $unexpected answered without the expected effect" >&2; status=1
  fi
  # Every won answered 2xx is stored; a won still in flight when wrk stopped may be too.
  if [ "$won_stored" -lt "$won_ok" ] || [ "$won_stored" -gt "$wons_sent" ]; then
    echo "FAIL: $name: $won_stored won referrals stored, but $won_ok won events answered 2xx of $wons_sent sent" >&2; status=1
  fi
}

for engine in $ENGINES; do
  case $engine in
    sqlite) bench_engine sqlite --data "$work/sqlite" ;;
    postgres)
      pg_db="vouch_events_bench_$(date +%s)"
      psql "$PG_URL" -qc "CREATE DATABASE $pg_db" >/dev/null
      bench_engine postgres --database-url "${PG_URL%/*}/$pg_db"
      psql "$PG_URL" -qc "DROP DATABASE $pg_db WITH (FORCE)" >/dev/null
      pg_db="" ;;
  esac
done
echo "machine: $(nproc) cores ($(awk -F': ' '/model name/{print $2; exit}' /proc/cpuinfo)), $(free -g | awk '/^Mem:/{print $2}') GiB;" \
  "wrk -t$THREADS -c$CONNECTIONS -d$DURATION --latency on loopback, same server for baseline and events; $(date -u '+%F %H:%M UTC')"
echo "command: $0 (DURATION=$DURATION CONNECTIONS=$CONNECTIONS THREADS=$THREADS ENGINES='$ENGINES' PROGRAM_FILE=$PROGRAM_FILE)${KEEP:+; wrk output in $OUT}"
exit $status
