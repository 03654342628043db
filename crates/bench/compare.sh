#!/usr/bin/env bash
# Throughput before and after a change, in one run on this machine.
#
#   crates/bench/compare.sh REV            e.g. 8ea6d49: "before" is REV, "after" the work tree
#   crates/bench/compare.sh REV --quick    small sizes, to check the machinery
#   crates/bench/compare.sh REV --build-only
#
# Builds the release chat-server of REV (its source exported with `git
# archive` into $target/bench-before/<sha>/, built there with its own
# target directory, kept for the next run) and the release chat-server
# and chat-bench of the work tree. Then, BENCH_ROUNDS times, runs the
# throughput scenario of this chat-bench against before, after and (with
# BENCH_USER_STREAMS=1, the default) after with one user stream per user
# open, in that order, each on a fresh database and a freshly started
# server with run.sh's settings. Writes the combined JSON (every run, the
# medians, the ratio after / before) and prints it.
#
# Environment:
#   BENCH_ROUNDS=3          rounds (each: before, after[, after_streams])
#   BENCH_USER_STREAMS=1    the after_streams run in each round (0: none)
#   BENCH_COMPARE_OUT       the JSON to write (default $target/bench-compare.json)
#   BENCH_NO_BUILD=1        the work tree's release binaries are built already
#   BENCH_QUIET_LOAD=0.8    wait for a 1-minute load below this first (see lib.sh)
#   BENCH_DJANGO_URL, BENCH_DJANGO_PID  a running Django reference (run.sh
#                           starts one with BENCH_DJANGO_DIR): a run against it
#                           before the first round and after the last, label django
#   BENCH_PG_BASE, REDIS_URL as for run.sh
set -euo pipefail

cd "$(dirname "$0")/../.."
root=$(pwd)
here="$root/crates/bench"
rev=${1:-}
[[ -n "$rev" && "$rev" != --* ]] || {
  echo "usage: crates/bench/compare.sh REV [--quick|--build-only]" >&2
  exit 2
}
mode=${2:-}
target="${CARGO_TARGET_DIR:-$root/target}"
redis_url="${REDIS_URL:-redis://127.0.0.1:6379}"
rounds=${BENCH_ROUNDS:-3}
streams=${BENCH_USER_STREAMS:-1}
out="${BENCH_COMPARE_OUT:-$target/bench-compare.json}"
# shellcheck source=crates/bench/lib.sh
source "$here/lib.sh"

sha=$(git -C "$root" rev-parse --verify "$rev^{commit}")
after_rev=$(git -C "$root" rev-parse HEAD)
if [[ -n "$(git -C "$root" status --porcelain -- crates migrations config Cargo.toml Cargo.lock)" ]]; then
  after_rev="$after_rev+dirty"
fi
before_dir="$target/bench-before/${sha:0:12}"
before_bin="$before_dir/chat-server"
after_bin="$target/release/chat-server"
bench_bin="$target/release/chat-bench"

if [[ ! -x "$before_bin" ]]; then
  echo "== building chat-server of ${sha:0:12} (before) in $before_dir"
  rm -rf "$before_dir/src"
  mkdir -p "$before_dir/src"
  git -C "$root" archive "$sha" | tar -x -C "$before_dir/src"
  (cd "$before_dir/src" && CARGO_TARGET_DIR="$before_dir/target" cargo build --release -p chat-server)
  cp "$before_dir/target/release/chat-server" "$before_bin"
fi
if [[ "${BENCH_NO_BUILD:-}" != 1 ]]; then
  echo "== building chat-server and chat-bench of the work tree (after)"
  cargo build --release -p chat-server -p chat-bench
fi
[[ "$mode" == --build-only ]] && exit 0

bench_runs_begin compare "$mode"

labels=(before after)
[[ "$streams" == 1 ]] && labels+=(after_streams)
runs=""
status=0
n=0
if [[ -n "${BENCH_DJANGO_URL:-}" ]]; then
  n=$((n + 1))
  bench_django_run "$n"
fi
for round in $(seq 1 "$rounds"); do
  for label in "${labels[@]}"; do
    n=$((n + 1))
    binary=$after_bin
    extra=()
    case $label in
      before) binary=$before_bin ;;
      after_streams) extra=(--user-streams) ;;
    esac
    echo "== round $round"
    bench_throughput_run "$n" "$label" "$binary" bench_prepare_nothing "bench_cmp_${ts}" "${extra[@]}"
  done
done

if [[ -n "${BENCH_DJANGO_URL:-}" ]]; then
  n=$((n + 1))
  bench_django_run "$n"
fi

"$bench_bin" compare --runs "$runs" --before-rev "$sha" --after-rev "$after_rev" \
  --json-out "$out" || { s=$?; [[ $status -eq 0 ]] && status=$s; }
echo "== results: $out"
exit "$status"
