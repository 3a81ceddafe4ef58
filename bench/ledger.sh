#!/usr/bin/env bash
# Ledger benchmark (issue 4, "Performance"): with `vouch demo --scale N` data,
# release HOLDS due holds and create and export a payout batch of that many
# cash rewards, on SQLite and on Postgres, beside baselines measured in the
# same run on the same data.
#
#   bench/ledger.sh                          # 1,000,000 referrals, 100,000 holds
#   SCALE=100000 HOLDS=10000 bench/ledger.sh # smaller, for a quick look
#   ENGINES=sqlite bench/ledger.sh           # or postgres
#   PG_URL=postgres://postgres@127.0.0.1:5432/test bench/ledger.sh
#
# Per engine, in a fresh SQLite folder / a fresh Postgres database:
#  1. `vouch demo --scale SCALE` (timed; bulk path).
#  2. Every pending hold is pushed ten years out (release_at + 10 y); then
#     HOLDS holds whose original release_at has passed are brought back exactly
#     (release_at - 10 y): those of won (not churned) referrals whose referrer is
#     paid by bank transfer, so every one is approved and lands in the batch.
#  3. Release: `release_holds` (crates/vouch-cli/examples), which runs
#     `vouch_server::holds::release_all_due`, the release step of `vouch jobs
#     run` (the rest of a job run, handing the demo's credits to billing and
#     mail, is not what is measured). Baseline: one set-based `UPDATE rewards SET updated_at = updated_at`
#     over the same rewards (sqlite3 / psql), i.e. touching the rows alone.
#  4. Payout: `vouch serve`; `POST /api/v1/payouts` {method: bank_transfer,
#     currency: USD} (every approved cash reward of bank-transfer payees: the
#     HOLDS just released), then `GET /api/v1/payouts/{id}/export` (CSV).
#     Baseline: writing the same rewards as CSV with the database's own client
#     (`sqlite3 -csv` / `psql \copy ... TO STDOUT CSV`).
# Prints seconds for each step, the ratio to its baseline, and the counts; fails
# if fewer than HOLDS holds could be made due, or the batch does not hold them.
set -euo pipefail
cd "$(dirname "$0")/.."

SCALE=${SCALE:-1000000}
HOLDS=${HOLDS:-100000}
ENGINES=${ENGINES:-sqlite postgres}
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432/test}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/vouch-target}

cargo build --release -q -p vouch-cli --bin vouch --example release_holds
VOUCH=$CARGO_TARGET_DIR/release/vouch
RELEASE=$CARGO_TARGET_DIR/release/examples/release_holds

work=$(mktemp -d)
pids=()
pg_db=""
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  if [ -n "$pg_db" ]; then psql "$PG_URL" -qc "DROP DATABASE IF EXISTS $pg_db WITH (FORCE)" >/dev/null 2>&1 || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

now_s() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", (b > 0 ? a / b : 0) }'; }
wait_for() { for _ in $(seq 300); do curl -fs "$1" >/dev/null 2>&1 && return 0; sleep 0.1; done; echo "no answer from $1" >&2; exit 1; }

TEN_YEARS_US=315360000000000 # 3650 days in microseconds

