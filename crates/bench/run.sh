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
# stops the server, drops the database and writes the figures.
#
# Environment:
#   BENCH_PG_BASE   postgres://USER@127.0.0.1:5432 (default: postgres, then root)
#   REDIS_URL       default redis://127.0.0.1:6379
#   BENCH_OUT       the markdown to write (default BENCHMARKS.md at the repository root)
#   BENCH_QUICK=1   same as --quick
set -euo pipefail

cd "$(dirname "$0")/../.."
root=$(pwd)
quick=""
if [[ "${1:-}" == "--quick" || "${BENCH_QUICK:-}" == "1" ]]; then
  quick="--quick"
fi
out="${BENCH_OUT:-$root/BENCHMARKS.md}"
results_json="$root/crates/bench/bench-results.json"
redis_url="${REDIS_URL:-redis://127.0.0.1:6379}"
target="${CARGO_TARGET_DIR:-$root/target}"

# Thousands of sockets: the server and the tool inherit this limit.
# Raising the hard limit needs CAP_SYS_RESOURCE; where it is refused the
# idle scenario opens as many sockets as the limit allows and says so.
hard=$(ulimit -Hn)
if [[ "$hard" != unlimited && "$hard" -lt 65536 ]]; then
  ulimit -Hn 65536 2>/dev/null || true
fi
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

echo "== building (release)"
cargo build --release -p chat-server -p chat-bench

ts=$(date -u +%Y%m%d%H%M%S)
db="bench_${ts}"
work=$(mktemp -d "${TMPDIR:-/tmp}/chat-bench.XXXXXX")
server_pid=""
pg_base=""

stop_server() {
  if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid"
    for _ in $(seq 1 150); do
      kill -0 "$server_pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -0 "$server_pid" 2>/dev/null && kill -KILL "$server_pid"
    wait "$server_pid" 2>/dev/null || true
  fi
  server_pid=""
}

cleanup() {
  set +e
  stop_server
  if [[ -n "$pg_base" ]]; then
    psql "$pg_base/postgres" -X -q -v ON_ERROR_STOP=1 -c "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null \
      && echo "== dropped database $db"
  fi
  rm -rf "$work"
}
trap cleanup EXIT

echo "== creating database $db"
for base in ${BENCH_PG_BASE:-postgres://postgres@127.0.0.1:5432 postgres://root@127.0.0.1:5432}; do
  if psql "$base/postgres" -X -q -v ON_ERROR_STOP=1 -c "CREATE DATABASE \"$db\"" >/dev/null 2>"$work/pg.err"; then
    pg_base="$base"
    break
  fi
done
if [[ -z "$pg_base" ]]; then
  echo "cannot create a PostgreSQL database:" >&2
  cat "$work/pg.err" >&2
  exit 1
fi
database_url="$pg_base/$db"

# A free port below the ephemeral range (so client ports never collide with it).
port=""
for p in $(shuf -i 20000-30000 -n 100); do
  if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
    port=$p
    break
  fi
done
[[ -n "$port" ]] || { echo "no free port found" >&2; exit 1; }

jwt_secret=$(openssl rand -hex 32 2>/dev/null || head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')

start_server() {
  echo "== starting chat-server on 127.0.0.1:$port"
  env HOST=127.0.0.1 PORT="$port" \
    DATABASE_URL="$database_url" \
    REDIS_URL="$redis_url" \
    JWT_SECRET="$jwt_secret" \
    RUST_LOG=warn \
    CHAT__REDIS__CHANNEL_PREFIX="bench_${ts}:" \
    CHAT__AUTH__ARGON2_MEMORY_KIB=1024 \
    CHAT__AUTH__ARGON2_ITERATIONS=1 \
    CHAT__RATE_LIMITS__AUTH_PER_MINUTE=0 \
    CHAT__RATE_LIMITS__MESSAGES_PER_SECOND=0 \
    CHAT__RATE_LIMITS__MAX_SOCKETS_PER_USER=0 \
    "$target/release/chat-server" serve >>"$work/server.log" 2>&1 &
  server_pid=$!
  local ready=""
  for _ in $(seq 1 300); do
    if curl -fsS "http://127.0.0.1:$port/readyz/" >/dev/null 2>&1; then
      ready=1
      break
    fi
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.2
  done
  if [[ -z "$ready" ]]; then
    echo "the server did not become ready; its log:" >&2
    tail -n 50 "$work/server.log" >&2
    exit 1
  fi
}

check_server() {
  if ! kill -0 "$server_pid" 2>/dev/null; then
    echo "the server exited during the run; its log:" >&2
    tail -n 50 "$work/server.log" >&2
  fi
}

status=0
start_server
echo "== running chat-bench all --skip idle $quick"
"$target/release/chat-bench" all $quick --skip idle \
  --url "http://127.0.0.1:$port" \
  --server-pid "$server_pid" \
  --database-url "$database_url" \
  --json-out "$work/all.json" || status=$?
check_server
if [[ ! -s "$work/all.json" ]]; then
  echo "chat-bench produced no results (exit $status)" >&2
  exit 1
fi

# Idle on a fresh server process: memory freed by the earlier scenarios
# stays resident in the allocator and would hide the sockets' own cost.
stop_server
start_server
idle_args=()
[[ -n "$quick" ]] && idle_args=(--sockets 1000 --pairs 25 --idle 2)
echo "== running chat-bench idle ${idle_args[*]}"
"$target/release/chat-bench" idle "${idle_args[@]}" \
  --url "http://127.0.0.1:$port" \
  --server-pid "$server_pid" \
  --json-out "$work/idle.json" || { s=$?; [[ $status -eq 0 ]] && status=$s; }
check_server
stop_server
extra=()
[[ -s "$work/idle.json" ]] && extra=(--extra "$work/idle.json")

if [[ -s "$work/server.log" ]]; then
  echo "== server warnings/errors (last lines)"
  tail -n 20 "$work/server.log"
fi

{
  echo "date:        $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "cpu:         $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
  echo "nproc:       $(nproc)"
  echo "load avg:    $(cut -d' ' -f1-3 /proc/loadavg) (at the end of the run; 1, 5, 15 min)"
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
  with psql, 200 reads of each kind; a user with 1,000 conversations), idle (20,000 sockets requested,
  64 handshakes in flight). \`--quick\` shrinks every size.
EOF

notes_args=()
BENCH_NOTES="${BENCH_NOTES:-$root/crates/bench/analysis.md}"
if [[ -f "${BENCH_NOTES}" ]]; then
  notes_args=(--notes "$BENCH_NOTES")
fi
"$target/release/chat-bench" report --input "$work/all.json" "${extra[@]}" --out "$out" \
  --merged-out "$results_json" \
  --machine "$work/machine.txt" --settings "$work/settings.md" "${notes_args[@]}"
echo "== results: $out (raw: $results_json)"
exit "$status"
