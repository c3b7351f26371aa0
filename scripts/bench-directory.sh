#!/usr/bin/env bash
# Directory password logins (issue #3): a private slapd (the tests' fixture, same template as
# tests/e2e/slapd.rs, plus 1,000 generated people) over ldaps://, a release `relais` with one
# [[directories]] entry, driven by `relais-load --scenario dirlogin`. Reports the maximum rate,
# the latency at a fixed rate, and how many connections slapd saw (back-monitor) for how many
# logins. Called by scripts/bench.sh; runs alone too (after a release build of both binaries).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib-bench.sh
bench_binaries
need_slapd

DIR_REQUESTS=${DIR_REQUESTS:-20000}
DIR_CONCURRENCY=${DIR_CONCURRENCY:-64}
DIR_RATE=${DIR_RATE:-500}
PORT=${PORT:-8092}
work=$(mktemp -d)
slapd_pid=""
relais_pid=""
cleanup() {
  [ -n "$relais_pid" ] && kill "$relais_pid" 2>/dev/null || true
  [ -n "$slapd_pid" ] && kill "$slapd_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# 1. slapd: a CA, a server certificate for 127.0.0.1, the fixture plus bench people.
start_bench_slapd "$work"
connections() {
  ldapsearch -x -LLL -H "ldap://127.0.0.1:$ldap_port" -D cn=admin,dc=chu,dc=example -w admin-secret \
    -b "cn=$1,cn=Connections,cn=Monitor" -s base monitorCounter | awk '/monitorCounter/ {print $2}'
}

# 2. Relais on SQLite + in-process sessions, one directory, groups mapped to a role.
cat >"$work/relais.toml" <<TOML
issuer = "http://localhost:$PORT"
listen = "127.0.0.1:$PORT"
dev_mode = true
[database]
url = "sqlite://$work/relais.sqlite?mode=rwc"
[keys]
encryption_key = "$("$bin/relais" keys generate-kek)"
[logging]
filter = "warn"
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
export RELAIS_DIRECTORIES__0__BIND_PASSWORD=relais-service-pw  # the secret from the environment
secret=$("$bin/relais" client add -c "$work/relais.toml" --id demo-app --name Bench --redirect-uri http://localhost:8091/callback | awk '/secret/ {print $NF}')
"$bin/relais" serve -c "$work/relais.toml" >"$work/relais.log" 2>&1 &
relais_pid=$!
for _ in $(seq 1 100); do curl -sf "http://localhost:$PORT/readyz" >/dev/null && break; sleep 0.1; done

load() { "$bin/relais-load" --base "http://localhost:$PORT" --secret="$secret" --scenario dirlogin --user 'bench{n}' --password 'bench-pw-{n}' --users 1000 "$@"; }
# Warm-up (accounts created on first login, TLS connections opened): not counted.
load --requests 2000 --concurrency 16 >/dev/null
before=$(connections Total)
# CPU per login of each process (user + system ticks over the run), to see who bounds the rate
# (relais, slapd, and the load tool itself share the 2 cores).
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
tick=$(getconf CLK_TCK)
r0=$(cpu_ticks "$relais_pid"); s0=$(cpu_ticks "$slapd_pid")
/usr/bin/time -f "%U %S" -o "$work/load.cpu" "$bin/relais-load" --base "http://localhost:$PORT" --secret="$secret" --scenario dirlogin --user 'bench{n}' --password 'bench-pw-{n}' --users 1000 \
  --requests "$DIR_REQUESTS" --concurrency "$DIR_CONCURRENCY" | sed 's/^/[directory] /'
r1=$(cpu_ticks "$relais_pid"); s1=$(cpu_ticks "$slapd_pid")
awk -v r="$((r1 - r0))" -v s="$((s1 - s0))" -v hz="$tick" -v n="$DIR_REQUESTS" -v l="$(cat "$work/load.cpu")" \
  'BEGIN { split(l, u, " "); printf "[directory] CPU per login: relais %.2f ms, slapd %.2f ms, load tool %.2f ms\n", r * 1000 / hz / n, s * 1000 / hz / n, (u[1] + u[2]) * 1000 / n }'
load --requests "$DIR_REQUESTS" --rate "$DIR_RATE" | sed 's/^/[directory] /'
after=$(connections Total)
echo "[directory] slapd connections opened during $((2 * DIR_REQUESTS)) logins: $((after - before - 1)) (now open: $(connections Current), counting the query itself)"
echo "[directory] relais RSS after load: $(awk '/VmRSS/ {printf "%.1f", $2/1024}' "/proc/$relais_pid/status") MiB"
