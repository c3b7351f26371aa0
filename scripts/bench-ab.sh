#!/usr/bin/env bash
# A/B comparison of two `relais` release binaries at the token endpoint (code exchange), run
# alternately on the same machine so that a shared VM's drift affects both alike.
#   scripts/bench-ab.sh OLD_BINARY NEW_BINARY [ROUNDS=3] [CONCURRENCY=32]
# BACKEND=sqlite (default: `relais demo`) or BACKEND=postgres (PostgreSQL 127.0.0.1:5432 db
# `test` in a fresh schema per run, dropped after, + Redis 127.0.0.1:6379). Prints, per run,
# the rate, latency and the CPU per redemption of relais, the load tool (and PostgreSQL).
# Compare "relais CPU ÷ load tool CPU" between A and B: it corrects for the machine's speed.
# PIN=1 runs relais on core 0 and the load tool on core 1 (taskset): the rate is then what one
# core of relais serves (issue #2's "per core"), with the tool's cost kept off that core.
set -euo pipefail
export PGOPTIONS="--client-min-messages=warning"
cd "$(dirname "$0")/.."
. scripts/lib-bench.sh
bench_binaries
old=$1 new=$2 rounds=${3:-3} conc=${4:-32}
backend=${BACKEND:-sqlite}
server_cpu=() tool_cpu=()
[ "${PIN:-0}" = 1 ] && server_cpu=(taskset -c 0) tool_cpu=(taskset -c 1)
port=$(free_port)
work=$(mktemp -d)
pid=""
schema=""
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; drop_bench_schema; rm -rf "$work"' EXIT
wait_ready() { for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && return 0; sleep 0.1; done; echo "server did not start"; exit 1; }

for r in $(seq 1 "$rounds"); do
  for v in a b; do
    b=$old; [ "$v" = b ] && b=$new
    extra=()
    if [ "$backend" = postgres ]; then
      pg_redis_setup "$b" "$work" "$port" "ab_${v}_${r}"
      "${server_cpu[@]}" "$b" serve -c "$work/pg.toml" >"$work/$v.log" 2>&1 &
      extra=(--password alice-demo-pw-long --watch-pid postgres=comm:postgres)
    else
      "${server_cpu[@]}" "$b" demo --listen "127.0.0.1:$port" --data-dir "$work/demo-$v-$r" >"$work/$v.log" 2>&1 &
    fi
    pid=$!
    wait_ready
    # The demo registers http://localhost:<port + 1>/callback for its client.
    [ "$backend" = sqlite ] && secret=$(cat "$work/demo-$v-$r/demo-app.secret") && extra=(--redirect-uri "http://localhost:$((port + 1))/callback")
    out=$("${tool_cpu[@]}" "$bin/relais-load" --base "http://localhost:$port" --secret="$secret" --scenario token --requests 20000 --concurrency "$conc" --watch-pid "relais=$pid" "${extra[@]}")
    echo "[$backend ${v^^} round $r] $(echo "$out" | tr '\n' ' ' | sed 's/token endpoint (code exchange): //')"
    kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
    drop_bench_schema
  done
done
