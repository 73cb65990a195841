#!/usr/bin/env bash
# Installs whatever this machine is missing to build, test and demo tasker_core
# (Debian bookworm, run as root). Safe to run again: each step is skipped when done.
set -euo pipefail
PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config
need_pkgs=()
for p in postgresql-15 postgresql-server-dev-15 libclang-dev clang sudo postgresql-15-pgtap \
         libtap-parser-sourcehandler-pgtap-perl ruby ruby-pg ruby-activerecord; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need_pkgs+=("$p")
done
if [ ${#need_pkgs[@]} -gt 0 ]; then
  echo "setup: installing ${need_pkgs[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi
# Debian's postgresql package may start its own cluster; tasker_core never uses it.
if ! cargo pgrx --version 2>/dev/null | grep -q "0.18.1"; then
  echo "setup: building cargo-pgrx 0.18.1 (about 7 minutes)"
  cargo install cargo-pgrx --version 0.18.1 --locked
fi
if ! grep -qs "pg15 = \"$PG_CONFIG\"" "${PGRX_HOME:-$HOME/.pgrx}/config.toml"; then
  cargo pgrx init --pg15 "$PG_CONFIG" >/dev/null
fi
rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt clippy >/dev/null 2>&1 || true
