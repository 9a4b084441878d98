#!/usr/bin/env bash
# Install the Debian packages the test suite needs beyond the Python venv: redis-server (the
# shared embedding cache's integration tests start a real one on a free loopback port) and
# prometheus, for its promtool (tests/deploy checks and unit-tests the alert rules with it).
#
#   bash scripts/install_system_deps.sh
#
# Idempotent and quiet: does nothing when every program is already on PATH. Installs with apt-get
# only when running as root on a Debian/Ubuntu system; otherwise it prints what is missing and
# exits 0, and the tests that need the program skip with a message naming it. The packages' own
# services are not started (policy-rc.d refuses them for the duration of the install): tests start
# their own redis-server processes and use only promtool.
set -euo pipefail

# program on PATH -> Debian package that provides it
declare -A wanted=([redis-server]=redis-server [promtool]=prometheus)

missing=()
for program in "${!wanted[@]}"; do
  if ! command -v "$program" >/dev/null 2>&1; then
    missing+=("${wanted[$program]}")
  fi
done
[ "${#missing[@]}" -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "install_system_deps: missing ${missing[*]}; install as root with: apt-get install -y ${missing[*]}" \
    "(tests that need them will skip)" >&2
  exit 0
fi

echo "install_system_deps: apt-get install ${missing[*]}" >&2
# Keep the packages' init scripts from starting redis (6379) or prometheus (9090) in containers and CI.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy"
  chmod 0755 "$policy"
  created_policy=1
fi
cleanup() { if [ "$created_policy" -eq 1 ]; then rm -f "$policy"; fi; }
trap cleanup EXIT

export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1; then
  # The package lists may be missing or stale on a fresh machine.
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
