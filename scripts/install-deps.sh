#!/usr/bin/env bash
# Installs the Debian packages memkeep needs to build, test and benchmark.
# Idempotent: only runs apt-get when something is missing.
set -euo pipefail

packages=(
  build-essential cmake g++ clang libclang-rt-14-dev
  libcli11-dev libfmt-dev libxxhash-dev libgtest-dev librocksdb-dev
  python3 python3-pytest python3-pymemcache python3-hypothesis python3-pytest-xdist
  memcached libmemcached-tools
  libssl-dev openssl libsasl2-dev libsasl2-modules sasl2-bin
)

missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done

if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -q "${missing[@]}"
fi
