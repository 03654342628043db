#!/usr/bin/env bash
# Proves the domain package has no I/O dependency: other projects import it.
set -euo pipefail
cd "$(dirname "$0")/.."
forbidden='^(diesel|diesel_migrations|r2d2|pq-sys|libsqlite3-sys|actix-web|actix-ws|actix-rt|actix-http|actix-server|tokio|fred|jsonwebtoken|reqwest|mio|socket2|hyper|argon2) '
tree=$(cargo tree -p chat-domain --edges normal --prefix none --format '{p}')
if offenders=$(printf '%s\n' "$tree" | grep -E "$forbidden"); then
  echo "chat-domain depends on I/O crates:" >&2
  printf '%s\n' "$offenders" | sort -u >&2
  exit 1
fi
echo "chat-domain: no I/O dependencies ($(printf '%s\n' "$tree" | sort -u | wc -l) crates: $(printf '%s\n' "$tree" | awk '{print $1}' | sort -u | tr '\n' ' '))"
