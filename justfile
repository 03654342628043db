# Recipes for working on the chat server. `just` lists them.
# Tests on PostgreSQL + Redis: `just test-pg` (services on 127.0.0.1).

pg_url := env_var_or_default("TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
redis_url := env_var_or_default("TEST_REDIS_URL", "redis://127.0.0.1:6379")

# List the recipes.
default:
    @just --list

# Run the server (SQLite file in ./data and the in-process bus unless DATABASE_URL / REDIS_URL are set).
run *ARGS:
    cargo run -p chat-server -- serve {{ARGS}}

# Apply pending migrations to DATABASE_URL (or the default SQLite file).
migrate:
    cargo run -p chat-server -- migrate

# Create a migration NAME for both backends (same directory name under postgres/ and sqlite/).
migration NAME:
    #!/usr/bin/env bash
    set -euo pipefail
    dir="$(date -u +%Y-%m-%d-%H%M%S)_{{NAME}}"
    for backend in postgres sqlite; do
      mkdir -p "migrations/$backend/$dir"
      echo "-- {{NAME}} ($backend)" > "migrations/$backend/$dir/up.sql"
      echo "-- revert {{NAME}} ($backend)" > "migrations/$backend/$dir/down.sql"
    done
    echo "created migrations/{postgres,sqlite}/$dir"

# Run every migration down and up again on both backends (the up-down-up test).
redo:
    cargo test -p chat-tests --test e2e migrations::migrations_run_up_down_up
    TEST_DATABASE_URL={{pg_url}} cargo test -p chat-tests --test e2e migrations::migrations_run_up_down_up

# Fail when crates/persistence/src/schema.rs and the migrations disagree (both backends).
schema-check: redo

# The README's test command: SQLite and the in-process bus.
test *ARGS:
    cargo test --workspace {{ARGS}}

# The same tests on PostgreSQL + Redis.
test-pg *ARGS:
    TEST_DATABASE_URL={{pg_url}} TEST_REDIS_URL={{redis_url}} cargo test --workspace {{ARGS}}

# Property-based API tests: schemathesis against /api/schema/ (SQLite unless DATABASE_URL / REDIS_URL are set; SCHEMATHESIS_SEED replays).
api-fuzz:
    scripts/api-fuzz.sh

# The web client in headless Chromium against the real server (needs /usr/bin/chromium: apt-get install chromium).
test-browser:
    cd tests/browser && npm ci --no-audit --no-fund && npm test

# Formatting and clippy, as CI runs them.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings

# Prove the domain crate has no I/O dependency.
check-domain:
    scripts/check-domain.sh

# Everything CI runs.
ci:
    bash .ci/run

# Load benchmark: release server on PostgreSQL + Redis, the standard scenarios, figures into BENCHMARKS.md.
bench *ARGS:
    bash crates/bench/run.sh {{ARGS}}