port=18290
status=0
bench_engine() { # name, sql-runner, db args...
  local name=$1 sql=$2; shift 2
  port=$((port + 1))
  local t0 t1 out key
  echo "== $name: vouch demo --scale $SCALE"
  t0=$(now_s)
  out=$(VOUCH_LOG=warn "$VOUCH" demo --scale "$SCALE" "$@")
  t1=$(now_s)
  local demo_s
  demo_s=$(secs "$t0" "$t1")
  key=$(tail -1 <<<"$out")
  grep -E '^(Demo data|Referrals|  by stage|  by status)' <<<"$out" | sed 's/^/   /'
  local now_us=$(( $(date +%s) * 1000000 ))
  local counts
  counts=$($sql "SELECT COUNT(*), SUM(CASE WHEN status = 'pending' AND release_at IS NOT NULL THEN 1 ELSE 0 END),
      SUM(CASE WHEN status = 'pending' AND release_at IS NOT NULL AND release_at <= $now_us THEN 1 ELSE 0 END)
      FROM rewards")
  echo "   demo: ${demo_s} s; rewards, held, held and due: $counts"

  # Every hold out of reach, then HOLDS due ones brought back as they were.
  $sql "UPDATE rewards SET release_at = release_at + $TEN_YEARS_US
        WHERE status = 'pending' AND release_at IS NOT NULL AND released_at IS NULL" >/dev/null
  $sql "UPDATE rewards SET release_at = release_at - $TEN_YEARS_US WHERE id IN (
          SELECT r.id FROM rewards r
            JOIN referrals f ON f.id = r.referral_id
            JOIN payout_details d ON d.participant_id = r.participant_id
          WHERE r.status = 'pending' AND r.release_at IS NOT NULL AND r.released_at IS NULL
            AND r.release_at - $TEN_YEARS_US <= $now_us AND f.stage = 'won' AND d.method = 'bank_transfer'
          ORDER BY r.id LIMIT $HOLDS)" >/dev/null
  local due
  due=$($sql "SELECT COUNT(*) FROM rewards WHERE status = 'pending' AND release_at IS NOT NULL
              AND released_at IS NULL AND release_at <= $now_us")
  if [ "$due" -lt "$HOLDS" ]; then echo "FAIL: $name: only $due holds could be made due (wanted $HOLDS)" >&2; status=1; return; fi

  # Release, then its baseline over the same rows.
  local rel_line rel_s
  rel_line=$("$RELEASE" "$@")
  rel_s=$(sed -E 's/.* in ([0-9.]+) s.*/\1/' <<<"$rel_line")
  t0=$(now_s)
  $sql "UPDATE rewards SET updated_at = updated_at WHERE released_at IS NOT NULL" >/dev/null
  t1=$(now_s)
  local rel_base
  rel_base=$(secs "$t0" "$t1")
  echo "   release: $rel_line"
  echo "   release baseline (one UPDATE touching the same rows): ${rel_base} s; ratio $(ratio "$rel_s" "$rel_base")"

  # Payout batch and its CSV through the API.
  VOUCH_LOG=warn "$VOUCH" serve --listen "127.0.0.1:$port" "$@" >"$work/$name.serve.log" 2>&1 & local pid=$!
  pids+=($pid)
  wait_for "http://127.0.0.1:$port/readyz"
  local base="http://127.0.0.1:$port/api/v1"
  t0=$(now_s)
  curl -fsS -o "$work/$name.payout.json" -H "Authorization: Bearer $key" -H 'Content-Type: application/json' \
    -H "Idempotency-Key: bench-$name-$(date +%s%N)" \
    -d '{"method":"bank_transfer","currency":"USD"}' "$base/payouts"
  t1=$(now_s)
  local create_s batch
  create_s=$(secs "$t0" "$t1")
  batch=$(sed -nE 's/^\{"id":"([^"]+)".*/\1/p' "$work/$name.payout.json")
  [ -n "$batch" ] || batch=$(grep -oE '"id":"[0-9a-f-]{36}"' "$work/$name.payout.json" | head -1 | cut -d'"' -f4)
  t0=$(now_s)
  curl -fsS -o "$work/$name.payout.csv" -H "Authorization: Bearer $key" "$base/payouts/$batch/export"
  t1=$(now_s)
  local export_s
  export_s=$(secs "$t0" "$t1")
  kill -TERM "$pid"; wait "$pid" || true
  local items in_batch
  items=$(($(wc -l <"$work/$name.payout.csv") - 1))
  in_batch=$($sql "SELECT COUNT(*) FROM payout_item_rewards") # the only batch
  local pay_s
  pay_s=$(awk -v a="$create_s" -v b="$export_s" 'BEGIN { printf "%.3f", a + b }')
  # Baseline: the same rewards as CSV, by the database's own client.
  t0=$(now_s)
  $sql_csv "SELECT r.id, r.participant_id, p.name, p.email, r.amount_minor, r.currency
            FROM rewards r JOIN participants p ON p.id = r.participant_id
            JOIN payout_item_rewards l ON l.reward_id = r.id" >"$work/$name.base.csv"
  t1=$(now_s)
  local pay_base
  pay_base=$(secs "$t0" "$t1")
  echo "   payout: create ${create_s} s + export ${export_s} s = ${pay_s} s; $in_batch rewards in $items items (CSV rows)"
  echo "   payout baseline (the same rewards to CSV with the database client): ${pay_base} s ($(wc -l <"$work/$name.base.csv") rows); ratio $(ratio "$pay_s" "$pay_base")"
  if [ "$in_batch" -ne "$HOLDS" ]; then echo "FAIL: $name: the batch holds $in_batch rewards, not $HOLDS" >&2; status=1; fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$demo_s" "$rel_s" "$rel_base" "$create_s" "$export_s" "$pay_base" "$in_batch" >>"$work/summary.tsv"
}

for engine in $ENGINES; do
  case $engine in
    sqlite)
      db="$work/sqlite/vouch.db"
      sql() { sqlite3 -separator ' ' "$db" "$1"; }
      sql_csv() { sqlite3 -csv "$db" "$1"; }
      sql_csv=sql_csv
      bench_engine sqlite sql --data "$work/sqlite"
      rm -rf "$work/sqlite" ;;
    postgres)
      pg_db="vouch_ledger_bench_$(date +%s)"
      psql "$PG_URL" -qc "CREATE DATABASE $pg_db" >/dev/null
      url="${PG_URL%/*}/$pg_db"
      sql() { psql "$url" -qtAF ' ' -c "$1"; }
      sql_csv() { psql "$url" -qc "\\copy ($1) TO STDOUT CSV"; }
      sql_csv=sql_csv
      bench_engine postgres sql --database-url "$url"
      psql "$PG_URL" -qc "DROP DATABASE $pg_db WITH (FORCE)" >/dev/null
      pg_db="" ;;
  esac
done
echo "== summary (seconds): engine, demo, release, release baseline, payout create, payout export, payout baseline, rewards in batch"
cat "$work/summary.tsv" 2>/dev/null || true
echo "machine: $(nproc) cores ($(awk -F': ' '/model name/{print $2; exit}' /proc/cpuinfo)), $(free -g | awk '/^Mem:/{print $2}') GiB;" \
  "load before the run's end: $(cut -d' ' -f1-3 /proc/loadavg); $(date -u '+%F %H:%M UTC')"
echo "command: $0 (SCALE=$SCALE HOLDS=$HOLDS ENGINES='$ENGINES')"
exit $status
