# Shared by the benchmark scripts (sourced, not run).
#
# bench_db_config DB NAME WORK KEK: writes WORK/DB.toml (issuer, dev mode, the key-encryption
# key) for DB `postgres` (a fresh schema `bench_NAME_<time>` in database `test`, named in
# `schema`; drop_bench_schema drops it, also from an EXIT trap) or `sqlite` (WORK/NAME.sqlite).
# need_time: installs GNU time (/usr/bin/time) when it is missing.
# pg_redis_setup RELAIS WORK PORT NAME: for `RELAIS serve -c WORK/pg.toml` on 127.0.0.1:PORT,
# PostgreSQL (a fresh schema `bench_NAME_<time>`, named in `schema`) and Redis (key prefix =
# the schema): writes the config, registers the client `demo-app` (its secret in `secret`,
# redirect http://localhost:8091/callback) and the local account alice / alice-demo-pw-long.
#
# bench_binaries: sets CARGO_TARGET_DIR and `bin` (the release directory) and builds the release
# `relais` and `relais-load` if either is missing. need_slapd: stops with a clear message when
# slapd or ldap-utils are not installed.
bench_binaries() {
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/relais/target}"
  bin="$CARGO_TARGET_DIR/release"
  [ -x "$bin/relais" ] && [ -x "$bin/relais-load" ] || cargo build --release --locked -p relais-gateway -p relais-tests --bins
}

need_slapd() {
  [ -x /usr/sbin/slapd ] && command -v ldapsearch >/dev/null || { echo "slapd and ldap-utils are needed (scripts/test.sh installs them)"; exit 1; }
}

# A private slapd over ldaps:// with the
# tests' fixture directory plus 1,000 generated people `bench0..999` (password `bench-pw-N`,
# group `soignants`), same template as tests/e2e/slapd.rs.
#
# start_bench_slapd WORK_DIR: makes a CA and a server certificate for 127.0.0.1 in WORK_DIR
# (ca.pem is what Relais' `ca_file` names), loads the directory, starts slapd and waits for it.
# Sets slapd_pid, ldap_port (plain, for back-monitor queries) and ldaps_port.
start_bench_slapd() {
  local work=$1 fixtures="$PWD/tests/fixtures/ldap"
  mkdir -p "$work/db"
  (
    cd "$work"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=Relais bench CA" -keyout ca.key -out ca.pem 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost -keyout server.key -out server.csr 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n' >ext
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile ext -out server.pem 2>/dev/null
  )
  sed -e "s#@DIR@#$work#g" -e "s#@FIXTURES@#$fixtures#g" "$fixtures/slapd.conf.in" >"$work/slapd.conf"
  {
    cat "$fixtures/directory.ldif"
    for i in $(seq 0 999); do
      printf '\ndn: uid=bench%d,ou=soignants,ou=people,dc=chu,dc=example\nobjectClass: inetOrgPerson\nuid: bench%d\ncn: Bench %d\ngivenName: Bench\nsn: Person%d\nuserPassword: bench-pw-%d\nmemberOf: cn=soignants,ou=groups,dc=chu,dc=example\n' "$i" "$i" "$i" "$i" "$i"
    done
  } >"$work/bench.ldif"
  /usr/sbin/slapadd -q -f "$work/slapd.conf" -l "$work/bench.ldif" 2>/dev/null
  ldap_port=$(free_port)
  ldaps_port=$(free_port)
  (cd "$work" && exec /usr/sbin/slapd -f slapd.conf -h "ldap://127.0.0.1:$ldap_port/ ldaps://127.0.0.1:$ldaps_port/" -d 0 >/dev/null 2>&1) &
  slapd_pid=$!
  for _ in $(seq 1 100); do (echo >"/dev/tcp/127.0.0.1/$ldaps_port") 2>/dev/null && break; sleep 0.1; done
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

bench_db_config() {
  local db=$1 name=$2 work=$3 kek=$4 database
  if [ "$db" = postgres ]; then
    schema="bench_${name}_$(date +%s)"
    psql -h 127.0.0.1 -U postgres -d test -qc "CREATE SCHEMA $schema"
    database="url = \"postgres://postgres@127.0.0.1:5432/test\"
schema = \"$schema\"
max_connections = 16"
  else
    database="url = \"sqlite://$work/$name.sqlite?mode=rwc\""
  fi
  cat >"$work/$db.toml" <<TOML
issuer = "http://localhost:8090"
dev_mode = true
[database]
$database
[keys]
encryption_key = "$kek"
TOML
}

drop_bench_schema() {
  if [ -n "${schema:-}" ]; then PGOPTIONS="--client-min-messages=warning" psql -h 127.0.0.1 -U postgres -d test -qc "DROP SCHEMA IF EXISTS $schema CASCADE" || true; fi
  schema=""
}

need_time() {
  [ -x /usr/bin/time ] && return 0
  if [ "$(id -u)" -eq 0 ]; then
    env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq time
  else
    sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq time
  fi
}

pg_redis_setup() {
  local relais=$1 work=$2 port=$3 name=$4
  schema="bench_${name}_$(date +%s)"
  psql -h 127.0.0.1 -U postgres -d test -qc "CREATE SCHEMA $schema"
  cat >"$work/pg.toml" <<TOML
issuer = "http://localhost:$port"
listen = "127.0.0.1:$port"
dev_mode = true
[database]
url = "postgres://postgres@127.0.0.1:5432/test"
schema = "$schema"
max_connections = 32
[sessions]
backend = "redis"
key_prefix = "$schema"
[keys]
encryption_key = "$("$relais" keys generate-kek)"
TOML
  secret=$("$relais" client add -c "$work/pg.toml" --id demo-app --name Bench --redirect-uri http://localhost:8091/callback | awk '/secret/ {print $NF}')
  echo "alice-demo-pw-long" | "$relais" user add -c "$work/pg.toml" --username alice --given-name Alice --family-name Martin >/dev/null
}
