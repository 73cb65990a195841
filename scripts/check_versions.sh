#!/usr/bin/env bash
# Type-checks the crate against every PostgreSQL major version it declares (pg13 to pg18) without
# those servers installed: pgrx-pg-sys ships pre-generated bindings for each version and uses
# them instead of running bindgen when built for docs.rs (DOCS_RS=1 and --cfg docsrs). The
# cfg is given to pgrx-pg-sys alone (a cargo profile setting, behind -Zprofile-rustflags, hence
# RUSTC_BOOTSTRAP=1 on this stable toolchain): other crates read `docsrs` as "nightly docs
# build" and would not compile. A compile check only: nothing is linked or run here;
# scripts/test.sh runs every suite on PostgreSQL 15, 16 and 18.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${CHECK_TARGET_DIR:-target/versions}
for v in ${VERSIONS:-13 14 15 16 17 18}; do
  echo "== cargo check, PostgreSQL $v bindings"
  RUSTC_BOOTSTRAP=1 DOCS_RS=1 cargo -Zprofile-rustflags check --quiet \
    --config 'profile.dev.package.pgrx-pg-sys.rustflags=["--cfg","docsrs"]' \
    --no-default-features --features "pg$v" --lib --target-dir "$dir"
done
echo "versions: $(printf 'pg%s ' ${VERSIONS:-13 14 15 16 17 18})compile"
