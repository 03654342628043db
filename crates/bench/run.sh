#!/usr/bin/env bash
# Runs the load benchmarks end to end and writes BENCHMARKS.md.
#
#   crates/bench/run.sh            the standard set (a few minutes)
#   crates/bench/run.sh --quick    small sizes, to check the machinery
#
# Builds the release server and chat-bench, creates a fresh PostgreSQL
# database, starts the server on a free loopback port (PostgreSQL + Redis,
# log level warn, cheap argon2, rate limits off), runs `chat-bench all --skip idle`,
# then `chat-bench idle` on a freshly restarted server process, and then
# stops the server, drops the database and writes the figures. With
# BENCH_BEFORE=REV it first runs compare.sh REV (throughput of REV's server
# and this one, alternately, on fresh databases) and reports that too.
#
# Environment:
#   BENCH_PG_BASE   postgres://USER@127.0.0.1:5432 (default: postgres, then root)
#   REDIS_URL       default redis://127.0.0.1:6379
#   BENCH_OUT       the markdown to write (default BENCHMARKS.md at the repository root)
#   BENCH_QUICK=1   same as --quick
#   BENCH_BEFORE    a revision to compare throughput with (compare.sh; BENCH_ROUNDS,
#                   BENCH_USER_STREAMS as there); default 8ea6d49, empty: none
#   BENCH_DJANGO_DIR  the Django Channels reference (default
#                   ../shared/peers/django_chat beside the repository; empty:
#                   none): started for the comparison, run before its first
#                   round and after its last
#   BENCH_QUIET_LOAD=0.8  before measuring, wait (at most BENCH_QUIET_TIMEOUT s,
#                   default 1500) until the 1-minute load average is below this
#   BENCH_SERVER_BIN  the chat-server binary to measure (default the work
#                   tree's release build), e.g. an older revision's from
#                   compare.sh --build-only, for a before/after of one part
#   BENCH_PRESENCE_ARGS  more options for chat-bench presence (e.g.
#                   "--users 32000 --rate 1500")
#   BENCH_KEEP_SEARCH_DB=1  keep the search scenario's database (to study plans)
#   BENCH_ONLY      a comma list of the parts to run (default all of them):
#                   standard (chat-bench all and idle), acks, acks-each and
#                   index (variants.sh), heap (heap.sh), presence, search. Without standard the
#                   report goes to crates/bench/BENCHMARKS-partial.md unless
#                   BENCH_OUT says otherwise (and the raw results to
#                   bench-results-partial.json), so BENCHMARKS.md keeps its figures.
set -euo pipefail

cd "$(dirname "$0")/../.."
root=$(pwd)
quick=""
if [[ "${1:-}" == "--quick" || "${BENCH_QUICK:-}" == "1" ]]; then
  quick="--quick"
fi
only="${BENCH_ONLY:-}"
want() { [[ -z "$only" || ",$only," == *",$1,"* ]]; }
results_json="$root/crates/bench/bench-results.json"
if want standard; then
  out="${BENCH_OUT:-$root/BENCHMARKS.md}"
else
  out="${BENCH_OUT:-$root/crates/bench/BENCHMARKS-partial.md}"
  results_json="$root/crates/bench/bench-results-partial.json"
fi
redis_url="${REDIS_URL:-redis://127.0.0.1:6379}"
target="${CARGO_TARGET_DIR:-$root/target}"
# The server before the event log, the baseline of issues 11 and 18;
# BENCH_BEFORE= (empty) skips the comparison.
before="${BENCH_BEFORE-8ea6d49}"
django_dir="${BENCH_DJANGO_DIR-$root/../shared/peers/django_chat}"
# shellcheck source=crates/bench/lib.sh
source "$root/crates/bench/lib.sh"
bench_raise_nofile

echo "== building (release)"
cargo build --release -p chat-server -p chat-bench
if [[ -n "$before" ]]; then
  BENCH_NO_BUILD=1 "$root/crates/bench/compare.sh" "$before" --build-only
fi

ts=$(date -u +%Y%m%d%H%M%S)
db="bench_${ts}"
work=$(mktemp -d "${TMPDIR:-/tmp}/chat-bench.XXXXXX")

