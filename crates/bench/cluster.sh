#!/usr/bin/env bash
# Cross-node delivery on a Redis Cluster versus one node on one Redis, in
# one run (issue 17):
#
#   crates/bench/cluster.sh            standard sizes (about 5 minutes)
#   crates/bench/cluster.sh --quick    small sizes, to check the machinery
#
# Three setups, each on a fresh PostgreSQL database and freshly started
# release servers, each measured with the latency scenario (open loop,
# 2,000 msgs/s over 50 pairs, 10 s) and the throughput scenario (100 pairs,
# window 16, 10 s):
#   single   one node on a redis-server of its own (every delivery local);
#   redis3   three nodes on that redis-server, each pair's users on two
#            different nodes (chat-bench --nodes): every delivery crosses
#            nodes through classic pub/sub;
#   cluster3 three nodes on a three-primary Redis Cluster of its own
#            (REDIS_CLUSTER_NODES, sharded pub/sub), users placed as in redis3.
# Every server process and every redis-server is watched for CPU
# (chat-bench --watch-pids), and each shard's INFO commandstats is kept,
# so per-node and per-shard costs per message can be read off.
#
# Writes crates/bench/cluster-results.json (the raw results, one object per
# setup and scenario; BENCH_CLUSTER_OUT elsewhere) and prints a summary.
# BENCH_SETUPS orders the setups (default "single redis3 cluster3"). The
# runs in BENCHMARKS.md are kept as cluster-results-1.json and -2.json. Environment: BENCH_PG_BASE as
# in run.sh, BENCH_NO_BUILD=1 to skip the release build.
set -euo pipefail

cd "$(dirname "$0")/../.."
root=$(pwd)
quick=""
[[ "${1:-}" == "--quick" || "${BENCH_QUICK:-}" == "1" ]] && quick="--quick"
target="${CARGO_TARGET_DIR:-$root/target}"
out_json="${BENCH_CLUSTER_OUT:-$root/crates/bench/cluster-results.json}"
# shellcheck source=crates/bench/lib.sh
source "$root/crates/bench/lib.sh"
bench_raise_nofile

if [[ "${BENCH_NO_BUILD:-}" != 1 ]]; then
  echo "== building (release)"
  cargo build --release -p chat-server -p chat-bench
fi
bench_bin="$target/release/chat-bench"
server_bin="$target/release/chat-server"

