#!/usr/bin/env bash
# Search before and after a change of the search index, on the same data in
# one run: a database is migrated and served by BEFORE's server, seeded and
# measured by `chat-bench search` (5,000,000 messages, 1,000,000 of them
# the searcher's); then migrated by this work tree's server (the migration
# timed: it re-indexes every row) and measured again with `--existing`,
# BENCH_SEARCH_ROUNDS times (after `VACUUM ANALYZE messages`, also timed).
# The first pages' hit counts of both are compared (the same queries must
# find the same messages).
#
#   BENCH_BEFORE_BIN=path     BEFORE's chat-server (required; e.g. built by
#                             `crates/bench/compare.sh REV --build-only`)
#   BENCH_SEARCH_ROUNDS=2     measurements after the migration
#   BENCH_SEARCH_OUT=dir      where the JSON files go (default
#                             $target/bench-search-upgrade)
#   BENCH_NO_BUILD=1          this tree's release binaries are built already
#   BENCH_PG_BASE, REDIS_URL as for run.sh; --quick for small sizes
set -euo pipefail

cd "$(dirname "$0")/../.."
root=$(pwd)
target="${CARGO_TARGET_DIR:-$root/target}"
redis_url="${REDIS_URL:-redis://127.0.0.1:6379}"
before_bin="${BENCH_BEFORE_BIN:?set BENCH_BEFORE_BIN to the chat-server binary of the before build}"
rounds=${BENCH_SEARCH_ROUNDS:-2}
out="${BENCH_SEARCH_OUT:-$target/bench-search-upgrade}"
quick=${1:-}
# shellcheck source=crates/bench/lib.sh
source "$root/crates/bench/lib.sh"
bench_raise_nofile

if [[ "${BENCH_NO_BUILD:-}" != 1 ]]; then
  cargo build --release -p chat-server -p chat-bench
fi
mkdir -p "$out"
work="$out"
ts=$(date -u +%Y%m%d%H%M%S)
db="bench_${ts}_search"
port=$(bench_free_port)
jwt_secret=$(openssl rand -hex 32 2>/dev/null || head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
log="$out/server.log"
: >"$log"
cleanup() {
  set +e
  bench_stop_server
  [[ "${BENCH_KEEP_SEARCH_DB:-}" == 1 ]] || bench_drop_db "$db"
}
trap cleanup EXIT

bench_create_db "$db"
database_url="$pg_base/$db"
echo "== before: $before_bin"
bench_migrate "$before_bin" "$database_url" "$log"
bench_start_server "$before_bin" "$database_url" "$port" "$log" "bench_${ts}:"
"$target/release/chat-bench" search $quick --url "http://127.0.0.1:$port" \
  --server-pid "$server_pid" --database-url "$database_url" --json-out "$out/before.json"
bench_stop_server

echo "== migrating with this tree's server"
started=$(date +%s.%N)
bench_migrate "$target/release/chat-server" "$database_url" "$log"
migrate_s=$(awk -v a="$started" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
# The migration rewrites every row: what an operator runs after it.
started=$(date +%s.%N)
psql "$database_url" -X -q -c "VACUUM ANALYZE messages"
vacuum_s=$(awk -v a="$started" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
size=$(psql "$database_url" -X -At -c \
  "SELECT pg_size_pretty(pg_total_relation_size('messages')) || ' | ' || pg_size_pretty(pg_relation_size('messages_search'))")
echo "{\"migrate_s\": $migrate_s, \"vacuum_analyze_s\": $vacuum_s, \"table_and_index\": \"$size\"}" | tee "$out/migrate.json"

# The searcher: the user with the most conversations; --existing wants its
# name without the trailing 0.
searcher=$(psql "$database_url" -X -At -c \
  "SELECT u.username FROM users u JOIN conversations c ON u.id IN (c.user_low, c.user_high)
   GROUP BY u.username ORDER BY count(*) DESC LIMIT 1")
bench_start_server "$target/release/chat-server" "$database_url" "$port" "$log" "bench_${ts}:"
for r in $(seq 1 "$rounds"); do
  echo "== after, round $r"
  "$target/release/chat-bench" search $quick --url "http://127.0.0.1:$port" \
    --server-pid "$server_pid" --database-url "$database_url" \
    --existing "${searcher%0}" --json-out "$out/after-$r.json"
done
bench_stop_server

echo "== p99 ms by class (before, after rounds) and whether the first pages found the same"
for f in "$out/before.json" "$out"/after-*.json; do
  printf '%s: %s\n' "$(basename "$f")" \
    "$(jq -c '.by_class | with_entries(.value = .value.latency.p99_ms)' "$f")"
done
if diff <(jq -S '.first_page_hits' "$out/before.json") <(jq -S '.first_page_hits' "$out/after-1.json"); then
  echo "same first pages: yes"
else
  echo "same first pages: NO (above)"
fi
