#!/usr/bin/env bash
# Prints the Rails engine's spec/dummy/db/structure.sql when a checkout or git directory of
# jcoletaylor/tasker is at hand (TASKER_ENGINE, default the mirror), and nothing otherwise.
# Sourced by the differential tests that compare with the engine's own definitions.
engine_structure() {
  local engine=${TASKER_ENGINE:-/work/.mirror/jcoletaylor+tasker/repo}
  if git --git-dir="$engine" rev-parse HEAD >/dev/null 2>&1; then
    git --git-dir="$engine" show HEAD:spec/dummy/db/structure.sql 2>/dev/null || true
  elif [ -f "$engine/spec/dummy/db/structure.sql" ]; then
    cat "$engine/spec/dummy/db/structure.sql"
  fi
}
