#!/usr/bin/env bash
# Audit benchmarks behind docs/performance.md (issue #6), through the hidden `relais audit bench`:
# appends per second through the real SqlAuditSink (group commit, checkpoints) with concurrent
# writers, then FILL records appended in batches through the same path, then `verify` over the
# whole chain. On a fresh PostgreSQL schema (and a fresh SQLite file). scripts/bench.sh runs it.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/relais/target}"
[ -n "${SKIP_BUILD:-}" ] || cargo build --release --locked -p relais-gateway --bin relais
bin="$CARGO_TARGET_DIR/release"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

APPENDS=${APPENDS:-50000}
WRITERS=${WRITERS:-64}
FILL=${FILL:-1000000}
DBS=${DBS:-"postgres sqlite"}

command -v /usr/bin/time >/dev/null || { as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }; as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq time; }
kek=$("$bin/relais" keys generate-kek)
for db in $DBS; do
  if [ "$db" = postgres ]; then
    schema="bench_audit_$(date +%s)"
    psql -h 127.0.0.1 -U postgres -d test -qc "CREATE SCHEMA $schema"
    database="url = \"postgres://postgres@127.0.0.1:5432/test\"
schema = \"$schema\"
max_connections = 16"
  else
    database="url = \"sqlite://$work/audit.sqlite?mode=rwc\""
  fi
  cat >"$work/$db.toml" <<TOML
issuer = "http://localhost:8090"
dev_mode = true
[database]
$database
[keys]
encryption_key = "$kek"
TOML
  /usr/bin/time -f "[audit $db] wall %e s, max RSS %M KiB" \
    "$bin/relais" audit bench -c "$work/$db.toml" --appends "$APPENDS" --writers "$WRITERS" --fill "$FILL" 2>&1 | sed "s/^/[audit $db] /"
  if [ "$db" = postgres ]; then psql -h 127.0.0.1 -U postgres -d test -qc "DROP SCHEMA $schema CASCADE"; fi
done
