#!/usr/bin/env bash
# Installs what cppetcd needs to build and test on Debian 12, skipping what is
# already there. Runs as root or through sudo.
set -euo pipefail
pkgs=(
  build-essential cmake ninja-build ccache pkg-config git
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libabsl-dev liblmdb-dev libspdlog-dev libssl-dev libgtest-dev libgmock-dev
  libbenchmark-dev libyaml-cpp-dev nlohmann-json3-dev libmicrohttpd-dev libsystemd-dev libcrypt-dev
  # reference client and server for the integration and differential tests
  etcd-client etcd-server
  # tools the tests use
  curl openssl jq procps iproute2
  # the fault harness's clock-jump fault (tests/robustness/runner)
  libfaketime
  # the fault harness's --net netns partitions (network namespaces, nft)
  nftables
  # coverage-guided fuzzing (tests/fuzz/run.sh): clang, libFuzzer, sanitizer runtimes
  clang libfuzzer-14-dev libclang-rt-14-dev
  # etcd 3.4's own e2e suite (tests/e2e_etcd/run.sh): Go and etcd's sources
  # with the Go packages they build against
  golang-go golang-etcd-server-dev
)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
