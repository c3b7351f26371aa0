#!/usr/bin/env bash
# Benchmarks behind docs/performance.md: the token endpoint (code exchange) and full
# local-account logins, on the embedded default (SQLite + in-process sessions) and on
# PostgreSQL + Redis. Release build; the load tool runs on the same machine.
# BENCH=telemetry runs only part 4: tracing on (OTLP export to a local receiver) vs off.
# BENCH=core runs only parts 1-3 (token endpoint, logins, Annuaire import).
# BENCH=cards runs only part 9 (card logins with a new TLS handshake each).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib-bench.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/relais/target}"
# BENCH_PROFILE=debug measures the debug build instead (quick relative comparisons only).
profile=${BENCH_PROFILE:-release}
if [ -n "${BENCH_NO_BUILD:-}" ]; then
  :
elif [ "$profile" = release ]; then
  cargo build --release --locked -p relais-gateway -p relais-tests --bins
else
  cargo build --locked -p relais-gateway -p relais-tests --bins
fi
bin="$CARGO_TARGET_DIR/$profile"
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

TOKEN_REQUESTS=${TOKEN_REQUESTS:-20000}
LOGIN_REQUESTS=${LOGIN_REQUESTS:-300}
# The token scenario runs once per concurrency listed (latency grows with it).
CONCURRENCY=${CONCURRENCY:-4 32}

wait_ready() { for _ in $(seq 1 100); do curl -sf "$1/readyz" >/dev/null && return 0; sleep 0.1; done; echo "server did not start"; exit 1; }
rss_mib() { awk '/VmRSS/ {printf "%.1f", $2/1024}' "/proc/$1/status"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# Runs relais-load with the rest of the arguments, then prints relais' CPU per operation
# (user + system time of the server process over the run): with the load tool on the same
# 2 cores, this says how far the server itself is from its limit.
timed_load() { # pid label requests args...
  local pid=$1 label=$2 n=$3; shift 3
  local before; before=$(cpu_ticks "$pid")
  "$bin/relais-load" "$@" --watch-pid "relais=$pid" | sed "s/^/[$label] /"
  awk -v t="$(( $(cpu_ticks "$pid") - before ))" -v hz="$(getconf CLK_TCK)" -v n="$n" -v l="$label" \
    'BEGIN { printf "[%s]   relais CPU per code made (untimed) and redeemed: %.3f ms\n", l, t * 1000 / hz / n }'
}

run_loads() { # base secret pid label
  sleep 2
  echo "[$4] idle RSS after start: $(rss_mib "$3") MiB"
  for c in $CONCURRENCY; do
    echo "[$4] token endpoint at $c concurrent:"
    timed_load "$3" "$4" "$TOKEN_REQUESTS" --base "$1" --secret="$2" --scenario token --requests "$TOKEN_REQUESTS" --concurrency "$c"
  done
  "$bin/relais-load" --base "$1" --secret="$2" --scenario login --requests "$LOGIN_REQUESTS" --concurrency 4 | sed "s/^/[$4] /"
  echo "[$4] RSS after load: $(rss_mib "$3") MiB"
}

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r)"
BENCH=${BENCH:-all}
if [ "$BENCH" = all ] || [ "$BENCH" = core ]; then

# 1. Embedded default: `relais demo`.
"$bin/relais" demo --listen 127.0.0.1:8090 --data-dir "$work/demo" >"$work/demo.log" 2>&1 &
pid=$!
wait_ready http://localhost:8090
run_loads http://localhost:8090 "$(cat "$work/demo/demo-app.secret")" "$pid" "sqlite+memory"
kill "$pid"; wait "$pid" 2>/dev/null || true

# 2. PostgreSQL + Redis.
pg_redis_setup "$bin/relais" "$work" 8090 core
"$bin/relais" serve -c "$work/pg.toml" >"$work/pg.log" 2>&1 &
pid=$!
wait_ready http://localhost:8090
sleep 2
echo "[postgres+redis] idle RSS after start: $(rss_mib "$pid") MiB"
for c in $CONCURRENCY; do
  echo "[postgres+redis] token endpoint at $c concurrent:"
  timed_load "$pid" postgres+redis "$TOKEN_REQUESTS" --base http://localhost:8090 --secret="$secret" --password alice-demo-pw-long --scenario token --requests "$TOKEN_REQUESTS" --concurrency "$c" \
    --watch-pid postgres=comm:postgres --watch-pid redis=comm:redis-server
