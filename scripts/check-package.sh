#!/usr/bin/env bash
# The Debian package end to end: builds it (scripts/package-deb.sh, release build), installs it
# with `dpkg -i`, checks what the installation made (binary, unit, conffile, relais user), runs
# the installed /usr/bin/relais demo on a free loopback port and drives its discovery, JWKS and
# readiness, then purges the package and checks nothing is left.
#
# Safe on a CI machine or a developer's: it needs root (or sudo), refuses to run when a relais
# package is already installed (it would replace it), never enables or starts the unit, keeps
# the demo's data in a temporary directory, and purges on every exit path.
# Called by scripts/test.sh (SKIP_PACKAGE_TEST=1 skips it; not RELAIS_*, which the config overlay reads: the release build takes minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/relais/target}"

say() { printf '\n== %s\n' "$*"; }
fail() { printf '\ncheck-package FAILED: %s\n' "$*" >&2; exit 1; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo -n "$@"; fi; }

as_root true 2>/dev/null || fail "needs root or password-less sudo (dpkg -i)"
if dpkg-query -W -f='${Status}' relais 2>/dev/null | grep -q 'install ok installed'; then
  fail "a relais package is already installed here: not replacing it"
fi
command -v curl >/dev/null || fail "curl is missing"
dpkg -s adduser >/dev/null 2>&1 || as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq adduser
# postrm keeps the KEK, the state directory and the user on purge (by design): remove them
# afterwards only if this test made them.
had_env=$([ -e /etc/relais/relais.env ] && echo 1 || true)
had_state=$([ -e /var/lib/relais ] && echo 1 || true)
had_user=$(getent passwd relais >/dev/null && echo 1 || true)

./scripts/package-deb.sh
deb=$(printf "%s\n" "$CARGO_TARGET_DIR"/debian/relais_*.deb | sort -V | tail -n 1)

work=$(mktemp -d)
demo_pid=
installed=
cleanup() {
  [ -z "$demo_pid" ] || kill "$demo_pid" 2>/dev/null || true
  [ -z "$installed" ] || as_root env DEBIAN_FRONTEND=noninteractive dpkg --purge relais >/dev/null 2>&1 || true
  [ -n "$had_env" ] || as_root rm -f /etc/relais/relais.env
  [ -n "$had_env" ] || as_root rmdir /etc/relais 2>/dev/null || true
  [ -n "$had_state" ] || as_root rm -rf /var/lib/relais
  [ -n "$had_user" ] || ! getent passwd relais >/dev/null || as_root deluser --quiet --system relais >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

say "dpkg -i $(basename "$deb")"
installed=1
as_root env DEBIAN_FRONTEND=noninteractive dpkg -i "$deb" || fail "dpkg -i"
[ -x /usr/bin/relais ] || fail "/usr/bin/relais not installed"
[ -f /usr/lib/systemd/system/relais.service ] || [ -f /lib/systemd/system/relais.service ] || fail "unit not installed"
[ -f /etc/relais/relais.toml ] || fail "/etc/relais/relais.toml not installed"
getent passwd relais >/dev/null || fail "the relais system user was not created"
if command -v systemctl >/dev/null && systemctl is-enabled relais >/dev/null 2>&1; then
  fail "the unit was enabled on install (it must wait for the issuer to be set)"
fi
for unit in relais-audit-purge.service relais-audit-purge.timer; do
  [ -f "/usr/lib/systemd/system/$unit" ] || [ -f "/lib/systemd/system/$unit" ] || fail "$unit not installed"
done
# Each unit file is the right one (an older cargo-deb could install relais.service under another
# unit's name): the server serves, the purge purges.
unit_dir=/usr/lib/systemd/system; [ -f "$unit_dir/relais.service" ] || unit_dir=/lib/systemd/system
grep -q '^ExecStart=/usr/bin/relais serve ' "$unit_dir/relais.service" || fail "relais.service does not run the server"
grep -q '^ExecStart=/usr/bin/relais audit purge ' "$unit_dir/relais-audit-purge.service" || fail "relais-audit-purge.service does not run the purge"
if command -v systemctl >/dev/null && systemctl is-enabled relais-audit-purge.timer >/dev/null 2>&1; then
  fail "the audit purge timer was enabled on install (purging is the operator's decision)"
fi
/usr/bin/relais --version >/dev/null 2>&1 || /usr/bin/relais --help >/dev/null || fail "installed relais does not run"

say "the installed relais runs its demo"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
/usr/bin/relais demo --listen "127.0.0.1:$port" --data-dir "$work/demo" >"$work/demo.log" 2>&1 &
demo_pid=$!
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done
curl -sf "http://127.0.0.1:$port/readyz" >/dev/null || { cat "$work/demo.log"; fail "the demo did not become ready"; }
curl -sf "http://127.0.0.1:$port/.well-known/openid-configuration" | grep -q "\"issuer\":\"http://localhost:$port\"" \
  || fail "discovery document"
curl -sf "http://127.0.0.1:$port/jwks" | grep -q '"keys"' || fail "JWKS"
code=$(curl -s -o /dev/null -w '%{http_code}' \
  "http://127.0.0.1:$port/authorize?response_type=code&client_id=demo-app&scope=openid&redirect_uri=http%3A%2F%2Flocalhost%3A$((port + 1))%2Fcallback&state=s")
[ "$code" = 303 ] || [ "$code" = 302 ] || fail "authorize answered $code (expected a redirect to the login page)"
kill -TERM "$demo_pid"
wait "$demo_pid" || fail "the demo did not exit cleanly on SIGTERM"
demo_pid=
echo "demo served discovery, JWKS and a login redirect; exited cleanly on SIGTERM"

say "dpkg --purge relais"
as_root env DEBIAN_FRONTEND=noninteractive dpkg --purge relais || fail "dpkg --purge"
installed=
[ ! -e /usr/bin/relais ] || fail "/usr/bin/relais left after purge"
[ ! -e /etc/relais/relais.toml ] || fail "/etc/relais/relais.toml left after purge"
[ -e /etc/relais/relais.env ] || [ -n "$had_env" ] || fail "purge removed the key-encryption key (postrm must keep it)"
say "package check passed"
