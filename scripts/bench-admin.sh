#!/usr/bin/env bash
# Admin UI page times behind docs/performance.md (issue #7: every page under 50 ms server-side
# with 10,000 people and 1,000,000 audit records), through the hidden `relais admin bench`:
# fills a fresh database (people inserted in bulk, audit records through the chain's batched
# append), then times each admin page through the server's own routes and handlers,
# in-process. On a fresh PostgreSQL schema (dropped after) and a fresh SQLite file.
# scripts/bench.sh runs it with BENCH=all.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib-bench.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/relais/target}"
[ -n "${SKIP_BUILD:-}" ] || cargo build --release --locked -p relais-gateway --bin relais
bin="$CARGO_TARGET_DIR/release"
work=$(mktemp -d)
schema=""
trap 'drop_bench_schema; rm -rf "$work"' EXIT

PEOPLE=${PEOPLE:-10000}
RECORDS=${RECORDS:-1000000}
DAYS=${DAYS:-90}
RUNS=${RUNS:-30}
DBS=${DBS:-"postgres sqlite"}

need_time
echo "[admin] machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), load average $(cut -d' ' -f1-3 /proc/loadavg)"
kek=$("$bin/relais" keys generate-kek)
for db in $DBS; do
  bench_db_config "$db" admin "$work" "$kek"
  /usr/bin/time -f "wall %e s, max RSS %M KiB" \
    "$bin/relais" admin bench -c "$work/$db.toml" --people "$PEOPLE" --records "$RECORDS" --days "$DAYS" --runs "$RUNS" 2>&1 | sed "s/^/[admin $db] /"
  drop_bench_schema
done
