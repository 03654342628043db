#!/usr/bin/env bash
# Property-based API test: schemathesis against the server's own OpenAPI
# document (/api/schema/), every check enabled, authenticated as a real user.
#
#   scripts/api-fuzz.sh                        SQLite in a temp dir, in-process bus
#   DATABASE_URL=postgres://…/db REDIS_URL=redis://… scripts/api-fuzz.sh
#                                              an existing (empty) PostgreSQL database, Redis
#
# What it does: installs the pinned schemathesis into its own virtual
# environment (reused between runs), builds chat-server (debug), starts it on
# a free loopback port (rate limits off, cheap argon2), seeds users,
# connections and messages over HTTP, writes a schemathesis config with the
# seeded ids (every check on; per operation only what an API.md rule
# explains), runs the examples, coverage and fuzzing phases, seeds fresh
# pending requests, runs the stateful phase along the document's links, with
# a fixed example budget and one seed for both runs, stops the server, and
# exits non-zero on any failure. The WebSocket upgrade paths are tested too:
# the document lists their 400 answer to a plain HTTP request.
#
# Environment:
#   SCHEMATHESIS_SEED          replay a run (the seed is printed at the start)
#   SCHEMATHESIS_MAX_EXAMPLES  examples per operation and phase (default 100)
#   SCHEMATHESIS_VENV          the virtual environment (default target/schemathesis-venv)
#   SCHEMATHESIS_ARGS          extra arguments for `schemathesis run` (e.g. --include-path-regex …)
#   API_FUZZ_KEEP=1            keep the work directory (server log, config, reports)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

version=4.32.5
venv="${SCHEMATHESIS_VENV:-$root/target/schemathesis-venv}"
max_examples="${SCHEMATHESIS_MAX_EXAMPLES:-100}"
seed="${SCHEMATHESIS_SEED:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}"
target="${CARGO_TARGET_DIR:-$root/target}"
start=$(date +%s)
say() { echo "== api-fuzz: $* ($(($(date +%s) - start))s)"; }

say "seed $seed (replay: SCHEMATHESIS_SEED=$seed scripts/api-fuzz.sh)"

# The tester, in a virtual environment of its own.
if [[ "$("$venv/bin/schemathesis" --version 2>/dev/null || true)" != *"$version"* ]]; then
  say "installing schemathesis $version into $venv"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$version"
fi
py="$venv/bin/python"

say "building chat-server"
cargo build --quiet -p chat-server

