#!/usr/bin/env bash
# Audit benchmarks behind docs/performance.md (issue #6), through the hidden `relais audit bench`:
# appends per second through the real SqlAuditSink (group commit, checkpoints) with concurrent
# writers, then FILL records appended in batches through the same path, then `verify` over the
# whole chain. On a fresh PostgreSQL schema (and a fresh SQLite file). scripts/bench.sh runs it.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib-bench.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/relais/target}"
[ -n "${SKIP_BUILD:-}" ] || cargo build --release --locked -p relais-gateway --bin relais
bin="$CARGO_TARGET_DIR/release"
work=$(mktemp -d)
schema=""
trap 'drop_bench_schema; rm -rf "$work"' EXIT

APPENDS=${APPENDS:-50000}
WRITERS=${WRITERS:-64}
FILL=${FILL:-1000000}
DBS=${DBS:-"postgres sqlite"}

need_time
kek=$("$bin/relais" keys generate-kek)
for db in $DBS; do
  bench_db_config "$db" audit "$work" "$kek"
  /usr/bin/time -f "[audit $db] wall %e s, max RSS %M KiB" \
    "$bin/relais" audit bench -c "$work/$db.toml" --appends "$APPENDS" --writers "$WRITERS" --fill "$FILL" 2>&1 | sed "s/^/[audit $db] /"
  drop_bench_schema
done
