#!/bin/sh
# Static checks of the packaging files (ctest packaging.check_files).
# Usage: check_packaging.sh <cppetcd binary> <packaging dir>
# - cppetcd.service: the keys the package relies on, and (when available)
#   `systemd-analyze verify` reports nothing, with ExecStart pointed at the
#   built binary;
# - cppetcd.env: every ETCD_<FLAG> variable, commented out or not, names a
#   flag that `cppetcd --help` lists, and the required bootstrap ones are set;
# - maintainer scripts: `sh -n` (and shellcheck when installed).
set -u
binary=$1
dir=$2
unit=$dir/cppetcd.service
envfile=$dir/cppetcd.env
failures=0

fail() {
  echo "FAIL: $*" >&2
  failures=$((failures + 1))
}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/cppetcd-pkgcheck.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT

# --- unit file --------------------------------------------------------------
for line in \
  'Type=notify' \
  'User=cppetcd' \
  'Group=cppetcd' \
  'EnvironmentFile=-/etc/default/cppetcd' \
  'ExecStart=/usr/bin/cppetcd' \
  'Restart=on-failure' \
  'LimitNOFILE=65536' \
  'TimeoutStartSec=0' \
  'WantedBy=multi-user.target'; do
  grep -qxF "$line" "$unit" || fail "$unit: missing line '$line'"
done
for section in '[Unit]' '[Service]' '[Install]'; do
  grep -qxF "$section" "$unit" || fail "$unit: missing section $section"
done
if command -v systemd-analyze >/dev/null 2>&1; then
  sed "s#^ExecStart=/usr/bin/cppetcd#ExecStart=$binary#" "$unit" > "$tmp/cppetcd.service"
  out=$(systemd-analyze verify "$tmp/cppetcd.service" 2>&1)
  rc=$?
  # Unknown keys are only warnings (exit 0): any output is a failure too.
  if [ $rc -ne 0 ] || [ -n "$out" ]; then
    fail "systemd-analyze verify (rc $rc): $out"
  fi
else
  echo "note: systemd-analyze not installed; unit checked by grep only"
fi

# --- environment file -------------------------------------------------------
help=$("$binary" --help 2>&1)
if ! printf '%s\n' "$help" | grep -q -- '--name'; then
  fail "$binary --help lists no flags"
fi
vars=$(sed -n 's/^#\{0,1\}\(ETCD_[A-Z0-9_]*\)=.*/\1/p' "$envfile")
[ -n "$vars" ] || fail "$envfile: no ETCD_* variables"
for var in $vars; do
  flag=$(printf '%s' "${var#ETCD_}" | tr 'A-Z_' 'a-z-')
  if ! printf '%s\n' "$help" | grep -qE -- "(^|[ ,])--$flag([ ,=]|$)"; then
    fail "$envfile: $var: cppetcd has no flag --$flag"
  fi
done
for var in ETCD_NAME ETCD_DATA_DIR ETCD_LISTEN_PEER_URLS ETCD_INITIAL_ADVERTISE_PEER_URLS \
  ETCD_LISTEN_CLIENT_URLS ETCD_ADVERTISE_CLIENT_URLS ETCD_INITIAL_CLUSTER \
  ETCD_INITIAL_CLUSTER_TOKEN ETCD_INITIAL_CLUSTER_STATE; do
  grep -q "^$var=" "$envfile" || fail "$envfile: $var is not set"
done
grep -qx 'ETCD_DATA_DIR=/var/lib/cppetcd' "$envfile" || fail "$envfile: data dir is not /var/lib/cppetcd"
# systemd's EnvironmentFile takes VAR=value lines, comments and blank lines.
if grep -vE '^(#.*|[A-Z][A-Z0-9_]*=.*|)$' "$envfile"; then
  fail "$envfile: lines above are not VAR=value, comments or blank"
fi

# --- maintainer scripts -----------------------------------------------------
for script in "$dir"/debian/postinst "$dir"/debian/prerm "$dir"/debian/postrm; do
  [ -x "$script" ] || fail "$script is not executable"
  sh -n "$script" || fail "$script: syntax error"
  if command -v shellcheck >/dev/null 2>&1; then
    shellcheck "$script" || fail "$script: shellcheck"
  fi
done
grep -q 'adduser .*--system' "$dir/debian/postinst" || fail "postinst: no system user"
grep -q 'chmod 0700 /var/lib/cppetcd' "$dir/debian/postinst" || fail "postinst: data dir mode"

if [ $failures -ne 0 ]; then
  echo "$failures packaging check(s) failed" >&2
  exit 1
fi
echo "packaging files OK"