search_db=""
cleanup() {
  set +e
  bench_stop_server
  bench_stop_django
  bench_stop_redis
  bench_drop_db "$db"
  [[ -n "$search_db" ]] && bench_drop_db "$search_db"
  rm -rf "$work"
}
trap cleanup EXIT

quiet_log=$(bench_wait_quiet | tee /dev/stderr | tail -n 1 | sed "s/^== //")
load_at_start=$(cut -d' ' -f1-3 /proc/loadavg)
started_at=$(date -u +%Y-%m-%dT%H:%M:%SZ)

status=0
extra=()
if [[ -n "$before" ]]; then
  django_env=()
  if [[ -n "$django_dir" && -x "$django_dir/run.sh" ]] \
    && bench_start_django "$django_dir" "$(bench_free_port)" "$work/django.log"; then
    django_env=(BENCH_DJANGO_URL="$django_url" BENCH_DJANGO_PID="$django_pid")
  fi
  echo "== throughput before ($before) and after, alternately (compare.sh)"
  env "${django_env[@]}" BENCH_NO_BUILD=1 BENCH_QUIET_LOAD="" BENCH_COMPARE_OUT="$work/compare.json" \
    "$root/crates/bench/compare.sh" "$before" $quick || status=$?
  bench_stop_django
  [[ -s "$work/compare.json" ]] && extra+=("$work/compare.json")
fi

for kind in acks acks-each index; do
  want "$kind" || continue
  echo "== throughput: the cost of $kind (variants.sh $kind)"
  BENCH_NO_BUILD=1 BENCH_QUIET_LOAD="" BENCH_VARIANTS_OUT="$work/$kind.json" \
    "$root/crates/bench/variants.sh" "$kind" $quick || status=$?
  [[ -s "$work/$kind.json" ]] && extra+=("$work/$kind.json")
done

