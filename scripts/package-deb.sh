#!/usr/bin/env bash
# Builds the Debian package of Relais (target/debian/relais_<version>_<arch>.deb) with cargo-deb,
# from [package.metadata.deb] in gateway/Cargo.toml. Installs cargo-deb first if it is missing.
# Not part of scripts/test.sh: a release build takes several minutes on a small machine.
#
#   ./scripts/package-deb.sh            # build the .deb
#   sudo dpkg -i "$CARGO_TARGET_DIR"/debian/relais_*.deb
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/relais/target}"
say() { printf '\n== %s\n' "$*"; }

command -v cargo >/dev/null || { echo "cargo is missing: install Rust with rustup (https://rustup.rs)"; exit 1; }
command -v dpkg-deb >/dev/null || { echo "dpkg-deb is missing: build the package on Debian or Ubuntu"; exit 1; }
if ! cargo deb --version >/dev/null 2>&1; then
  say "installing cargo-deb"
  cargo install --locked cargo-deb
fi

say "building the package (release build)"
deb=$(cargo deb --package relais-gateway --locked | tail -n 1)
[ -f "$deb" ] || { echo "cargo deb did not report a package file (got: $deb)"; exit 1; }

say "checking $deb"
ctrl=$(mktemp -d)
trap 'rm -rf "$ctrl"' EXIT
dpkg-deb --control "$deb" "$ctrl"
contents=$(dpkg-deb --contents "$deb")
fail() { echo "package check failed: $*"; exit 1; }
grep -qx '/etc/relais/relais.toml' "$ctrl/conffiles" || fail "/etc/relais/relais.toml is not a conffile"
# cargo-deb 2.x installs units under /usr/lib/systemd/system (Debian's merged /usr), older
# releases under /lib/systemd/system: either is where systemd looks.
grep -Eq ' \.(/usr)?/lib/systemd/system/relais\.service$' <<<"$contents" \
  || fail "relais.service is missing from the package (neither /lib nor /usr/lib/systemd/system)"
for unit in relais-audit-purge.service relais-audit-purge.timer; do
  grep -Eq " \.(/usr)?/lib/systemd/system/${unit//./\\.}\$" <<<"$contents" || fail "$unit is missing from the package"
done
for path in ./usr/bin/relais ./etc/relais/relais.toml \
            ./usr/share/doc/relais/operations.md ./usr/share/doc/relais/examples/relais.toml; do
  grep -q " $path\$" <<<"$contents" || fail "$path is missing from the package"
done
grep -q 'adduser --system' "$ctrl/postinst" || fail "postinst does not create the relais user"
grep -q 'deb-systemd-helper' "$ctrl/postinst" || fail "postinst has no systemd fragment (#DEBHELPER# not expanded)"

say "built $deb"
echo "install:  sudo dpkg -i $deb"
echo "then set 'issuer' in /etc/relais/relais.toml, back up /etc/relais/relais.env, and run"
echo "          sudo systemctl enable --now relais"
