#!/usr/bin/env bash
# Full FIDO2 logins (issue #4): authorize -> directory password -> security key -> code -> token,
# from a fresh browser each time, with a software authenticator in the load tool
# (webauthn-authenticator-rs SoftToken registers each key; key logins answer with the same
# credential and counter, signed with aws-lc). A private slapd (as scripts/bench-directory.sh: the
# tests' fixture plus 1,000 generated people over ldaps://), a release `relais` whose
# `[fido2] attestation_policy` trusts the software authenticator's attestation CA (made for the
# run by `relais-load --scenario fido2setup`), and `relais-load --scenario fido2login`:
#   1. untimed: a first password login creates each account; `relais fido2 enrolment-code`
#      issues one code per user; the load tool registers one key per user through the real
#      ceremony (key page, options, attestation, finish) and keeps the keys in memory;
#   2. the maximum rate at FIDO2_CONCURRENCY (64) concurrent flows, with the CPU time per login
#      of relais, slapd and the load tool itself;
#   3. an open loop at half the rate reached in 2 (latency from each login's scheduled start).
# First on SQLite + in-process sessions, then (FIDO2_PG=1, the default) on PostgreSQL
# 127.0.0.1:5432 db `test` in a fresh schema + Redis 127.0.0.1:6379 with its own key prefix.
# LOAD_THREADS: the load tool's runtime threads (default 1; 2 was the tool before 2026-11-27).
# Called by scripts/bench.sh; runs alone too (after a release build of both binaries).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib-bench.sh
bench_binaries
need_slapd

FIDO2_USERS=${FIDO2_USERS:-1000}
FIDO2_REQUESTS=${FIDO2_REQUESTS:-20000}
FIDO2_CONCURRENCY=${FIDO2_CONCURRENCY:-64}
FIDO2_PG=${FIDO2_PG:-1}
PORT=${PORT:-8093}
work=$(mktemp -d)
slapd_pid=""
relais_pid=""
schema=""
cleanup() {
  [ -n "$relais_pid" ] && kill "$relais_pid" 2>/dev/null || true
  [ -n "$slapd_pid" ] && kill "$slapd_pid" 2>/dev/null || true
  [ -n "$schema" ] && psql -h 127.0.0.1 -U postgres -d test -qc "DROP SCHEMA IF EXISTS $schema CASCADE" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# 1. slapd: a CA, a server certificate for 127.0.0.1, the fixture plus bench people.
start_bench_slapd "$work"

# 2. The software authenticator and the trust file for its attestation CA.
"$bin/relais-load" --secret unused --scenario fido2setup --token-file "$work/token.cbor" --trust-file "$work/attestation.toml"

# 3. One run per backend: relais with one directory and FIDO2 on, accounts, codes, keys, load.
run() { # label, then the [database]/[sessions] TOML
  local label=$1 backend=$2
  cat >"$work/relais.toml" <<TOML
issuer = "http://localhost:$PORT"
listen = "127.0.0.1:$PORT"
dev_mode = true
$backend
[keys]
encryption_key = "$("$bin/relais" keys generate-kek)"
[logging]
filter = "warn"
[fido2]
attestation_policy = "$work/attestation.toml"
[[directories]]
name = "chu"
preset = "openldap"
urls = ["ldaps://127.0.0.1:$ldaps_port"]
ca_file = "$work/ca.pem"
bind_dn = "cn=relais,ou=services,dc=chu,dc=example"
base_dn = "ou=people,dc=chu,dc=example"
search_pool_size = ${SEARCH_POOL:-4}
bind_pool_size = ${BIND_POOL:-8}
[directories.roles]
nurse = ["soignants"]
TOML
  export RELAIS_DIRECTORIES__0__BIND_PASSWORD=relais-service-pw
  local secret
  secret=$("$bin/relais" client add -c "$work/relais.toml" --id demo-app --name Bench --redirect-uri http://localhost:8091/callback | awk '/secret/ {print $NF}')
  "$bin/relais" serve -c "$work/relais.toml" >"$work/relais-$label.log" 2>&1 &
  relais_pid=$!
  for _ in $(seq 1 100); do curl -sf "http://localhost:$PORT/readyz" >/dev/null && break; sleep 0.1; done
  # Untimed: the first password login creates each account (no key yet: no key step).
  "$bin/relais-load" --base "http://localhost:$PORT" --secret="$secret" --scenario dirlogin --user 'bench{n}' --password 'bench-pw-{n}' \
    --users "$FIDO2_USERS" --requests "$FIDO2_USERS" --concurrency 16 >/dev/null
  # One enrolment code per user, through the admin CLI (two at a time).
  local t0=$SECONDS
  issue() { "$bin/relais" fido2 enrolment-code -c "$work/relais.toml" --user "bench$1" | awk -v n="$1" '/enrolment code for/ {print n, $NF}'; }
  export -f issue; export bin work
  seq 0 $((FIDO2_USERS - 1)) | xargs -P 2 -n 1 bash -c 'issue "$0"' | sort -n | awk '{print "bench" $1, $2}' >"$work/codes-$label"
  echo "[fido2 $label] $(wc -l <"$work/codes-$label") enrolment codes issued by the CLI in $((SECONDS - t0)) s (untimed)"
  # What relais burns doing nothing (background tasks), to read the CPU per login below.
  local c0; c0=$(awk '{print $14 + $15}' "/proc/$relais_pid/stat"); sleep 5
  echo "[fido2 $label] relais idle CPU: $(awk -v t="$(( $(awk '{print $14 + $15}' "/proc/$relais_pid/stat") - c0 ))" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.1f", t * 100 / hz / 5 }') % of a core"
  "$bin/relais-load" --base "http://localhost:$PORT" --secret="$secret" --scenario fido2login \
    --user 'bench{n}' --password 'bench-pw-{n}' --users "$FIDO2_USERS" --token-file "$work/token.cbor" --codes "$work/codes-$label" \
    --requests "$FIDO2_REQUESTS" --concurrency "$FIDO2_CONCURRENCY" --open-rate-fraction 0.5 --threads "${LOAD_THREADS:-1}" \
    --watch-pid "relais=$relais_pid" --watch-pid "slapd=$slapd_pid" "${WATCH_SERVICES[@]}" | sed -u "s/^/[fido2 $label] /"
  echo "[fido2 $label] relais RSS after load: $(awk '/VmRSS/ {printf "%.1f", $2/1024}' "/proc/$relais_pid/status") MiB"
  kill "$relais_pid"; wait "$relais_pid" 2>/dev/null || true
  relais_pid=""
}

echo "[fido2] machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r); users $FIDO2_USERS, $FIDO2_REQUESTS logins per run"
WATCH_SERVICES=()
run "sqlite+memory" "[database]
url = \"sqlite://$work/relais.sqlite?mode=rwc\""

if [ "$FIDO2_PG" = 1 ]; then
  schema="bench_fido2_$(date +%s)"
  psql -h 127.0.0.1 -U postgres -d test -qc "CREATE SCHEMA $schema"
  # PostgreSQL (all its processes, one per connection) and Redis share the 2 cores too.
  WATCH_SERVICES=(--watch-pid postgres=comm:postgres --watch-pid redis=comm:redis-server)
  run "postgres+redis" "[database]
url = \"postgres://postgres@127.0.0.1:5432/test\"
schema = \"$schema\"
max_connections = 32
[sessions]
backend = \"redis\"
key_prefix = \"$schema\""
fi
