#!/usr/bin/env bash
# make package: an installable tarball of tasker_core for PostgreSQL 15 (x86_64 Debian/Ubuntu
# layout), built with `cargo pgrx package`, plus the frozen install scripts of released
# versions (so `CREATE EXTENSION tasker_core VERSION 'x'` works for a rollback rehearsal).
# Install on a database server with: sudo tar -xzf tasker_core-*.tar.gz -C /
set -euo pipefail
cd "$(dirname "$0")/.."
PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config
scripts/setup.sh
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
cargo pgrx package --pg-config "$PG_CONFIG" >target/package.log 2>&1 || { tail -30 target/package.log; exit 1; }
root=target/release/tasker_core-pg15
extdir="$root$($PG_CONFIG --sharedir)/extension"
cp sql/released/tasker_core--*.sql "$extdir"/
out="target/tasker_core-$version-pg15-$(dpkg --print-architecture 2>/dev/null || uname -m).tar.gz"
tar -czf "$out" -C "$root" --owner=0 --group=0 .
echo "$out"
tar -tzf "$out" | sed 's/^\.\//  \//' | grep -v '/$'
