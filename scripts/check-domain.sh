#!/usr/bin/env bash
# Proves the domain package has no I/O dependency: other projects import it.
# Its default feature set has no OpenAPI (utoipa) either; the optional
# `openapi` feature adds utoipa and must still bring no I/O crate.
set -euo pipefail
cd "$(dirname "$0")/.."
forbidden='^(diesel|diesel_migrations|r2d2|pq-sys|libsqlite3-sys|actix-web|actix-ws|actix-rt|actix-http|actix-server|tokio|fred|jsonwebtoken|reqwest|mio|socket2|hyper|argon2) '
tree_of() {
  cargo tree -p chat-domain --edges normal --prefix none --format '{p}' "$@"
}
tree=$(tree_of)
with_openapi=$(tree_of --features openapi)
if offenders=$(printf '%s\n%s\n' "$tree" "$with_openapi" | grep -E "$forbidden"); then
  echo "chat-domain depends on I/O crates:" >&2
  printf '%s\n' "$offenders" | sort -u >&2
  exit 1
fi
if offenders=$(printf '%s\n' "$tree" | grep -E '^utoipa'); then
  echo "chat-domain's default features pull in utoipa (it belongs behind the openapi feature):" >&2
  printf '%s\n' "$offenders" | sort -u >&2
  exit 1
fi
echo "chat-domain: no I/O dependencies ($(printf '%s\n' "$tree" | sort -u | wc -l) crates: $(printf '%s\n' "$tree" | awk '{print $1}' | sort -u | tr '\n' ' '))"
