#!/usr/bin/env bash
# What an idle socket holds: a heap profile (heaptrack) of the release
# server with few and with many idle sockets open, and the difference per
# allocation site divided by the difference in sockets.
#
#   crates/bench/heap.sh                 1,000 and 3,000 sockets
#   BENCH_HEAP_SOCKETS="500 1500" crates/bench/heap.sh
#
# For each count: a fresh database, the release server started under
# heaptrack with run.sh's settings (PostgreSQL + Redis), `chat-bench idle`
# opening the sockets; once they are all open and a few seconds idle the
# server is killed (SIGKILL), so what heaptrack reports as not freed is
# exactly what was live with the sockets open. The two profiles' live bytes
# are grouped by the first frame that is not allocator plumbing (the code
# that asked for the memory) and subtracted, so memory that does not grow
# with the sockets (pools, caches, the setup's leftovers) cancels out.
# Writes a markdown table (BENCH_HEAP_OUT, default $target/bench-heap.md)
# and a JSON line (BENCH_HEAP_JSON) that `chat-bench report --extra` reads.
#
# Needs heaptrack (Debian: apt-get install heaptrack) and python3.
set -euo pipefail

cd "$(dirname "$0")/../.."
root=$(pwd)
here="$root/crates/bench"
target="${CARGO_TARGET_DIR:-$root/target}"
redis_url="${REDIS_URL:-redis://127.0.0.1:6379}"
read -r -a counts <<<"${BENCH_HEAP_SOCKETS:-1000 3000}"
((${#counts[@]} == 2)) || { echo "BENCH_HEAP_SOCKETS needs two counts" >&2; exit 2; }
out="${BENCH_HEAP_OUT:-$target/bench-heap.md}"
json_out="${BENCH_HEAP_JSON:-$target/bench-heap.json}"
command -v heaptrack >/dev/null || { echo "heaptrack is not installed (apt-get install heaptrack)" >&2; exit 2; }
# shellcheck source=crates/bench/lib.sh
source "$here/lib.sh"

if [[ "${BENCH_NO_BUILD:-}" != 1 ]]; then
  cargo build --release -p chat-server -p chat-bench
fi
server_bin="$target/release/chat-server"
bench_bin="$target/release/chat-bench"

bench_raise_nofile
work=$(mktemp -d "${TMPDIR:-/tmp}/chat-heap.XXXXXX")
ts=$(date -u +%Y%m%d%H%M%S)
jwt_secret=$(openssl rand -hex 32 2>/dev/null || head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
db=""
cleanup() {
  set +e
  [[ -n "${idle_pid:-}" ]] && kill "$idle_pid" 2>/dev/null
  bench_stop_server
  [[ -n "$db" ]] && bench_drop_db "$db"
  [[ "${BENCH_HEAP_KEEP:-}" == 1 ]] && echo "== kept $work" || rm -rf "$work"
}
trap cleanup EXIT

# profile N: the flame-graph stacks of the bytes live with N idle sockets
# open, in $work/live-N.txt.
profile() {
  local n=$1 port log prefix
  db="bench_heap_${ts}_$n"
  bench_create_db "$db"
  port=$(bench_free_port)
  log="$work/server-$n.log"
  prefix="$work/heaptrack-$n"
  bench_migrate "$server_bin" "$pg_base/$db" "$log"
  echo "== $n sockets: the server under heaptrack on 127.0.0.1:$port"
  bench_server_env "$pg_base/$db" "$port" "${db}:" heaptrack -o "$prefix" "$server_bin" serve >>"$log" 2>&1 &
  local wrapper=$!
  for _ in $(seq 1 600); do
    curl -fsS "http://127.0.0.1:$port/readyz/" >/dev/null 2>&1 && break
    sleep 0.2
  done
  server_pid=$(pgrep -n -f "^$server_bin serve" || true)
  [[ -n "$server_pid" ]] || { echo "no server process; log:" >&2; tail -n 30 "$log" >&2; exit 1; }
  "$bench_bin" idle --sockets "$n" --pairs "$((n / 40 > 25 ? n / 40 : 25))" --idle 600 \
    --url "http://127.0.0.1:$port" --server-pid "$server_pid" >"$work/idle-$n.out" 2>&1 &
  idle_pid=$!
  local fds=0
  for _ in $(seq 1 1200); do
    fds=$(find "/proc/$server_pid/fd" -maxdepth 1 -type l 2>/dev/null | wc -l)
    ((fds >= n)) && break
    kill -0 "$idle_pid" 2>/dev/null || break
    sleep 0.5
  done
  ((fds >= n)) || { echo "only $fds descriptors open; chat-bench said:" >&2; tail -n 20 "$work/idle-$n.out" >&2; exit 1; }
  sleep 5
  echo "== $n sockets open ($fds descriptors); killing the server"
  kill -KILL "$server_pid"
  wait "$wrapper" 2>/dev/null || true
  kill "$idle_pid" 2>/dev/null || true
  wait "$idle_pid" 2>/dev/null || true
  idle_pid=""
  server_pid=""
  local data
  data=$(ls "$prefix".* 2>/dev/null | head -n 1)
  [[ -n "$data" ]] || { echo "heaptrack wrote nothing; log:" >&2; tail -n 30 "$log" >&2; exit 1; }
  heaptrack_print -f "$data" --print-peaks 0 --print-allocators 0 --print-temporary 0 \
    --print-leaks 0 --flamegraph-cost-type leaked -F "$work/live-$n.raw" >/dev/null
  # Rust's v0 symbols, demangled (binutils), without crate hashes.
  c++filt <"$work/live-$n.raw" | sed -E 's/\[[0-9a-f]{16}\]//g' >"$work/live-$n.txt"
  rm -f "$work/live-$n.raw"
  bench_drop_db "$db"
  db=""
}

for n in "${counts[@]}"; do
  profile "$n"
done

python3 - "$work/live-${counts[0]}.txt" "$work/live-${counts[1]}.txt" "${counts[0]}" "${counts[1]}" \
  "$out" "$json_out" <<'PY'
import json, re, sys
from collections import defaultdict

small, big, n_small, n_big, out, json_out = sys.argv[1:7]
n_small, n_big = int(n_small), int(n_big)
# Frames that only pass a request for memory on: the site is the first
# frame (from the leaf) that is none of these. Inlined frames carry their
# function's short name and file only, so both are kept ("new (dispatcher.rs)").
PLUMBING = {
    "alloc", "alloc_impl", "alloc_impl_runtime", "allocate", "box_new_uninit", "with_capacity",
    "with_capacity_in", "try_allocate_in", "finish_grow", "grow_one", "grow_amortized", "grow",
    "reserve", "reserve_inner", "reserve_for_push", "do_reserve_and_handle", "reserve_rehash",
    "reserve_rehash_inner", "resize_inner", "prepare_resize", "fallible_with_capacity",
    "new_uninitialized", "do_alloc", "malloc", "calloc", "realloc", "posix_memalign",
    "aligned_alloc", "aligned_malloc", "CRYPTO_malloc", "CRYPTO_zalloc", "CRYPTO_realloc",
    # Spawning a task: the site is the code that spawned it.
    "bind", "new_task", "spawn", "spawn_inner", "spawn_local", "spawn_local_inner",
    "spawn_with_id", "spawn_local_on", "with_current", "try_with",
}
PLUMBING_FILES = {"alloc.rs", "boxed.rs", "raw_vec.rs", "unix.rs", "current.rs", "local.rs", "option.rs"}
ours = re.compile(r"chat_(api|realtime|persistence|domain|server)")

def parse(frame):
    m = re.match(r"^(.*?)(?: \(([^()]*)\))?$", frame)
    name, file = m.group(1), m.group(2) or ""
    base = name
    if not name.startswith("<"):
        base = re.sub(r"<.*$", "", name)
    base = re.sub(r"^.*::", "", base) if not base.startswith("<") else base
    return name, base, file

def plumbing(frame):
    name, base, file = parse(frame)
    if base in PLUMBING or file in PLUMBING_FILES:
        return True
    if name.startswith(("__rust", "__rdl", "__rustc::", "<std::alloc::System", "<alloc::", "alloc::")):
        return True
    # Arc::new, Rc::new: the site is whoever shares the value.
    return base == "new" and file in {"sync.rs", "rc.rs", "raw.rs", "core.rs"}

def label(frame):
    name, base, file = parse(frame)
    short = base if not base.startswith("<") else name[:80]
    return f"{short} ({file})" if file else short

def sites(path):
    by_site = defaultdict(int)
    via = {}
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            stack, _, cost = line.rstrip("\n").rpartition(" ")
            if not cost.isdigit():
                continue
            frames = [fr for fr in stack.split(";") if fr.strip()]
            if not frames:
                continue
            callers = [fr for fr in reversed(frames) if not plumbing(fr)][:3]
            site = " ← ".join(label(fr) for fr in callers) or label(frames[-1])
            by_site[site] += int(cost)
            heads = (re.sub(r"<.*$", "", parse(fr)[0]) for fr in reversed(frames))
            mine = next((h for h in heads if ours.search(h)), "")
            via.setdefault(site, mine[:100])
    return by_site, via

a, _ = sites(small)
b, via = sites(big)
sockets = n_big - n_small
rows = []
for site in set(a) | set(b):
    d = b.get(site, 0) - a.get(site, 0)
    rows.append((d / sockets, site, via.get(site, "")))
rows.sort(reverse=True)
total = sum(r[0] for r in rows)
shown = [r for r in rows if r[0] >= 32][:20]
rest = total - sum(r[0] for r in shown)
lines = [
    f"Live heap bytes with {n_big:,} idle sockets minus with {n_small:,}, divided by {sockets:,} "
    "(heaptrack, release server killed while the sockets were open; grouped by the first three "
    "frames that are not allocator plumbing, innermost first):",
    "",
    "| bytes per socket | allocated in | reached from (our code) |",
    "|---|---|---|",
]
for per, site, mine in shown:
    lines.append(f"| {per:,.0f} | `{site}` | {('`' + mine + '`') if mine else ''} |")
lines.append(f"| {rest:,.0f} | everything else (each site below 32 bytes per socket, or freed) | |")
lines.append(f"| **{total:,.0f}** (**{total / 1024:.1f} KiB**) | **live heap per idle socket** | |")
open(out, "w", encoding="utf-8").write("\n".join(lines) + "\n")
json.dump({
    "scenario": "heap",
    "sockets": [n_small, n_big],
    "bytes_per_socket": round(total, 1),
    "sites": [{"bytes_per_socket": round(p, 1), "site": s, "via": m} for p, s, m in shown],
    "other_bytes_per_socket": round(rest, 1),
    "failed": False,
}, open(json_out, "w", encoding="utf-8"))
open(json_out, "a", encoding="utf-8").write("\n")
print("\n".join(lines))
PY
echo "== results: $out, $json_out"
