#!/usr/bin/env bash
# Throughput of one server with and without a feature, in one run on this
# machine: the cost of that feature.
#
#   crates/bench/variants.sh acks     acks_off (baseline), then acks_on: every
#                                     receiver socket acks what it gets as the web
#                                     client does (the highest id, at most every
#                                     100 ms)
#   crates/bench/variants.sh acks-each  acks_off, then acks_each: an ack frame
#                                     for every message, as soon as it arrives
#   crates/bench/variants.sh index    without_index (baseline: a database without
#                                     the GIN index; before migration 000018 also
#                                     without the then generated search column),
#                                     then with_index (as migrated)
#   crates/bench/variants.sh sql      as_migrated (baseline), then with_sql: the
#                                     database migrated, then $BENCH_VARIANT_SQL run
#                                     on it (e.g. dropping an index or a foreign
#                                     key, to see what it costs before a migration)
#   ... --quick                       small sizes, to check the machinery
#
# With BENCH_BEFORE=REV, `acks` compares a change instead of a feature:
# acks_on_before (REV's server, built as compare.sh builds it) is the
# baseline and acks_on (this work tree) the variant, both with acks.
#
# BENCH_ROUNDS times (default 3), runs the throughput scenario for the
# baseline, then for the variant, each on a fresh database and a freshly
# started release server of this work tree with run.sh's settings (the
# `without_index` baseline migrates first, then drops the search index:
# bench_drop_search_index in lib.sh). Writes the combined JSON (every
# run, the medians, the ratio variant / baseline) and prints it.
#
# Environment:
#   BENCH_ROUNDS=3          rounds (each: baseline, variant)
#   BENCH_VARIANTS_OUT      the JSON to write (default $target/bench-<kind>.json)
#   BENCH_NO_BUILD=1        the release binaries are built already
#   BENCH_PG_BASE, REDIS_URL, BENCH_QUIET_LOAD as for run.sh
set -euo pipefail

cd "$(dirname "$0")/../.."
root=$(pwd)
here="$root/crates/bench"
kind=${1:-}
mode=${2:-}
case $kind in
  acks) baseline=acks_off variant=acks_on ;;
  acks-each) baseline=acks_off variant=acks_each ;;
  index) baseline=without_index variant=with_index ;;
  sql)
    baseline=as_migrated variant=with_sql
    [[ -n "${BENCH_VARIANT_SQL:-}" ]] || { echo "sql needs BENCH_VARIANT_SQL" >&2; exit 2; }
    ;;
  *)
    echo "usage: crates/bench/variants.sh acks|acks-each|index|sql [--quick]" >&2
    exit 2
    ;;
esac
target="${CARGO_TARGET_DIR:-$root/target}"
redis_url="${REDIS_URL:-redis://127.0.0.1:6379}"
rounds=${BENCH_ROUNDS:-3}
out="${BENCH_VARIANTS_OUT:-$target/bench-$kind.json}"
# shellcheck source=crates/bench/lib.sh
source "$here/lib.sh"

if [[ "${BENCH_NO_BUILD:-}" != 1 ]]; then
  echo "== building chat-server and chat-bench (release)"
  cargo build --release -p chat-server -p chat-bench
fi
server_bin="$target/release/chat-server"
bench_bin="$target/release/chat-bench"
before_bin=""
if [[ -n "${BENCH_BEFORE:-}" ]]; then
  [[ $kind == acks ]] || { echo "BENCH_BEFORE works with acks only" >&2; exit 2; }
  BENCH_NO_BUILD=1 "$here/compare.sh" "$BENCH_BEFORE" --build-only
  sha=$(git -C "$root" rev-parse --verify "$BENCH_BEFORE^{commit}")
  before_bin="$target/bench-before/${sha:0:12}/chat-server"
  baseline=acks_on_before
fi

bench_runs_begin variants "$mode"

runs=""
status=0
n=0
for round in $(seq 1 "$rounds"); do
  for label in "$baseline" "$variant"; do
    n=$((n + 1))
    extra=()
    prepare=bench_prepare_nothing
    binary=$server_bin
    case $label in
      acks_on) extra=(--acks-batched-ms 100) ;;
      acks_each) extra=(--acks) ;;
      acks_on_before) extra=(--acks-batched-ms 100) binary=$before_bin ;;
      without_index) prepare=bench_prepare_without_index ;;
      with_sql) prepare=bench_prepare_with_sql ;;
    esac
    echo "== round $round"
    bench_throughput_run "$n" "$label" "$binary" "$prepare" "bench_${kind}_${ts}" "${extra[@]}"
  done
done

"$bench_bin" compare --runs "$runs" --baseline "$baseline" --variant "$variant" --kind "$kind" \
  --after-rev "$(git -C "$root" rev-parse HEAD)" \
  --json-out "$out" || { s=$?; [[ $status -eq 0 ]] && status=$s; }
echo "== results: $out"
exit "$status"
