#!/usr/bin/env bash
# Regenerates the seed corpora that come from files the project (or etcd)
# writes: `fuzz_make_corpus` (built in a normal build dir, default
# build/release) writes the WAL, snapshot, LMDB, peer-message and
# server-request seeds; a throw-away etcd 3.4 (/usr/bin/etcd, loopback, OS
# ports) writes the bbolt seeds with `etcdctl snapshot save` and, stopped,
# the etcd_wal seed from its own WAL. The hand-written
# seeds (jwt, http_json, flags, config_file) are edited in place.
#   tests/fuzz/gen_corpus.sh [build-dir]
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
bdir=${1:-build/release}
corpus=$root/tests/fuzz/corpus
cmake --build "$bdir" --target fuzz_make_corpus
"$bdir/tests/fuzz/fuzz_make_corpus" "$corpus"

tmp=$(mktemp -d)
etcd_pid=""
cleanup() {
  [ -n "$etcd_pid" ] && kill "$etcd_pid" 2>/dev/null && wait "$etcd_pid" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cport=$(port); pport=$(port)
/usr/bin/etcd --name seed --data-dir "$tmp/etcd" \
  --listen-client-urls "http://127.0.0.1:$cport" --advertise-client-urls "http://127.0.0.1:$cport" \
  --listen-peer-urls "http://127.0.0.1:$pport" --initial-advertise-peer-urls "http://127.0.0.1:$pport" \
  --initial-cluster "seed=http://127.0.0.1:$pport" > "$tmp/etcd.log" 2>&1 &
etcd_pid=$!
ctl() { ETCDCTL_API=3 etcdctl --endpoints "127.0.0.1:$cport" "$@"; }
deadline=$((SECONDS + 30))
until ctl endpoint health > /dev/null 2>&1; do
  ((SECONDS < deadline)) || { cat "$tmp/etcd.log"; exit 1; }
  sleep 0.2
done
ctl put foo bar > /dev/null
ctl put foo/2 "$(head -c 3000 /dev/zero | tr '\0' x)" > /dev/null
id=$(ctl lease grant 600 | awk '{print $2}')
ctl put leased v --lease="$id" > /dev/null
ctl snapshot save "$tmp/snap.db" > /dev/null 2>&1
mkdir -p "$corpus/bbolt"
cp "$tmp/snap.db" "$corpus/bbolt/etcd-3.4-snapshot"
# etcd_wal: etcd's own WAL segment after a clean stop, without its
# preallocated zeros, as input {mode 0, index byte 0, segment}.
kill "$etcd_pid" && wait "$etcd_pid" 2>/dev/null || true
etcd_pid=""
mkdir -p "$corpus/etcd_wal"
python3 - "$tmp/etcd/member/wal/0000000000000000-0000000000000000.wal" "$corpus/etcd_wal/etcd-3.4-wal" <<'PY'
import sys
data = open(sys.argv[1], "rb").read().rstrip(b"\0")
data += b"\0" * (-len(data) % 8)
open(sys.argv[2], "wb").write(b"\0\0" + data)
PY
echo "seeds written under $corpus"