done
"$bin/relais-load" --base http://localhost:8090 --secret="$secret" --password alice-demo-pw-long --scenario login --requests "$LOGIN_REQUESTS" --concurrency 4 | sed "s/^/[postgres+redis] /"
echo "[postgres+redis] RSS after load: $(rss_mib "$pid") MiB"
kill "$pid"; wait "$pid" 2>/dev/null || true

# 3. Annuaire Santé import: a generated 1,000,000-line extraction (1 line in 10,000 at our FINESS).
python3 - "$work/annuaire.txt" <<'PY'
import sys
header = open("tests/fixtures/annuaire/PS_LibreAcces_Personne_activite_202611230000.txt", encoding="utf-8").readline().rstrip("\n")
n = header.rstrip("|").count("|") + 1
def luhn_digit(s):
    for d in range(10):
        t = 0
        for i, ch in enumerate(reversed(s + str(d))):
            v = int(ch)
            if i % 2 == 1:
                v *= 2
                if v > 9: v -= 9
            t += v
        if t % 10 == 0: return str(d)
with open(sys.argv[1], "w", encoding="utf-8") as f:
    f.write(header + "\n")
    for i in range(1, 1_000_001):
        first = "99%08d" % i
        rpps = first + luhn_digit(first)
        row = [""] * n
        row[0], row[1], row[2], row[7], row[8], row[9] = "8", rpps, "8" + rpps, "NOM%d" % i, "Prénom", "60"
        row[21] = "750000011" if i % 10_000 == 0 else "690000022"
        f.write("|".join(row) + "|\n")
PY
echo "[annuaire] file: $(du -h "$work/annuaire.txt" | cut -f1), $(wc -l < "$work/annuaire.txt") lines"
need_time
/usr/bin/time -f "[annuaire] wall %e s, max RSS %M KiB" "$bin/relais" identity import-annuaire -c "$work/pg.toml" "$work/annuaire.txt" --dry-run --finess 750000011 | head -n 1 | sed 's/^/[annuaire] /'
psql -h 127.0.0.1 -U postgres -d test -qc "DROP SCHEMA $schema CASCADE"
fi

if [ "$BENCH" = all ] || [ "$BENCH" = telemetry ]; then
# 4. Tracing overhead: full logins on PostgreSQL + Redis, with OTLP trace and metric export to
# a local receiver vs without (no OpenTelemetry layer), alternated, same server config. CPU per
# flow = the relais process's user+system CPU time (/proc/PID/stat) over the run / logins.
# Twice: with the production password hashing (argon2id 19 MiB, 2 passes: the flow's main
# cost) and with cheap hashing (1 MiB, 1 pass), which makes the tracing share as large as it gets.
TELEMETRY_LOGINS=${TELEMETRY_LOGINS:-400}
TELEMETRY_ROUNDS=${TELEMETRY_ROUNDS:-2}
otlp_port=4399
python3 - "$otlp_port" "$work/otlp-requests" <<'PY' &
import http.server, sys
count = open(sys.argv[2], "a")
class Sink(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        count.write(f"{self.path} {len(body)}\n"); count.flush()
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Sink).serve_forever()
PY
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
tick=$(getconf CLK_TCK)
tschema="bench_tel_$(date +%s)"
psql -h 127.0.0.1 -U postgres -d test -qc "CREATE SCHEMA $tschema"
# One key-encryption key for the schema: both hashing modes share its signing keys.
tkek=$("$bin/relais" keys generate-kek)
for hashing in ${TELEMETRY_HASHING:-production cheap}; do
  passwords=""
  [ "$hashing" = cheap ] && passwords=$'[passwords]\nmemory_kib = 1024\niterations = 1'
  cat >"$work/tel.toml" <<TOML
