#!/usr/bin/env python3
"""Writes sql/tasker_core--0.2.0--0.3.0.sql while 0.3.0 is unreleased (then the file is frozen).

The upgrade adds what 0.3.0 has and 0.2.0 had not: the Rust functions behind the step state,
as pgrx declares them, and sql/step_state.sql. tests/upgrade/run.sh proves the result equals a
fresh install. Usage (from the repository root): scripts/make_upgrade_0.3.0.py
"""
import re
import subprocess
import tempfile

NEW_FUNCTIONS = ['step_state_rebuild', 'step_state_refresh', 'step_state_refresh_tasks',
                 'step_state_refresh_states', 'step_state_verify', 'step_state_check_not_missed']

with tempfile.NamedTemporaryFile(suffix='.sql') as out:
    subprocess.run(['cargo', 'pgrx', 'schema', 'pg15', '-o', out.name], check=True, capture_output=True)
    schema = open(out.name).read()


def declaration(name):
    found = re.search(r'CREATE  FUNCTION "%s".*?;\n' % name, schema, re.S)
    if not found:
        raise SystemExit(f'{name} is not in the generated schema')
    return found.group(0).replace(f'CREATE  FUNCTION "{name}"', f'CREATE FUNCTION tasker_core."{name}"')


header = '''-- tasker_core 0.2.0 -> 0.3.0: the derived step state (docs/step_state.md).
-- Written by scripts/make_upgrade_0.3.0.py until 0.3.0 is released, then frozen;
-- tests/upgrade/run.sh proves 0.2.0 + this == a fresh 0.3.0.
-- The five per-task read functions keep their declarations and symbols; only the library
-- behind them changed (materialize-mode results, step_state reads).

'''
body = header + ''.join(declaration(n) + '\n' for n in NEW_FUNCTIONS) + open('sql/step_state.sql').read()
open('sql/tasker_core--0.2.0--0.3.0.sql', 'w').write(re.sub(r' /\*[^*]*\*/', '', body))
