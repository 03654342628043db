# Shell helpers shared by run.sh and compare.sh (sourced, not run): file
# limits, fresh PostgreSQL databases, a free port, starting and stopping a
# release server with the benchmark's settings, and waiting for a quiet
# machine.
#
# The caller sets: redis_url, jwt_secret, work (a scratch directory).

# Thousands of sockets: the server and the tool inherit this limit.
# Raising the hard limit needs CAP_SYS_RESOURCE; where it is refused the
# idle scenario opens as many sockets as the limit allows and says so.
bench_raise_nofile() {
  local hard
  hard=$(ulimit -Hn)
  if [[ "$hard" != unlimited && "$hard" -lt 65536 ]]; then
    ulimit -Hn 65536 2>/dev/null || true
  fi
  ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
}

# The PostgreSQL base URL that can create databases (postgres://USER@HOST:PORT).
pg_base=""

# bench_create_db NAME: creates the database (the first call picks pg_base).
bench_create_db() {
  local db=$1 base
  if [[ -n "$pg_base" ]]; then
    psql "$pg_base/postgres" -X -q -v ON_ERROR_STOP=1 -c "CREATE DATABASE \"$db\"" >/dev/null
    return
  fi
  for base in ${BENCH_PG_BASE:-postgres://postgres@127.0.0.1:5432 postgres://root@127.0.0.1:5432}; do
    if psql "$base/postgres" -X -q -v ON_ERROR_STOP=1 -c "CREATE DATABASE \"$db\"" >/dev/null 2>"$work/pg.err"; then
      pg_base="$base"
      return
    fi
  done
  echo "cannot create a PostgreSQL database:" >&2
  cat "$work/pg.err" >&2
  return 1
}

# bench_drop_db NAME
bench_drop_db() {
  [[ -n "$pg_base" ]] || return 0
  psql "$pg_base/postgres" -X -q -v ON_ERROR_STOP=1 -c "DROP DATABASE IF EXISTS \"$1\" WITH (FORCE)" >/dev/null \
    && echo "== dropped database $1"
}

# A free port below the ephemeral range (so client ports never collide with it).
bench_free_port() {
  local p
  for p in $(shuf -i 20000-30000 -n 100); do
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      echo "$p"
      return
    fi
  done
  echo "no free port found" >&2
  return 1
}

server_pid=""

# bench_server_env DATABASE_URL PORT CHANNEL_PREFIX COMMAND...: becomes the
# command with the benchmark's server settings (exec: run it in a subshell
# or in the background, whose pid is then the command's).
bench_server_env() {
  local database_url=$1 port=$2 prefix=$3
  shift 3
  # With redis_cluster_nodes set (bench_redis_cluster), the Redis Cluster
  # takes the place of the URL (the two are exclusive).
  local redis_env=(REDIS_URL="$redis_url")
  if [[ -n "${redis_cluster_nodes:-}" ]]; then
    redis_env=(REDIS_URL= REDIS_CLUSTER_NODES="$redis_cluster_nodes")
  fi
  exec env HOST=127.0.0.1 PORT="$port" \
    DATABASE_URL="$database_url" \
    "${redis_env[@]}" \
    JWT_SECRET="$jwt_secret" \
    RUST_LOG=warn \
    CHAT__REDIS__CHANNEL_PREFIX="$prefix" \
    CHAT__AUTH__ARGON2_MEMORY_KIB=1024 \
    CHAT__AUTH__ARGON2_ITERATIONS=1 \
    CHAT__RATE_LIMITS__AUTH_PER_MINUTE=0 \
    CHAT__RATE_LIMITS__MESSAGES_PER_SECOND=0 \
    CHAT__RATE_LIMITS__FRAMES_PER_SECOND=0 \
    CHAT__RATE_LIMITS__MAX_SOCKETS_PER_USER=0 \
    "$@"
}

# bench_migrate BINARY DATABASE_URL LOG: applies the server's migrations.
bench_migrate() {
  (bench_server_env "$2" 0 "bench_migrate:" "$1" migrate) >>"$3" 2>&1
}

# bench_drop_search_index DATABASE_URL: the throughput of a server without
# the search index (search stops working). Before migration 000018 the
# column was generated: it is dropped, and its GIN index with it. Since then
# the server writes the column: only the GIN index is dropped (each message
# still carries its vector; what that costs shows against the server before
# 000018, compare.sh).
bench_drop_search_index() {
  psql "$1" -X -q -v ON_ERROR_STOP=1 -c "DO \$\$ BEGIN
      IF EXISTS (SELECT 1 FROM pg_proc WHERE proname = 'chat_search_vector') THEN
        DROP INDEX messages_search;
      ELSE
        ALTER TABLE messages DROP COLUMN search_vector;
      END IF; END \$\$" >/dev/null
}

# bench_private_redis DIR: starts a redis-server of our own on a free port
# (its command counters are then ours alone); sets redis_url, redis_pid.
redis_pid=""
bench_private_redis() {
  local dir=$1 p
  p=$(bench_free_port)
  redis-server --port "$p" --bind 127.0.0.1 --save "" --appendonly no --dir "$dir" \
    --daemonize no >"$dir/redis.log" 2>&1 &
  redis_pid=$!
  for _ in $(seq 1 50); do
    redis-cli -p "$p" PING >/dev/null 2>&1 && break
    sleep 0.1
  done
  redis_url="redis://127.0.0.1:$p"
  echo "== private redis-server (pid $redis_pid) at $redis_url"
}

# bench_redis_cluster DIR N: starts N redis-server primaries with cluster
# mode on free ports (each in DIR/nodeI), joins them with redis-cli --cluster
# create and waits for cluster_state:ok; sets redis_cluster_nodes
# (host:port,...) and cluster_pids (one per primary, in slot order).
redis_cluster_nodes=""
cluster_pids=()
bench_redis_cluster() {
  local dir=$1 n=$2 i p addrs=() ports=()
  for ((i = 0; i < n; i++)); do
    p=$(bench_free_port)
    mkdir -p "$dir/node$i"
    (cd "$dir/node$i" && exec redis-server --port "$p" --bind 127.0.0.1 --cluster-enabled yes \
      --cluster-config-file nodes.conf --cluster-node-timeout 5000 --save "" --appendonly no \
      --dir . >redis.log 2>&1) &
    cluster_pids+=($!)
    ports+=("$p")
    addrs+=("127.0.0.1:$p")
  done
  for p in "${ports[@]}"; do
    for _ in $(seq 1 50); do
      redis-cli -p "$p" PING >/dev/null 2>&1 && break
      sleep 0.1
    done
  done
  redis-cli --cluster create "${addrs[@]}" --cluster-replicas 0 --cluster-yes >"$dir/create.log"
  for p in "${ports[@]}"; do
    for _ in $(seq 1 100); do
      redis-cli -p "$p" CLUSTER INFO | grep -q cluster_state:ok && break
      sleep 0.1
    done
  done
  redis_cluster_nodes=$(IFS=,; echo "${addrs[*]}")
  echo "== Redis Cluster of $n primaries (pids ${cluster_pids[*]}) at $redis_cluster_nodes"
}

bench_stop_redis_cluster() {
  local pid
  for pid in "${cluster_pids[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  cluster_pids=()
  redis_cluster_nodes=""
}

bench_stop_redis() {
  if [[ -n "$redis_pid" ]] && kill -0 "$redis_pid" 2>/dev/null; then
    kill -TERM "$redis_pid"
    wait "$redis_pid" 2>/dev/null || true
  fi
  redis_pid=""
}

# bench_start_server BINARY DATABASE_URL PORT LOG CHANNEL_PREFIX: starts a
# release server with the benchmark's settings and waits until it is ready;
# sets server_pid.
bench_start_server() {
  local binary=$1 database_url=$2 port=$3 log=$4 prefix=$5
  echo "== starting $binary on 127.0.0.1:$port"
  bench_server_env "$database_url" "$port" "$prefix" "$binary" serve >>"$log" 2>&1 &
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
    tail -n 50 "$log" >&2
    return 1
  fi
}

bench_stop_server() {
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

# bench_start_django DIR PORT LOG: the Django Channels stack this service
# replaces (its services.sh up, then run.sh: one Daphne process on PORT,
# cheap password hashing for the setup, as ours gets), waited for until it
# answers; sets django_pid and django_url. Its virtualenv is created on the
# first start (pip, needs the network once).
django_pid=""
django_home=""
bench_start_django() {
  django_home=$1
  local port=$2 log=$3
  echo "== starting the Django reference ($django_home) on 127.0.0.1:$port"
  (cd "$django_home" && ./services.sh up) >>"$log" 2>&1
  (cd "$django_home" && PORT=$port PBKDF2_ITERATIONS=1000 LOG_LEVEL=WARNING exec ./run.sh) >>"$log" 2>&1 &
  django_pid=$!
  django_url="http://127.0.0.1:$port"
  for _ in $(seq 1 600); do
    curl -s -o /dev/null "$django_url/api/chat/conversations/" && return 0
    kill -0 "$django_pid" 2>/dev/null || break
    sleep 0.5
  done
  echo "the Django reference did not start; its log:" >&2
  tail -n 30 "$log" >&2
  bench_stop_django
  return 1
}

bench_stop_django() {
  if [[ -n "$django_pid" ]] && kill -0 "$django_pid" 2>/dev/null; then
    kill -TERM "$django_pid"
    wait "$django_pid" 2>/dev/null || true
  fi
  django_pid=""
  if [[ -n "$django_home" ]]; then
    (cd "$django_home" && ./services.sh down) >/dev/null 2>&1 || true
  fi
  django_home=""
}

# bench_django_run N: one throughput run (tp_args) against the running
# Django reference (BENCH_DJANGO_URL, BENCH_DJANGO_PID); its JSON joins
# $runs as label django. It loses messages under this load, so its run
# "fails" the integrity check: that is its figure, not a broken run.
bench_django_run() {
  local n=$1
  echo "== run $n: django ($(cut -d' ' -f1-3 /proc/loadavg))"
  "$bench_bin" throughput "${tp_args[@]}" \
    --url "$BENCH_DJANGO_URL" \
    --ready-path /api/chat/conversations/ \
    --server-pid "$BENCH_DJANGO_PID" \
    --json-out "$work/run-$n.json" >"$work/run-$n.out" || true
  grep -v '^{' "$work/run-$n.out" || true
  runs+="${runs:+,}django=$work/run-$n.json"
  sleep 2
}

# bench_check_server LOG: says so when the server died during a run.
bench_check_server() {
  if ! kill -0 "$server_pid" 2>/dev/null; then
    echo "the server exited during the run; its log:" >&2
    tail -n 50 "$1" >&2
  fi
}

# With BENCH_QUIET_LOAD=X, waits until the 1-minute load average is below
# X (other work on this machine skews every figure), polling every 15 s for
# at most BENCH_QUIET_TIMEOUT seconds (default 1500), then measures anyway
# and says so. Prints what it saw; the caller records it.
bench_wait_quiet() {
  local limit=${BENCH_QUIET_LOAD:-} timeout=${BENCH_QUIET_TIMEOUT:-1500} waited=0 load
  [[ -n "$limit" ]] || return 0
  while :; do
    load=$(cut -d' ' -f1 /proc/loadavg)
    if awk -v l="$load" -v m="$limit" 'BEGIN { exit !(l < m) }'; then
      echo "== machine quiet: 1-minute load $load < $limit after ${waited} s"
      return 0
    fi
    if ((waited >= timeout)); then
      echo "== machine still busy after ${waited} s (1-minute load $load >= $limit); measuring anyway"
      return 0
    fi
    echo "== waiting for a quiet machine: 1-minute load $load >= $limit (${waited} s)"
    sleep 15
    waited=$((waited + 15))
  done
}

# bench_runs_begin NAME MODE: what a script of alternating throughput runs
# sets up: file limits, a scratch directory $work, $ts, a JWT secret, the
# cleanup on exit (server, database, scratch), the tp_args of MODE
# (--quick: small sizes) and the wait for a quiet machine.
bench_runs_begin() {
  bench_raise_nofile
  work=$(mktemp -d "${TMPDIR:-/tmp}/chat-$1.XXXXXX")
  ts=$(date -u +%Y%m%d%H%M%S)
  jwt_secret=$(openssl rand -hex 32 2>/dev/null || head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
  db=""
  trap bench_runs_cleanup EXIT
  tp_args=()
  [[ "$2" == --quick ]] && tp_args=(--pairs 10 --duration 3 --warmup 1)
  bench_wait_quiet
}

bench_runs_cleanup() {
  set +e
  bench_stop_server
  [[ -n "$db" ]] && bench_drop_db "$db"
  rm -rf "$work"
}

# PREPARE hooks of bench_throughput_run (BINARY DATABASE_URL LOG).
bench_prepare_nothing() { :; }
bench_prepare_with_sql() {
  bench_migrate "$1" "$2" "$3"
  psql "$2" -X -q -v ON_ERROR_STOP=1 -c "$BENCH_VARIANT_SQL" >/dev/null
}
bench_prepare_without_index() {
  bench_migrate "$1" "$2" "$3"
  bench_drop_search_index "$2"
}

# bench_throughput_run N LABEL BINARY PREPARE DB_TAG [CHAT-BENCH ARGS...]:
# one throughput run (options: the tp_args array, then the arguments) of
# chat-bench $bench_bin against BINARY on a fresh database DB_TAG_N, after
# PREPARE; the JSON in $work/run-N.json, LABEL=that file appended to $runs,
# $status set when it fails. The database is dropped afterwards.
bench_throughput_run() {
  local n=$1 label=$2 binary=$3 prepare=$4 tag=$5 log port
  shift 5
  db="${tag}_${n}"
  bench_create_db "$db"
  log="$work/server-$n.log"
  "$prepare" "$binary" "$pg_base/$db" "$log"
  port=$(bench_free_port)
  bench_start_server "$binary" "$pg_base/$db" "$port" "$log" "${db}:"
  echo "== run $n: $label ($(cut -d' ' -f1-3 /proc/loadavg))"
  "$bench_bin" throughput "${tp_args[@]}" "$@" \
    --url "http://127.0.0.1:$port" \
    --server-pid "$server_pid" \
    --json-out "$work/run-$n.json" >"$work/run-$n.out" || status=$?
  grep -v '^{' "$work/run-$n.out" || true
  bench_check_server "$log"
  bench_stop_server
  if grep -qiE 'error|panic' "$log"; then
    echo "== server log of run $n (warnings/errors, last lines)"
    tail -n 10 "$log"
  fi
  bench_drop_db "$db"
  db=""
  runs+="${runs:+,}$label=$work/run-$n.json"
  sleep 2
}
