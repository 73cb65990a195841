# tasker_core: the commands a newcomer runs (Debian bookworm, as root). Each installs what is missing.
.PHONY: demo test setup install installcheck bench package clean check-versions

demo:        ## a private cluster, the extension, a sample Tasker database, the functions in action
	scripts/demo.sh

test:        ## every test: fmt, clippy, unit/property, #[pg_test], pg_regress, differential
	scripts/test.sh

setup:       ## just install the toolchain and packages
	scripts/setup.sh

install: setup
	cargo pgrx install --release --pg-config /usr/lib/postgresql/15/bin/pg_config

installcheck: ## pg_regress and pgTAP against an existing server (PGHOST, PGPORT, PGUSER), in scratch databases
	scripts/installcheck.sh

clean:
	cargo clean

check-versions: ## type-check against pg13-pg18 (pgrx's pre-generated bindings; part of `make test`)
	scripts/check_versions.sh

bench:       ## native vs SQL reference, side by side; writes docs/benchmarks.md
	scripts/bench.sh

package:     ## an installable tarball for PostgreSQL 15 (cargo pgrx package), in target/
	scripts/package.sh
