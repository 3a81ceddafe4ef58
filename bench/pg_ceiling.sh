#!/usr/bin/env bash
# What Postgres alone can commit on this machine, for the event benchmark
# (docs/benchmarks.md, "Event ingestion"): pgbench, no Vouch involved.
#
#   bench/pg_ceiling.sh            # PG_URL=postgres://postgres@127.0.0.1:5432/test
#   STATEMENTS=18 bench/pg_ceiling.sh
#   FOLDED=1 bench/pg_ceiling.sh   # claim and answer inside the transaction
#
# Two runs, each with 32 clients on 2 threads for DURATION seconds, prepared
# statements, over TCP on loopback as the server connects:
#  1. Baseline: pgbench's built-in TPC-B-like transaction (5 statements).
#  2. An event-shaped request, shaped like what Vouch sends Postgres for one
#     event (docs/benchmarks.md counts ~41 statements and 6 commits per pair):
#     the Idempotency-Key claim (one autocommitted INSERT), the event's
#     transaction of STATEMENTS statements (half inserts of a fresh row into a
#     table with two indexes, half primary-key reads), and the stored answer
#     (one autocommitted UPDATE). Two requests make a pair. With FOLDED=1 the
#     claim and the answer are inside the transaction: one commit per request
#     instead of three, as decision 0014 proposes for Postgres.
# Prints requests per second and, for (2), the pairs per second Postgres alone
# could take: a ceiling for the event benchmark on this machine before any
# HTTP, JSON or application work.
set -euo pipefail
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432/test}
DURATION=${DURATION:-10}
STATEMENTS=${STATEMENTS:-18}
FOLDED=${FOLDED:-0}
db="vouch_pg_ceiling_$(date +%s)"
psql "$PG_URL" -qc "CREATE DATABASE $db" >/dev/null
url="${PG_URL%/*}/$db"
work=$(mktemp -d)
trap 'psql "$PG_URL" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT

pgbench -q -i -s 10 "$url" >/dev/null 2>&1
echo "== baseline: pgbench TPC-B-like, 32 clients, ${DURATION} s"
pgbench -n -M prepared -c 32 -j 2 -T "$DURATION" "$url" 2>/dev/null | grep -E '^(tps|latency average)'

psql "$url" -qc "CREATE TABLE ev (id bigint PRIMARY KEY, ref bigint NOT NULL, body text NOT NULL, at bigint NOT NULL);
                 CREATE INDEX ev_ref ON ev (ref, at);
                 CREATE TABLE claims (k bigint PRIMARY KEY, answer text)" >/dev/null
claim="INSERT INTO claims (k) VALUES (:base::bigint + :client_id::bigint * 1000000000000000);"
answer="UPDATE claims SET answer = 'answered' WHERE k = :base::bigint + :client_id::bigint * 1000000000000000;"
{
  echo '\set base random(1, 1000000000000)'
  if [ "$FOLDED" = 1 ]; then echo 'BEGIN;'; echo "$claim"; else echo "$claim"; echo 'BEGIN;'; fi
  for i in $(seq $((STATEMENTS / 2))); do
    echo "INSERT INTO ev (id, ref, body, at) VALUES (:base::bigint * 100 + $i + :client_id::bigint * 1000000000000000, :base::bigint, 'an event body of some length', $i);"
    echo "SELECT at FROM ev WHERE id = :base::bigint * 100 + $i + :client_id::bigint * 1000000000000000;"
  done
  if [ "$FOLDED" = 1 ]; then echo "$answer"; echo 'COMMIT;'; else echo 'COMMIT;'; echo "$answer"; fi
} >"$work/event.sql"
shape="claim, $STATEMENTS statements in a transaction, answer"
[ "$FOLDED" = 1 ] && shape="claim, $STATEMENTS statements and answer in one transaction"
echo "== an event-shaped request: $shape; 32 clients, ${DURATION} s"
out=$(pgbench -n -M prepared -c 32 -j 2 -T "$DURATION" -f "$work/event.sql" "$url" 2>/dev/null)
grep -E '^(tps|latency average)' <<<"$out"
tps=$(sed -nE 's/^tps = ([0-9.]+).*/\1/p' <<<"$out")
awk -v t="$tps" 'BEGIN { printf "ceiling: %.0f signup+won pairs/s (two such requests per pair), against a target of 2,000\n", t / 2 }'
echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $(date -u '+%F %H:%M UTC')"