work=$(mktemp -d "${TMPDIR:-/tmp}/api-fuzz.XXXXXX")
server_pid=""
stop_server() {
  if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid"
    for _ in $(seq 1 150); do
      kill -0 "$server_pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -0 "$server_pid" 2>/dev/null && kill -KILL "$server_pid"
  fi
  [[ -n "$server_pid" ]] && { wait "$server_pid" 2>/dev/null || true; }
  server_pid=""
}
cleanup() {
  set +e
  stop_server
  if [[ "${API_FUZZ_KEEP:-}" == 1 ]]; then
    echo "== api-fuzz: work directory kept: $work"
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT

# A free port below the ephemeral range (client ports never collide with it).
port=""
for p in $(shuf -i 20000-30000 -n 100); do
  if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
    port=$p
    break
  fi
done
[[ -n "$port" ]] || { echo "no free port found" >&2; exit 1; }
base="http://127.0.0.1:$port"

database_url="${DATABASE_URL:-sqlite://$work/chat.sqlite3}"
redis_url="${REDIS_URL:-}"
say "starting chat-server on $base (database ${database_url%%://*}, bus ${redis_url:+redis}${redis_url:-in-process})"
mkdir -p "$work/config"
# CHAT_CONFIG_DIR: an empty directory, so a developer's config/local.toml
# does not change what is tested (the defaults are compiled in).
env HOST=127.0.0.1 PORT="$port" \
  DATABASE_URL="$database_url" \
  REDIS_URL="$redis_url" \
  JWT_SECRET="$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')" \
  CHAT_CONFIG_DIR="$work/config" \
  RUST_LOG="${RUST_LOG:-warn}" \
  CHAT__REDIS__CHANNEL_PREFIX="${CHAT__REDIS__CHANNEL_PREFIX:-fuzz_$$_$port:}" \
  CHAT__ATTACHMENTS__DIR="$work/attachments" \
  CHAT__AUTH__ARGON2_MEMORY_KIB=1024 \
  CHAT__AUTH__ARGON2_ITERATIONS=1 \
  CHAT__RATE_LIMITS__AUTH_PER_MINUTE=0 \
  CHAT__RATE_LIMITS__MESSAGES_PER_SECOND=0 \
  CHAT__RATE_LIMITS__MAX_SOCKETS_PER_USER=0 \
  "$target/debug/chat-server" serve >"$work/server.log" 2>&1 &
server_pid=$!
ready=""
for _ in $(seq 1 300); do
  if curl -fsS "$base/readyz/" >/dev/null 2>&1; then
    ready=1
    break
  fi
  kill -0 "$server_pid" 2>/dev/null || break
  sleep 0.1
done
if [[ -z "$ready" ]]; then
  echo "chat-server did not become ready:" >&2
  tail -n 50 "$work/server.log" >&2
  exit 1
fi

# The seeding and the tester's configuration, in the tester's Python.
cat >"$work/fuzz.py" <<'PY'
"""Seeds data over HTTP and writes schemathesis.toml with the seeded ids.

  seed BASE WORK      the tested user `fuzz_me` (its token authenticates
                      every request); `fuzz_friend`, connected, with a
                      conversation holding messages from both (unread ones
                      included, so mark_read and delivered change something)
                      and a reaction; `fuzz_stranger`, not connected (a
                      request to it succeeds); `fuzz_pending_N`, whose
                      requests to `fuzz_me` are pending, so it can accept
                      or reject them.
  pending BASE WORK   more pending requests to `fuzz_me`, for the stateful
                      phase (the earlier phases used up the first ones).
  config WORK SET     schemathesis.toml, the accept/reject ids from SET
                      (`pending` or `pending_stateful`).
"""
import json
import secrets
import sys
import urllib.request


def call(base, method, path, token=None, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(req) as res:
        raw = res.read()
        return json.loads(raw) if raw else None


def user(base, name):
    password = secrets.token_hex(12)
    username = f"{name}_{secrets.token_hex(3)}"
    created = call(base, "POST", "/api/auth/register/",
                   body={"username": username, "password": password, "first_name": name})
    tokens = call(base, "POST", "/api/auth/token/",
                  body={"username": username, "password": password})
    return {"id": created["id"], "token": tokens["access"]}


def requests_to(base, me, count):
    """`count` new users, each with a pending request to `me`: (users, connections)."""
    users = [user(base, f"fuzz_pending_{i}") for i in range(count)]
    ids = [call(base, "POST", "/api/connections/", u["token"], {"user_id": me})["id"]
           for u in users]
    return [u["id"] for u in users], ids


def seed(base, work):
    me = user(base, "fuzz_me")
    friend = user(base, "fuzz_friend")
    stranger = user(base, "fuzz_stranger")
    link = call(base, "POST", "/api/connections/", friend["token"], {"user_id": me["id"]})
    accepted = call(base, "POST", f"/api/connections/{link['id']}/accept/", me["token"])
    conversation = accepted["conversation_id"]
    messages = []
    for i, (who, text) in enumerate([(friend, "hello"), (me, "hi there"),
                                     (friend, "how are you?"), (friend, "still there?")]):
        m = call(base, "POST", "/api/chat/messages/", who["token"],
                 {"conversation_id": conversation, "content": text, "client_id": f"seed-{i}"})
        messages.append(m["id"])
    call(base, "PUT", f"/api/chat/messages/{messages[0]}/reactions/%F0%9F%91%8D/", me["token"])
    pending_users, pending = requests_to(base, me["id"], 3)
    seeded = {
        "token": me["token"],
        "me": me["id"],
        "users": [me["id"], friend["id"], stranger["id"]] + pending_users,
        "accepted": link["id"],
        "pending": pending,
        "conversation": conversation,
        "messages": messages,
    }
    save(work, seeded)


def more_pending(base, work):
    seeded = load(work)
    users, pending = requests_to(base, seeded["me"], 5)
    seeded["users"] += users
    seeded["pending_stateful"] = pending
    save(work, seeded)


def load(work):
    with open(f"{work}/seeded.json") as f:
        return json.load(f)


def save(work, seeded):
    with open(f"{work}/seeded.json", "w") as f:
        json.dump(seeded, f, indent=1)
    print(json.dumps({k: v for k, v in seeded.items() if k != "token"}))


def ints(values):
    return "[" + ", ".join(str(v) for v in values) + "]"


def config(work, pending_set):
    """Every check on; the seeded ids as values the generators draw from
    half of the time (links carry ids between operations in the stateful
    phase; without these the other phases would only ever meet 404s).
    Allowed per operation: only what a rule of API.md explains."""
    s = load(work)
    toml = f"""
# Written by scripts/api-fuzz.sh for one run.

# Every check, on for every operation; the [[operations]] below turn off or
# widen one only where a rule of API.md explains it. (Set here rather than
# with `--checks all`: a check named on the command line overrides those
# per-operation settings.)
[checks]
enabled = true
not_a_server_error.enabled = true
status_code_conformance.enabled = true
content_type_conformance.enabled = true
response_headers_conformance.enabled = true
response_schema_conformance.enabled = true
negative_data_rejection.enabled = true
positive_data_acceptance.enabled = true
missing_required_header.enabled = true
unsupported_method.enabled = true
allow_header_conformance.enabled = true
use_after_free.enabled = true
ensure_resource_availability.enabled = true
ignored_auth.enabled = true
object_level_authorization.enabled = true

# No state kept between runs (a run is what its seed makes it).
[cache]
enabled = false

# The stateful phase follows the document's own links (connections ->
# accept -> conversation -> messages -> mark_read, reactions, delivered),
# not guessed ones.
[phases.stateful]
max-steps = 10

[phases.stateful.inference]
algorithms = []

[auth.openapi.jwt]
bearer = "{s['token']}"

[dictionaries.users]
values = {ints(s['users'])}
[dictionaries.connections]
values = {ints([s['accepted']] + s[pending_set])}
[dictionaries.conversations]
values = {ints([s['conversation']])}
[dictionaries.messages]
values = {ints(s['messages'])}
[dictionaries.assets]
values = ["index.css", "swagger-ui-bundle.js", "swagger-initializer.js", "oauth2-redirect.html",
          "favicon-32x32.png"]

[[operations]]
include-name = "GET /api/docs/{{file}}/"
parameters = {{ "path.file" = {{ dictionary = "assets", probability = 0.5 }} }}

[dictionaries.client_files]
values = ["app.js", "app.css", "api.js", "stream.js", "store.js", "dom.js", "chat.js", "contacts.js"]

[[operations]]
include-name = "GET /app/{{file}}/"
parameters = {{ "path.file" = {{ dictionary = "client_files", probability = 0.5 }} }}

[[operations]]
include-name = "GET /api/users/{{id}}/"
parameters = {{ "path.id" = {{ dictionary = "users", probability = 0.5 }} }}

[[operations]]
include-name = "POST /api/connections/"
parameters = {{ "body.user_id" = {{ dictionary = "users", probability = 0.5 }} }}
# API.md, Connections: "Requesting yourself: 400" (a rule between the body
# and the caller that the schema cannot state).
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "404", "409", "429"]

[[operations]]
include-name = ["GET /api/connections/{{id}}/", "DELETE /api/connections/{{id}}/",
                "POST /api/connections/{{id}}/accept/", "POST /api/connections/{{id}}/reject/"]
parameters = {{ "path.id" = {{ dictionary = "connections", probability = 0.5 }} }}

# API.md, Connections: DELETE makes the status `removed`, and GET answers
# the connection "(404 unless you are part of it)": a removed connection
# stays readable, so a 200 after DELETE is the contract, not a stale read.
[[operations]]
include-name = "GET /api/connections/{{id}}/"
checks.use_after_free.enabled = false

[[operations]]
include-name = ["GET /api/chat/conversations/{{id}}/", "GET /api/chat/conversations/{{id}}/messages/",
                "POST /api/chat/conversations/{{id}}/mark_read/",
                "POST /api/chat/conversations/{{id}}/delivered/"]
parameters = {{ "path.id" = {{ dictionary = "conversations", probability = 0.5 }} }}

# API.md, Beyond the seed: "`before` and `after` together, is a 400" (a rule
# between two parameters that the schema cannot state).
[[operations]]
include-name = "GET /api/chat/conversations/{{id}}/messages/"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "404", "409", "429"]

# The WebSocket upgrades: a plain HTTP request (without the `Upgrade`,
# `Connection`, `Sec-WebSocket-Key` and `Sec-WebSocket-Version` headers of
# RFC 6455, which the document does not model as parameters) is answered
# 400, as the document says; the tester cannot open a socket, and checks
# everything else of these operations.
[[operations]]
include-name = ["GET /ws/chat/", "GET /ws/chat/{{conversation_id}}/"]
checks.positive_data_acceptance.expected-statuses = ["101", "400", "401", "403", "404"]

[[operations]]
include-name = "POST /api/chat/messages/"
parameters = {{ "body.conversation_id" = {{ dictionary = "conversations", probability = 0.5 }} }}
# API.md, Attachments: `attachment_ids` are "at most 10 of the sender's own
# unattached files", and `content` may be empty only "then" (rules between
# the body, the caller's uploads and other fields, that the schema cannot state).
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "404", "409", "429"]

# API.md, Attachments: "The type is sniffed from the bytes ... (415
# otherwise)"; an image that declares more pixels than allowed, or does not
# decode, is refused (docs/decisions.md): rules on the file's bytes that a
# `format: binary` schema cannot state.
[[operations]]
include-name = "POST /api/chat/attachments/"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "413", "415", "429"]

[[operations]]
include-name = ["GET /api/chat/messages/{{id}}/", "PUT /api/chat/messages/{{id}}/reactions/{{emoji}}/",
                "DELETE /api/chat/messages/{{id}}/reactions/{{emoji}}/"]
parameters = {{ "path.id" = {{ dictionary = "messages", probability = 0.5 }} }}
"""
    with open(f"{work}/schemathesis.toml", "w") as f:
        f.write(toml)


if __name__ == "__main__":
    command, args = sys.argv[1], sys.argv[2:]
    {"seed": seed, "pending": more_pending, "config": config}[command](*args)
PY

# One schemathesis run: the fixed budget and the seed. Hypothesis keeps its
# caches with the venv, not in the work tree.
tester() {
  # shellcheck disable=SC2086
  HYPOTHESIS_STORAGE_DIRECTORY="$venv/hypothesis" "$venv/bin/schemathesis" --config-file "$work/schemathesis.toml" run "$base/api/schema/" \
    --max-examples "$max_examples" \
    --seed "$seed" \
    --workers 1 \
    --generation-database none \
    --report junit --report-dir "$work/report" \
    --no-color \
    "$@" ${SCHEMATHESIS_ARGS:-}
}

say "seeding users, connections and messages"
"$py" "$work/fuzz.py" seed "$base" "$work"
"$py" "$work/fuzz.py" config "$work" pending

status=0
say "schemathesis: examples, coverage, fuzzing ($max_examples examples per operation, seed $seed)"
tester --phases examples,coverage,fuzzing || status=$?

# Fresh pending requests, so the stateful phase can accept one and follow
# the links from it (the earlier phases accepted or removed the first ones).
say "seeding pending requests for the stateful phase"
"$py" "$work/fuzz.py" pending "$base" "$work"
"$py" "$work/fuzz.py" config "$work" pending_stateful
say "schemathesis: stateful (the document's links; seed $seed)"
tester --phases stateful || status=$?

stop_server
if [[ $status -ne 0 ]]; then
  echo "== api-fuzz: FAILED (seed $seed; replay: SCHEMATHESIS_SEED=$seed scripts/api-fuzz.sh); server log tail:"
  tail -n 20 "$work/server.log"
  exit "$status"
fi
say "passed (seed $seed)"
