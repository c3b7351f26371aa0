#!/usr/bin/env bash
# Runs every test of Relais, installing what a fresh Debian machine lacks.
# Real components only: PostgreSQL on 127.0.0.1:5432 (database `test`, trust auth) and Redis on
# 127.0.0.1:6379 are checked, started or installed; nothing is mocked.
set -euo pipefail
cd "$(dirname "$0")/.."

# Build output is reused between runs, outside the clone.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/relais/target}"
export RUST_BACKTRACE="${RUST_BACKTRACE:-0}"
mkdir -p "$CARGO_TARGET_DIR"

say() { printf '\n== %s\n' "$*"; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
apt_install() {
  say "installing $*"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"
}

command -v cargo >/dev/null || { echo "cargo is missing: install Rust with rustup (https://rustup.rs)"; exit 1; }
command -v cc >/dev/null || apt_install build-essential

# --- PostgreSQL -------------------------------------------------------------------------------
pg_ok() { psql -h 127.0.0.1 -U postgres -d test -Atc 'select 1' >/dev/null 2>&1; }
if ! pg_ok; then
  command -v pg_ctlcluster >/dev/null || apt_install postgresql postgresql-client
  say "starting PostgreSQL"
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  for _ in $(seq 1 30); do pg_isready -h 127.0.0.1 -q && break; sleep 1; done
  if ! pg_ok; then
    # A fresh install: trust local TCP connections and create the test database.
    hba=$(as_root find /etc/postgresql/"$version"/main -name pg_hba.conf)
    # pg_hba.conf is first-match: the trust lines go on top.
    as_root grep -q 'relais-tests' "$hba" || as_root sed -i '1i host all all 127.0.0.1/32 trust # relais-tests\nhost all all ::1/128 trust # relais-tests' "$hba"
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" main reload || true
    as_root su postgres -c "psql -Atc \"select 1 from pg_database where datname='test'\"" | grep -q 1 || as_root su postgres -c "createdb test"
  fi
  pg_ok || { echo "PostgreSQL on 127.0.0.1:5432 (user postgres, database test) is not reachable"; exit 1; }
fi

# --- Redis ------------------------------------------------------------------------------------
if ! (command -v redis-cli >/dev/null && redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG); then
  command -v redis-server >/dev/null || apt_install redis-server
  say "starting Redis"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
  for _ in $(seq 1 20); do redis-cli -h 127.0.0.1 ping 2>/dev/null | grep -q PONG && break; sleep 0.5; done
fi

# --- OpenLDAP ---------------------------------------------------------------------------------
# The directory tests start their own private slapd (tests/e2e/slapd.rs) on free loopback ports;
# only the binaries are needed here. openssl makes the tests' certificates.
if [ ! -x /usr/sbin/slapd ] || ! command -v slapadd >/dev/null || ! command -v ldapsearch >/dev/null; then
  apt_install slapd ldap-utils
fi
command -v openssl >/dev/null || apt_install openssl

# --- HAProxy, Prometheus ----------------------------------------------------------------------
# tests/e2e/replicas.rs puts three `relais` processes behind a private HAProxy on loopback;
# tests/e2e/telemetry.rs has a private Prometheus scrape /metrics. Only the binaries are needed
# (the Debian services are not used; a fresh install may start them: that does not matter).
command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || apt_install haproxy
[ -x /usr/bin/prometheus ] || apt_install prometheus
# --- Chromium ---------------------------------------------------------------------------------
# The admin UI's browser tests (tests/e2e/admin.rs) drive headless Chromium through chromedriver
# (WebDriver, with its virtual authenticator for the security key).
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  apt_install chromium chromium-driver
fi

# --- The checks -------------------------------------------------------------------------------
say "cargo fmt"
cargo fmt --all -- --check

say "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

say "tests"
# The telemetry and replica tests spawn the built binary (target/debug/relais).
cargo build --locked --quiet --bin relais
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast
else
  cargo test --workspace --locked --no-fail-fast
fi
./scripts/check-deploy.sh  # Helm chart, systemd unit, deploy/ files
# The .deb built, installed with dpkg -i, its demo run, purged (a release build: SKIP_PACKAGE_TEST=1 skips it; not RELAIS_*, which the config overlay reads).
if [ "${SKIP_PACKAGE_TEST:-0}" != 1 ]; then ./scripts/check-package.sh; fi
say "all tests passed"