issuer = "http://localhost:8090"
listen = "127.0.0.1:8090"
dev_mode = true
[database]
url = "postgres://postgres@127.0.0.1:5432/test"
schema = "$tschema"
max_connections = 32
[sessions]
backend = "redis"
key_prefix = "$tschema-$hashing"
[keys]
encryption_key = "$tkek"
[shutdown]
readiness_grace_ms = 0
$passwords
TOML
  tsecret=$("$bin/relais" client add -c "$work/tel.toml" --id "bench-$hashing" --name Bench --redirect-uri http://localhost:8091/callback | awk '/secret/ {print $NF}')
  echo "alice-demo-pw-long" | "$bin/relais" user add -c "$work/tel.toml" --username "alice-$hashing" --given-name Alice --family-name Martin >/dev/null
  for round in $(seq 1 "$TELEMETRY_ROUNDS"); do
    for mode in off on; do
      if [ "$mode" = on ]; then
        env OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:$otlp_port" "$bin/relais" serve -c "$work/tel.toml" >"$work/tel.log" 2>&1 &
      else
        "$bin/relais" serve -c "$work/tel.toml" >"$work/tel.log" 2>&1 &
      fi
      pid=$!
      wait_ready http://localhost:8090
      # Warm-up (connections, caches), not counted.
      "$bin/relais-load" --base http://localhost:8090 --client "bench-$hashing" --secret="$tsecret" --user "alice-$hashing" --password alice-demo-pw-long --scenario login --requests 20 --concurrency 4 >/dev/null
      before=$(cpu_ticks "$pid")
      out=$("$bin/relais-load" --base http://localhost:8090 --client "bench-$hashing" --secret="$tsecret" --user "alice-$hashing" --password alice-demo-pw-long --scenario login --requests "$TELEMETRY_LOGINS" --concurrency 4)
      after=$(cpu_ticks "$pid")
      awk -v t="$((after - before))" -v hz="$tick" -v n="$TELEMETRY_LOGINS" -v h="$hashing" -v m="$mode" -v r="$round" -v o="$out" \
        'BEGIN { printf "[telemetry %s hashing, tracing %-3s, round %s] CPU %.2f ms per flow; %s\n", h, m, r, t * 1000 / hz / n, o }'
      kill "$pid"; wait "$pid" 2>/dev/null || true
    done
  done
done
echo "[telemetry] OTLP requests received by the local receiver: $(wc -l < "$work/otlp-requests") ($(awk '{s += $2} END {printf "%.1f MiB", s/1048576}' "$work/otlp-requests"))"
psql -h 127.0.0.1 -U postgres -d test -qc "DROP SCHEMA $tschema CASCADE"

fi

if [ "$BENCH" = all ]; then
  # 5. Directory password logins against a private slapd (docs/performance.md, issue #3).
  ./scripts/bench-directory.sh
  # 6. The audit trail: appends/s and verify over 1,000,000 records (scripts/bench-audit.sh).
  SKIP_BUILD=1 ./scripts/bench-audit.sh
  # 7. Full FIDO2 logins (directory password + security key + token) (scripts/bench-fido2.sh).
  ./scripts/bench-fido2.sh
  # 8. Admin UI pages with 10,000 people and 1,000,000 audit records (scripts/bench-admin.sh).
  SKIP_BUILD=1 ./scripts/bench-admin.sh
fi

if [ "$BENCH" = all ] || [ "$BENCH" = cards ]; then
  # 9. CPS/CPx card logins, each from a new TLS client (a full handshake with the card's
  # certificate): the e2e test `card_login_throughput`, built in release. The server and the
  # clients share the process and the 2 cores.
  for c in ${CARD_CONCURRENCIES:-8 32}; do
    CARD_LOGINS=${CARD_LOGINS:-2000} CARD_CONCURRENCY=$c cargo nextest run --release --locked -p relais-tests --test e2e \
      card_login_throughput --run-ignored only --no-capture 2>&1 | grep "card logins" | sed "s/^/[cards] /"
  done
fi