ts=$(date -u +%Y%m%d%H%M%S)
work=$(mktemp -d "${TMPDIR:-/tmp}/chat-cluster-bench.XXXXXX")
jwt_secret=$(openssl rand -hex 32 2>/dev/null || head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
db=""
node_pids=()
stop_nodes() {
  local pid
  for pid in "${node_pids[@]}"; do
    server_pid=$pid
    bench_stop_server
  done
  node_pids=()
}
single_redis_pid=""
shard_pids=()
cleanup() {
  set +e
  stop_nodes
  # Whichever setup was running: stop both servers of ours.
  [[ -n "$single_redis_pid" ]] && redis_pid=$single_redis_pid
  bench_stop_redis
  ((${#shard_pids[@]})) && cluster_pids=("${shard_pids[@]}")
  bench_stop_redis_cluster
  [[ -n "$db" ]] && bench_drop_db "$db"
  rm -rf "$work"
}
trap cleanup EXIT

lt_args=(--rate 2000 --pairs 50 --duration 10)
tp_args=(--pairs 100 --window 16 --duration 10 --warmup 2)
if [[ -n "$quick" ]]; then
  lt_args=(--rate 500 --pairs 10 --duration 3)
  tp_args=(--pairs 10 --duration 3 --warmup 1)
fi

status=0
results=()
load_at_start=$(cut -d' ' -f1-3 /proc/loadavg)

# run_setup NAME NODES: starts NODES servers on a fresh database (with the
# Redis or cluster set up by the caller), runs latency then throughput.
run_setup() {
  local name=$1 n=$2 i port urls=() watch=() scenario
  db="bench_cluster_${ts}_${name}"
  bench_create_db "$db"
  for ((i = 0; i < n; i++)); do
    port=$(bench_free_port)
    bench_start_server "$server_bin" "$pg_base/$db" "$port" "$work/$name-node$i.log" "bench_${ts}_${name}:"
    node_pids+=("$server_pid")
    urls+=("http://127.0.0.1:$port")
    ((i > 0)) && watch+=("node$((i + 1))=$server_pid")
  done
  [[ -n "${redis_pid:-}" ]] && watch+=("redis=$redis_pid")
  for i in "${!cluster_pids[@]}"; do
    watch+=("shard$i=${cluster_pids[$i]}")
  done
  local nodes_args=()
  ((n > 1)) && nodes_args=(--nodes "$(IFS=,; echo "${urls[*]:1}")")
  local watch_args=()
  ((${#watch[@]})) && watch_args=(--watch-pids "$(IFS=,; echo "${watch[*]}")")
  for scenario in latency throughput; do
    local args=("${lt_args[@]}")
    [[ $scenario == throughput ]] && args=("${tp_args[@]}")
    echo "== $name: $scenario on $n node(s) ($(cut -d' ' -f1-3 /proc/loadavg))"
    "$bench_bin" "$scenario" "${args[@]}" --url "${urls[0]}" --server-pid "${node_pids[0]}" \
      "${nodes_args[@]}" "${watch_args[@]}" \
      --json-out "$work/$name-$scenario.json" >"$work/$name-$scenario.out" || status=$?
    grep -v '^{' "$work/$name-$scenario.out" || true
    [[ -s "$work/$name-$scenario.json" ]] &&
      results+=("$(jq -c --arg setup "$name" --arg scenario "$scenario" --argjson nodes "$n" \
        '{setup: $setup, scenario: $scenario, nodes: $nodes, result: .}' "$work/$name-$scenario.json")")
  done
  stop_nodes
  bench_drop_db "$db"
  db=""
}

# One redis-server of our own for single and redis3, a cluster of our own
# for cluster3, both up for the whole run; BENCH_SETUPS orders the setups
# (default "single redis3 cluster3").
bench_private_redis "$work"
single_redis_url=$redis_url
single_redis_pid=$redis_pid
mkdir -p "$work/cluster"
bench_redis_cluster "$work/cluster" 3
cluster_nodes=$redis_cluster_nodes
shard_pids=("${cluster_pids[@]}")
for setup in ${BENCH_SETUPS:-single redis3 cluster3}; do
  case $setup in
    single | redis3)
      redis_url=$single_redis_url redis_pid=$single_redis_pid redis_cluster_nodes="" cluster_pids=()
      [[ $setup == single ]] && run_setup single 1 || run_setup redis3 3
      ;;
    cluster3)
      redis_url="" redis_pid="" redis_cluster_nodes=$cluster_nodes cluster_pids=("${shard_pids[@]}")
      run_setup cluster3 3
      ;;
    *) echo "unknown setup $setup" >&2; exit 2 ;;
  esac
done
redis_info=$(redis-cli -u "$single_redis_url" INFO commandstats | tr -d '\r' | grep -E 'cmdstat_(publish|subscribe|unsubscribe|eval|ping)' || true)
shard_info=()
for addr in ${cluster_nodes//,/ }; do
  shard_info+=("$addr: $(redis-cli -h "${addr%:*}" -p "${addr#*:}" INFO commandstats | tr -d '\r' |
    grep -E 'cmdstat_(spublish|ssubscribe|sunsubscribe|evalsha|eval|hlen|cluster)' | tr '\n' ' ')")
done
redis_pid=$single_redis_pid
bench_stop_redis
cluster_pids=("${shard_pids[@]}")
bench_stop_redis_cluster

{
  printf '{"date":"%s","load_avg_start":"%s","load_avg_end":"%s","nproc":%s,"quick":%s,' \
    "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$load_at_start" "$(cut -d' ' -f1-3 /proc/loadavg)" "$(nproc)" \
    "$([[ -n "$quick" ]] && echo true || echo false)"
  printf '"redis_commandstats":%s,"shard_commandstats":%s,"runs":[%s]}\n' \
    "$(jq -Rs . <<<"$redis_info")" \
    "$(printf '%s\n' "${shard_info[@]}" | jq -Rs 'split("\n") | map(select(. != ""))')" \
    "$(IFS=,; echo "${results[*]}")"
} | jq . >"$out_json"

echo "== summary (latency from the scheduled send; throughput in deliveries/s to receiver sockets)"
jq -r '.runs[] | [.setup, .scenario, .nodes,
    (.result.latency.p50_ms // "-"), (.result.latency.p99_ms // "-"),
    .result.delivered_msgs_per_s, .result.persisted_msgs_per_s,
    (.result.integrity | tostring), (.result.cpu_cores | tostring)] | @tsv' "$out_json"
echo "== results: $out_json"
exit "$status"