echo "== creating database $db"
bench_create_db "$db"
database_url="$pg_base/$db"
port=$(bench_free_port)
jwt_secret=$(openssl rand -hex 32 2>/dev/null || head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')

# start_server [DATABASE_URL]
start_server() {
  bench_start_server "${BENCH_SERVER_BIN:-$target/release/chat-server}" "${1:-$database_url}" "$port" "$work/server.log" "bench_${ts}:"
}

check_server() {
  bench_check_server "$work/server.log"
}

if want standard; then
  start_server
  echo "== running chat-bench all --skip idle $quick"
  "$target/release/chat-bench" all $quick --skip idle \
    --url "http://127.0.0.1:$port" \
    --server-pid "$server_pid" \
    --database-url "$database_url" \
    --json-out "$work/all.json" || { s=$?; [[ $status -eq 0 ]] && status=$s; }
  check_server
  if [[ ! -s "$work/all.json" ]]; then
    echo "chat-bench produced no results (exit $status)" >&2
    exit 1
  fi

  # Idle on a fresh server process: memory freed by the earlier scenarios
  # stays resident in the allocator and would hide the sockets' own cost.
  bench_stop_server
  start_server
  idle_args=()
  [[ -n "$quick" ]] && idle_args=(--sockets 1000 --pairs 25 --idle 2)
  echo "== running chat-bench idle ${idle_args[*]}"
  "$target/release/chat-bench" idle "${idle_args[@]}" \
    --url "http://127.0.0.1:$port" \
    --server-pid "$server_pid" \
    --json-out "$work/idle.json" || { s=$?; [[ $status -eq 0 ]] && status=$s; }
  check_server
  bench_stop_server
  [[ -s "$work/idle.json" ]] && extra+=("$work/idle.json")
else
  printf '{"scenario":"all","quick":%s,"started_at":"%s","finished_at":"%s","results":{},"failed":false}\n' \
    "$([[ -n "$quick" ]] && echo true || echo false)" "$started_at" "$started_at" >"$work/all.json"
fi

if want heap; then
  if command -v heaptrack >/dev/null; then
    echo "== what an idle socket holds (heap.sh)"
    heap_sockets=${BENCH_HEAP_SOCKETS:-1000 3000}
    [[ -n "$quick" ]] && heap_sockets=${BENCH_HEAP_SOCKETS:-200 600}
    BENCH_NO_BUILD=1 BENCH_HEAP_OUT="$work/heap.md" BENCH_HEAP_JSON="$work/heap.json" \
      BENCH_HEAP_SOCKETS="$heap_sockets" "$root/crates/bench/heap.sh" || status=$?
    [[ -s "$work/heap.json" ]] && extra+=("$work/heap.json")
  else
    echo "== heaptrack is not installed: no heap profile (apt-get install heaptrack)"
  fi
fi

if want presence; then
  # A Redis of its own: its INFO counters are then this server's alone.
  shared_redis=$redis_url
  bench_private_redis "$work"
  start_server
  echo "== running chat-bench presence $quick"
  # shellcheck disable=SC2086 # BENCH_PRESENCE_ARGS is a list of options
  "$target/release/chat-bench" presence $quick ${BENCH_PRESENCE_ARGS:-} \
    --url "http://127.0.0.1:$port" \
    --server-pid "$server_pid" \
    --database-url "$database_url" \
    --redis-url "$redis_url" \
    --json-out "$work/presence.json" || { s=$?; [[ $status -eq 0 ]] && status=$s; }
  check_server
  bench_stop_server
  bench_stop_redis
  redis_url=$shared_redis
  [[ -s "$work/presence.json" ]] && extra+=("$work/presence.json")
fi

if want search; then
  # Millions of messages: a database of its own, dropped afterwards.
  search_db="${db}_search"
  bench_create_db "$search_db"
  start_server "$pg_base/$search_db"
  echo "== running chat-bench search $quick"
  "$target/release/chat-bench" search $quick \
    --url "http://127.0.0.1:$port" \
    --server-pid "$server_pid" \
    --database-url "$pg_base/$search_db" \
    --json-out "$work/search.json" || { s=$?; [[ $status -eq 0 ]] && status=$s; }
  check_server
  bench_stop_server
  if [[ "${BENCH_KEEP_SEARCH_DB:-}" == 1 ]]; then
    echo "== kept database $search_db (BENCH_KEEP_SEARCH_DB=1): drop it when done"
  else
    bench_drop_db "$search_db"
  fi
  search_db=""
  [[ -s "$work/search.json" ]] && extra+=("$work/search.json")
fi
extra_args=()
if ((${#extra[@]})); then
  extra_args=(--extra "$(IFS=,; echo "${extra[*]}")")
fi

if [[ -s "$work/server.log" ]]; then
  echo "== server warnings/errors (last lines)"
  tail -n 20 "$work/server.log"
fi

{
  echo "date:        $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "cpu:         $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
  echo "nproc:       $(nproc)"
  echo "measuring:   from $started_at; ${quiet_log:-no wait for a quiet machine}"
  echo "load avg:    $load_at_start when measuring began, $(cut -d' ' -f1-3 /proc/loadavg) at the end (1, 5, 15 min)"
  echo "kernel:      $(uname -sr)"
  echo "nofile:      $(ulimit -n) (hard $(ulimit -Hn))"
  echo "ports:       $(tr '\t' '-' </proc/sys/net/ipv4/ip_local_port_range) (ephemeral)"
  echo "postgres:    $(psql "$database_url" -X -At -c 'SHOW server_version' 2>/dev/null || echo '?')"
  echo "redis:       $(redis-cli -u "$redis_url" INFO server 2>/dev/null | grep -m1 redis_version | tr -d '\r' || echo '?')"
  echo "rustc:       $(rustc --version)"
  echo "free -g:"
  free -g
} >"$work/machine.txt"

cat >"$work/settings.md" <<EOF
- Everything on this one machine: the release \`chat-server\` (workers: one per core), PostgreSQL,
  Redis and the load generator \`chat-bench\` share the cores listed above, so every figure is
  what is left for the server after the load generator took its share (the \`cpu (cores)\`
  rows in the details show who used what).
- Server environment: \`DATABASE_URL\` = a fresh database \`$db\` (dropped afterwards),
  \`REDIS_URL=$redis_url\`, a random \`JWT_SECRET\`, \`RUST_LOG=warn\`,
  \`CHAT__REDIS__CHANNEL_PREFIX=bench_${ts}:\`, pool size and every other setting at its default.
- Cheap password hashing, as the test harness uses: \`CHAT__AUTH__ARGON2_MEMORY_KIB=1024\`,
  \`CHAT__AUTH__ARGON2_ITERATIONS=1\`. The scenarios register and log in thousands of users during
  setup; login cost is not what is measured.
- Per-user rate limits and the per-user socket cap switched off (\`CHAT__RATE_LIMITS__*=0\`): one
  sender pushes hundreds of messages per second and the idle scenario opens 20 sockets per user.
- \`chat-bench all${quick:+ --quick} --skip idle\`, then \`chat-bench idle\` on a freshly started server
  process (same database), so that memory the allocator kept from earlier scenarios does not
  hide the sockets' cost. Sizes: throughput (100 pairs, 4 sockets per pair, window 16, 10 s after 2 s warm-up),
  latency (2,000 msgs/s open loop over 50 pairs, 10 s; first at 500 and 1,000 msgs/s), history (1,000,000 vs 1,000 messages bulk-inserted
  with psql, 200 reads of each kind; a user with 1,000 conversations), resume (1,000 events, 200 timed
  resumes after 3 untimed ones), idle (20,000 sockets requested, 64 handshakes in flight). \`--quick\`
  shrinks every size.
EOF
if [[ -n "$before" ]]; then
  cat >>"$work/settings.md" <<EOF
- Before and after (\`BENCH_BEFORE=$before\`, \`crates/bench/compare.sh\`, run first): the
  throughput scenario as above, ${BENCH_ROUNDS:-3} rounds of before ($before), after (this work tree)$(
  [[ "${BENCH_USER_STREAMS:-1}" == 1 ]] && echo ", after with one user stream per user")
  in that order, each run on a fresh database and a freshly started server with the settings above.
EOF
fi

if want acks || want acks-each || want index; then
  cat >>"$work/settings.md" <<EOF
- Costs of a feature (\`crates/bench/variants.sh acks|acks-each|index\`, run first): the throughput scenario
  as above, ${BENCH_ROUNDS:-3} rounds of baseline then variant, each on a fresh database and a freshly
  started server: acks off / every receiver socket acking what it got every 100 ms (acks) or
  each message as it arrives (acks-each); the search column and
  GIN index dropped after migrating / as migrated.
EOF
fi
if want presence; then
  cat >>"$work/settings.md" <<EOF
- Presence (\`chat-bench presence${quick:+ --quick}\`, on a freshly started server and a \`redis-server\` of its
  own): 10,000 users seeded with SQL, each connected to 20 others; 200 observers keep their user
  stream open; the others churn at 500 connects/s, each socket held 2 s, for 20 s per phase
  (\`--quick\`: 1,000 users, 10 connections each, 50/s, 5 s).
EOF
fi
if want search; then
  cat >>"$work/settings.md" <<EOF
- Search (\`chat-bench search${quick:+ --quick}\`, on a database of its own, dropped afterwards): 5,000,000 messages
  seeded with SQL, 1,000,000 of them in the searcher's 100 conversations; 100 timed searches per
  class of query (\`--quick\`: 100,000 and 20,000 messages, 20 per class).
EOF
fi

notes_args=()
BENCH_NOTES="${BENCH_NOTES:-$root/crates/bench/analysis.md}"
if [[ -f "${BENCH_NOTES}" ]]; then
  notes_args=(--notes "$BENCH_NOTES")
fi
BENCH_HISTORY="${BENCH_HISTORY:-$root/crates/bench/history.md}"
if [[ -f "${BENCH_HISTORY}" ]]; then
  notes_args+=(--history "$BENCH_HISTORY")
fi
"$target/release/chat-bench" report --input "$work/all.json" "${extra_args[@]}" --out "$out" \
  --merged-out "$results_json" \
  --machine "$work/machine.txt" --settings "$work/settings.md" "${notes_args[@]}"
echo "== results: $out (raw: $results_json)"
exit "$status"
