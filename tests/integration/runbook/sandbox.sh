# Stand-ins that let the runbooks of docs/operations.md run unchanged on one
# machine (sourced by runbook_test before every block).
#
# The runbook test rewrites each block before running it:
#   - addresses 192.168.1.N become 127.A.B.N (a loopback /24 of its own per
#     test run, so members listen on the runbooks' ports 2379/2380 without
#     clashing with anything bound to 127.0.0.1);
#   - 127.0.0.1 becomes the host's own loopback address 127.A.B.(100+N)
#     (admin: N = 10);
#   - absolute paths under /etc, /var and /srv become paths under
#     $SANDBOX/<host>/, the block's host's private root (a chroot-like view).
# Each block runs on one host: an admin workstation ("admin") or a member
# ("etcd1".."etcd4"), given as $RUNBOOK_HOST.
#
# What this file provides instead of the real tools:
#   hostname   the host's name and (-I) address;
#   systemctl  start/stop/restart/is-active/enable --now for cppetcd.service
#              (a oneshot *.service in the host's /etc/systemd/system: `start`
#              runs its ExecStart; *.timer: accepted, never fires):
#              runs `cppetcd` with the ETCD_* variables of the host's
#              /etc/default/cppetcd, as systemd's EnvironmentFile does, with
#              stderr appended to the host's cppetcd.log ("the journal");
#              the PID goes to cppetcd.pid (the test kills by PID at the end);
#   scp        copies between hosts' roots (user@ADDR:/path);
#   chown      no-op (the sandbox has no cppetcd system user).
# Everything else (etcdctl, cppetcd, openssl, curl, jq) is the real binary.

: "${SANDBOX:?}" "${RUNBOOK_HOST:?}" "${RUNBOOK_NET:?}"

__host_root() { printf '%s/%s' "$SANDBOX" "$1"; }

__host_of_addr() {  # 127.A.B.1N -> etcdN
  local last=${1##*.}
  case "$last" in
    11) echo etcd1 ;; 12) echo etcd2 ;; 13) echo etcd3 ;; 14) echo etcd4 ;;
    *) echo "sandbox: no host has address $1" >&2; return 1 ;;
  esac
}

__addr_of_host() {
  case "$1" in
    etcd1) echo "$RUNBOOK_NET.11" ;; etcd2) echo "$RUNBOOK_NET.12" ;;
    etcd3) echo "$RUNBOOK_NET.13" ;; etcd4) echo "$RUNBOOK_NET.14" ;;
    *) echo "$RUNBOOK_NET.10" ;;
  esac
}

hostname() {
  case "${1:-}" in
    -I) echo "$(__addr_of_host "$RUNBOOK_HOST") " ;;
    *) echo "$RUNBOOK_HOST" ;;
  esac
}

chown() { :; }

scp() {
  local args=() a
  for a in "$@"; do
    case "$a" in
      -*) ;;  # -r, -p, -q: cp -r below covers them
      *@*:*|[0-9]*.*.*.*:*)
        local addr=${a#*@}; addr=${addr%%:*}
        local path=${a#*:}
        local host; host=$(__host_of_addr "$addr") || return 1
        # The path was rewritten into this host's root: move it to the
        # target host's root.
        path=${path#"$(__host_root "$RUNBOOK_HOST")"}
        args+=("$(__host_root "$host")$path")
        mkdir -p "$(dirname "$(__host_root "$host")$path")" ;;
      *) args+=("$a") ;;
    esac
  done
  cp -r "${args[@]}"
}

__env_file() { printf '%s/etc/default/cppetcd' "$(__host_root "$RUNBOOK_HOST")"; }
__pid_file() { printf '%s/cppetcd.pid' "$(__host_root "$RUNBOOK_HOST")"; }

__running() {
  local pid
  pid=$(cat "$(__pid_file)" 2>/dev/null) || return 1
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}

__start() {
  if __running; then return 0; fi
  local envs=() line
  while IFS= read -r line || [ -n "$line" ]; do
    case "$line" in ''|\#*) continue ;; esac
    # systemd's EnvironmentFile drops the quotes around a value.
    local k=${line%%=*} v=${line#*=}
    if [[ $v == \"*\" ]]; then v=${v:1:${#v}-2}; fi
    envs+=("$k=$v")
  done < "$(__env_file)"
  local root; root=$(__host_root "$RUNBOOK_HOST")
  mkdir -p "$root/var/lib/cppetcd"
  # WorkingDirectory=/var/lib/cppetcd, EnvironmentFile=/etc/default/cppetcd.
  ( cd "$root/var/lib/cppetcd" &&
    exec env -i PATH="$PATH" "${envs[@]}" setsid cppetcd \
      </dev/null >>"$root/cppetcd.log" 2>&1 ) &
  echo $! > "$(__pid_file)"
}

__stop() {
  local pid i
  pid=$(cat "$(__pid_file)" 2>/dev/null) || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  for i in $(seq 200); do  # up to 20 s, as TimeoutStopSec would
    kill -0 "$pid" 2>/dev/null || { rm -f "$(__pid_file)"; return 0; }
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null
  rm -f "$(__pid_file)"
}

systemctl() {
  local verb="" unit="" a
  for a in "$@"; do
    case "$a" in
      --now) [ "$verb" = enable ] && verb=start ;;
      -*) ;;
      *) if [ -z "$verb" ]; then verb=$a; else unit=$a; fi ;;
    esac
  done
  case "$verb" in daemon-reload) return 0 ;; esac
  case "$unit" in
    cppetcd|cppetcd.service) ;;
    *.timer) return 0 ;;  # timers: installed, never fire in the sandbox
    *.service)
      # A oneshot unit: `start` runs its ExecStart= now, synchronously.
      [ "$verb" = start ] || return 0
      local file; file="$(__host_root "$RUNBOOK_HOST")/etc/systemd/system/$unit"
      local exec; exec=$(sed -n 's/^ExecStart=//p' "$file")
      [ -n "$exec" ] || { echo "sandbox systemctl: no ExecStart in $unit" >&2; return 1; }
      env -i PATH="$PATH" HOME="$HOME" SANDBOX="$SANDBOX" bash -c "$exec"
      return ;;
    *) echo "sandbox systemctl: unknown unit '$unit'" >&2; return 1 ;;
  esac
  case "$verb" in
    start) __start ;;
    stop) __stop ;;
    restart) __stop; __start ;;
    is-active) if __running; then echo active; else echo inactive; return 3; fi ;;
    daemon-reload|enable|disable) ;;
    *) echo "sandbox systemctl: unsupported '$verb'" >&2; return 1 ;;
  esac
}
