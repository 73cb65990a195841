#!/usr/bin/env bash
# Replication tests of the derived step state: three real clusters.
#   1. Publication: with CREATE PUBLICATION ... FOR ALL TABLES on the primary (which publishes
#      tasker_core.step_state too), Rails-style step, transition and edge writes succeed (they
#      write step_state through its triggers; without a replica identity on it every one failed
#      with 55000) and step_state_verify() stays empty.
#   2. Logical subscriber (BASEPORT+1): the replicated step_state_source row (valid, built_on =
#      the primary's system identifier) is never trusted there: read_paths() says 'sql' for
#      every function because the copy was built on another server, the read functions answer
#      exactly as their SQL, no call takes the step_state path, and step_state_enable() is
#      refused in a database with subscriptions.
#   3. Hot standby (BASEPORT+2, pg_basebackup -R): same system identifier, so read_paths() says
#      'step_state'; every read function answers exactly as on the primary; and while a writer
#      keeps moving steps on the primary, the batch read with direct_reads on and off inside one
#      REPEATABLE READ transaction on the standby gives the same rows.
# Usage: tests/replication/run.sh BINDIR BASEPORT     (BINDIR: e.g. /usr/lib/postgresql/15/bin)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
bindir=${1:?PostgreSQL bin directory}; baseport=${2:?first of 3 free ports}
p0=$baseport; p1=$((baseport + 1)); p2=$((baseport + 2))
db=tasker_repl
export PGBIN=$bindir
export PGOPTIONS="-c client_min_messages=warning"
# The same settings on all three: a hot standby needs max_wal_senders etc. at least the primary's.
export PGOPTS="-c wal_level=logical -c max_wal_senders=10 -c max_replication_slots=10 -c hot_standby=on -c hot_standby_feedback=on -c wal_sender_timeout=60s"
cluster=$root/scripts/cluster.sh

work=$(mktemp -d /tmp/tasker_repl.XXXXXX)
chown postgres: "$work"; chmod 755 "$work"
prim=$work/primary; sub=$work/subscriber; stby=$work/standby
cleanup() {
  local rc=$?
  set +e
  if [ "$rc" != 0 ] || [ "${failed:-0}" != 0 ]; then # what the servers said, before it is deleted
    for d in "$prim" "$sub" "$stby"; do
      [ -f "$d/server.log" ] || continue
      echo "-- $(basename "$d")/server.log (errors and crashes):"
      { grep -E "PANIC|TRAP|terminated by signal|FATAL" "$d/server.log" | head -8; grep ERROR "$d/server.log" | tail -4; } | sed 's/^/   /'
    done
  fi
  if [ -n "${REPL_KEEP:-}" ]; then
    for d in "$sub" "$stby" "$prim"; do "$cluster" stop "$d" >/dev/null 2>&1; done
    echo "kept $work (REPL_KEEP)"; return
  fi
  for d in "$sub" "$stby" "$prim"; do "$cluster" stop "$d" >/dev/null 2>&1; done
  rm -rf "$work"
}
trap cleanup EXIT

psql_at() { local dir=$1 port=$2 dbname=$3; shift 3; command psql -h "$dir" -p "$port" -U postgres -d "$dbname" -X -q -At -v ON_ERROR_STOP=1 "$@"; }
qp() { psql_at "$prim" "$p0" "$db" "$@"; }
qs() { psql_at "$sub" "$p1" "$db" "$@"; }
qb() { psql_at "$stby" "$p2" "$db" "$@"; }

passed=0; failed=0
check() { if [ "$1" = ok ]; then passed=$((passed + 1)); echo "  ok: $2"; else failed=$((failed + 1)); echo "  FAILED: $2"; fi; }
# Waits up to $1 seconds for the command after it to print "t".
wait_for() {
  local secs=$1; shift; local i
  for i in $(seq 1 $((secs * 10))); do
    [ "$("$@" 2>/dev/null || true)" = t ] && return 0
    sleep 0.1
  done
  return 1
}

# Every read function over every task, one line per row in the order the function returns
# them ((task, step); levels by (level, step)), and the health counts.
tasks="unnest(ARRAY(SELECT task_id FROM tasker_tasks ORDER BY 1)) t(id)"
cat > "$work/reads.sql" <<SQL
SELECT 'readiness_batch', r::text FROM tasker_core.get_step_readiness_status_batch(ARRAY(SELECT task_id FROM tasker_tasks ORDER BY 1)) r;
SELECT 'contexts_batch', r::text FROM tasker_core.get_task_execution_contexts_batch(ARRAY(SELECT task_id FROM tasker_tasks ORDER BY 1)) r;
SELECT 'readiness', t.id, r::text FROM $tasks, LATERAL tasker_core.get_step_readiness_status(t.id) r;
SELECT 'context', t.id, r::text FROM $tasks, LATERAL tasker_core.get_task_execution_context(t.id) r;
SELECT 'levels', t.id, r::text FROM $tasks, LATERAL tasker_core.calculate_dependency_levels(t.id) r;
-- active_connections counts this server's own sessions (pg_stat_activity), not Tasker rows.
SELECT 'health', (to_jsonb(r) - 'active_connections')::text FROM tasker_core.get_system_health_counts_v01() r;
SQL

# The two batches over all tasks as "rows md5-of-the-rows-in-order", for comparisons inside
# one transaction.
digest() { echo "SELECT count(*) || ' ' || md5(coalesce(string_agg(r::text, E'\\n'), '')) FROM tasker_core.$1(ARRAY(SELECT task_id FROM tasker_tasks ORDER BY 1)) r"; }
batch_digest=$(digest get_step_readiness_status_batch)
ctx_digest=$(digest get_task_execution_contexts_batch)
stats="SELECT coalesce(string_agg(path || '=' || calls, ' ' ORDER BY path), '') FROM (SELECT path, sum(calls) calls FROM tasker_core.read_path_stats() GROUP BY path) s"

echo "== setting up the primary (port $p0)"
"$cluster" start "$prim" "$p0"
psql_at "$prim" "$p0" postgres -c "CREATE DATABASE $db"
qp -f "$root/tests/fixtures/tasker_schema.sql"
qp -f "$root/tests/fixtures/generator.sql"
# Anchored a day back: no retry backoff is still running, so readiness does not depend on
# the moment a server answers (the primary and the standby answer at different moments).
steps=$(qp <<'SQL'
CREATE EXTENSION tasker_core;
SELECT tasker_gen.generate(0.4, 200, anchor => LOCALTIMESTAMP - interval '1 day') \g /dev/null
SELECT count(*) FROM tasker_core.enable(functions => false) \g /dev/null
SELECT count(*) FROM tasker_core.step_state_enable() \g /dev/null
INSERT INTO tasker_task_namespaces (name, created_at, updated_at) VALUES ('repl', now(), now());
INSERT INTO tasker_dependent_systems (name, created_at, updated_at) VALUES ('repl', now(), now());
INSERT INTO tasker_named_tasks (name, task_namespace_id, created_at, updated_at)
SELECT 'repl', task_namespace_id, now(), now() FROM tasker_task_namespaces WHERE name = 'repl';
INSERT INTO tasker_named_steps (dependent_system_id, name, created_at, updated_at)
SELECT dependent_system_id, 'repl_' || g, now(), now() FROM tasker_dependent_systems, generate_series(1, 3) g WHERE name = 'repl';
-- Test helpers (functions only: a table here would be published and missing on the subscriber).
CREATE SCHEMA repl_test;
CREATE FUNCTION repl_test.named_task() RETURNS integer LANGUAGE sql STABLE AS $$ SELECT named_task_id FROM tasker_named_tasks WHERE name = 'repl' $$;
CREATE FUNCTION repl_test.named_step(i integer) RETURNS integer LANGUAGE sql STABLE AS $$ SELECT named_step_id FROM tasker_named_steps WHERE name = 'repl_' || i $$;
-- Statesman's write: clear the flag, then insert the new most_recent row.
CREATE PROCEDURE repl_test.move_step(step bigint, state text) LANGUAGE plpgsql AS $$
BEGIN
    UPDATE tasker_workflow_step_transitions SET most_recent = false, updated_at = now() WHERE workflow_step_id = step AND most_recent;
    INSERT INTO tasker_workflow_step_transitions (workflow_step_id, to_state, sort_key, most_recent, metadata, created_at, updated_at)
    SELECT step, state, coalesce(max(sort_key), 0) + 10, true, '{}', now(), now() FROM tasker_workflow_step_transitions WHERE workflow_step_id = step;
END $$;
CREATE PROCEDURE repl_test.move_task(task bigint, state text) LANGUAGE plpgsql AS $$
BEGIN
    UPDATE tasker_task_transitions SET most_recent = false, updated_at = now() WHERE task_id = task AND most_recent;
    INSERT INTO tasker_task_transitions (task_id, to_state, sort_key, most_recent, metadata, created_at, updated_at)
    SELECT task, state, coalesce(max(sort_key), 0) + 10, true, '{}', now(), now() FROM tasker_task_transitions WHERE task_id = task;
END $$;
-- A writer for $1 seconds: new tasks of three chained steps, each step moved
-- pending -> in_progress -> complete and the task along with them, committing after every move.
CREATE PROCEDURE repl_test.writer(seconds double precision, INOUT moves integer DEFAULT 0) LANGUAGE plpgsql AS $$
DECLARE
    deadline timestamptz := clock_timestamp() + make_interval(secs => seconds);
    t bigint;
    s bigint[];
    st text;
    i integer;
BEGIN
    moves := 0;
    WHILE clock_timestamp() < deadline LOOP
        INSERT INTO tasker_tasks (named_task_id, requested_at, identity_hash, created_at, updated_at)
        VALUES (repl_test.named_task(), now(), md5(random()::text || clock_timestamp()), now(), now()) RETURNING task_id INTO t;
        WITH ins AS (
            INSERT INTO tasker_workflow_steps (task_id, named_step_id, created_at, updated_at)
            SELECT t, repl_test.named_step(g), now(), now() FROM generate_series(1, 3) g RETURNING workflow_step_id)
        SELECT array_agg(workflow_step_id ORDER BY workflow_step_id) INTO s FROM ins;
        INSERT INTO tasker_workflow_step_edges (from_step_id, to_step_id, name, created_at, updated_at)
        VALUES (s[1], s[2], 'provides', now(), now()), (s[2], s[3], 'provides', now(), now());
        CALL repl_test.move_task(t, 'pending');
        COMMIT;
        CALL repl_test.move_task(t, 'in_progress');
        COMMIT;
        FOR i IN 1 .. 3 LOOP
            FOREACH st IN ARRAY ARRAY['pending', 'in_progress', 'complete'] LOOP
                CALL repl_test.move_step(s[i], st);
                IF st = 'in_progress' THEN
                    UPDATE tasker_workflow_steps SET in_process = true, attempts = coalesce(attempts, 0) + 1,
                           last_attempted_at = now(), updated_at = now() WHERE workflow_step_id = s[i];
                ELSIF st = 'complete' THEN
                    UPDATE tasker_workflow_steps SET in_process = false, processed = true, processed_at = now(),
                           updated_at = now() WHERE workflow_step_id = s[i];
                END IF;
                COMMIT;
                moves := moves + 1;
            END LOOP;
        END LOOP;
        CALL repl_test.move_task(t, 'complete');
        COMMIT;
    END LOOP;
END $$;
SELECT count(*) FROM tasker_workflow_steps;
SQL
)
echo "  $steps steps in $(qp -c "SELECT count(*) FROM tasker_tasks") tasks; step state: $(qp -c "SELECT valid FROM tasker_core.step_state_source")"

echo "== 1. a publication FOR ALL TABLES on the primary, then Rails-style writes"
qp -c "CREATE PUBLICATION p FOR ALL TABLES"
published=$(qp -c "SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_publication_tables WHERE pubname = 'p' AND schemaname = 'tasker_core'")
echo "  tasker_core tables in the publication: $published"
identity=$(qp -c "SELECT relreplident FROM pg_class WHERE oid = 'tasker_core.step_state'::regclass")
[ "$published" = "event_consumers,events,step_state,step_state_log,step_state_source" ] && check ok "the publication includes the extension's tables: step_state, step_state_log and step_state_source (the case under test), events and event_consumers" \
  || check bad "the publication includes step_state, step_state_log, step_state_source, events and event_consumers (got: $published)"
echo "  step_state replica identity: $identity (f = FULL)"

# Each write in its own statement and transaction, as Rails sends them; every one must commit.
write_fail=0
w() { # $1 = what, $2 = SQL
  local out
  if out=$(qp -c "\\set VERBOSITY verbose" -c "$2" 2>&1); then :; else
    write_fail=$((write_fail + 1)); echo "    $1 failed: $(echo "$out" | grep -m1 ERROR)"
  fi
}
task=$(qp -c "INSERT INTO tasker_tasks (named_task_id, requested_at, identity_hash, created_at, updated_at)
              VALUES (repl_test.named_task(), now(), md5('repl-1'), now(), now()) RETURNING task_id" 2>&1) \
  || { write_fail=$((write_fail + 1)); echo "    task insert failed: $task"; task=0; }
w "task transition" "CALL repl_test.move_task($task, 'pending')"
s1=$(qp -c "INSERT INTO tasker_workflow_steps (task_id, named_step_id, created_at, updated_at) VALUES ($task, repl_test.named_step(1), now(), now()) RETURNING workflow_step_id" 2>&1) \
  || { write_fail=$((write_fail + 1)); echo "    step insert failed: $(echo "$s1" | grep -m1 ERROR)"; s1=0; }
s2=$(qp -c "INSERT INTO tasker_workflow_steps (task_id, named_step_id, created_at, updated_at) VALUES ($task, repl_test.named_step(2), now(), now()) RETURNING workflow_step_id" 2>&1) \
  || { write_fail=$((write_fail + 1)); echo "    step insert failed: $(echo "$s2" | grep -m1 ERROR)"; s2=0; }
w "edge insert" "INSERT INTO tasker_workflow_step_edges (from_step_id, to_step_id, name, created_at, updated_at) VALUES ($s1, $s2, 'provides', now(), now())"
w "task transition" "CALL repl_test.move_task($task, 'in_progress')"
for st in pending in_progress complete; do
  w "step $s1 -> $st (Statesman: clear most_recent)" "UPDATE tasker_workflow_step_transitions SET most_recent = false, updated_at = now() WHERE workflow_step_id = $s1 AND most_recent"
  w "step $s1 -> $st (Statesman: insert)" "INSERT INTO tasker_workflow_step_transitions (workflow_step_id, to_state, sort_key, most_recent, metadata, created_at, updated_at)
      SELECT $s1, '$st', coalesce(max(sort_key), 0) + 10, true, '{}', now(), now() FROM tasker_workflow_step_transitions WHERE workflow_step_id = $s1"
  w "step $s1 row update" "UPDATE tasker_workflow_steps SET attempts = coalesce(attempts, 0) + 1, in_process = ('$st' = 'in_progress'), updated_at = now() WHERE workflow_step_id = $s1"
done
w "step $s2 -> pending, in_progress in one transaction" "BEGIN; CALL repl_test.move_step($s2, 'pending'); CALL repl_test.move_step($s2, 'in_progress'); COMMIT;"
w "named step rename" "UPDATE tasker_named_steps SET name = name || '_x' WHERE name = 'repl_3'; UPDATE tasker_named_steps SET name = 'repl_3' WHERE name = 'repl_3_x'"
w "edge delete" "DELETE FROM tasker_workflow_step_edges WHERE to_step_id = $s2"
w "the writer procedure (one second)" "CALL repl_test.writer(1)"
# The online build logs each write and deletes what it replays: published deletes, too.
qp -c "CALL repl_test.writer(2)" >/dev/null 2>&1 &
w "an online rebuild while the writer procedure writes" "CALL tasker_core.step_state_rebuild_concurrently()"
wait
[ "$write_fail" = 0 ] && check ok "every step, transition, edge and task write committed with the publication in place" \
  || check bad "every step, transition, edge and task write committed with the publication in place ($write_fail failed)"
bad=$(qp -c "SELECT count(*) FROM tasker_core.step_state_verify()"); valid=$(qp -c "SELECT valid FROM tasker_core.step_state_source")
[ "$bad" = 0 ] && [ "$valid" = t ] && check ok "step_state_verify() finds nothing afterwards, the copy is valid" \
  || check bad "step_state_verify() finds nothing afterwards (rows that differ: $bad, valid: $valid)"
# A self-check that the writes really go through a published step_state: without the replica
# identity a step move must fail with 55000 (when the step state is refreshed: at commit, whose
# failure rolls the ALTER back too). A move, because its refresh UPDATEs step_state; a write of
# the step row alone now only inserts or upserts it (INSERT ... ON CONFLICT DO UPDATE, which
# PostgreSQL 15 does not check for a replica identity), and deletes rows only after a step went.
out=$(qp -c "\\set VERBOSITY verbose" -c "BEGIN; ALTER TABLE tasker_core.step_state REPLICA IDENTITY DEFAULT;
             CALL repl_test.move_step($s2, 'complete'); COMMIT;" 2>&1 || true)
grep -q "ERROR: *55000" <<<"$out" && check ok "self-check: with REPLICA IDENTITY DEFAULT on step_state a step move fails with 55000" \
  || { echo "    $out" | head -3; check bad "self-check: with REPLICA IDENTITY DEFAULT on step_state a step move fails with 55000"; }
# Whatever the self-check did, the rest runs with the identity enable() set.
qp -c "ALTER TABLE tasker_core.step_state REPLICA IDENTITY FULL" >/dev/null

echo "== 2. a logical subscriber (port $p1)"
"$cluster" start "$sub" "$p1"
psql_at "$sub" "$p1" postgres -c "CREATE DATABASE $db"
qs -f "$root/tests/fixtures/tasker_schema.sql"
qs -f "$root/tests/fixtures/generator.sql"
qs -c "CREATE EXTENSION tasker_core"
qs -c "CREATE SUBSCRIPTION s CONNECTION 'host=$prim port=$p0 user=postgres dbname=$db' PUBLICATION p"
synced() { qs -c "SELECT count(*) > 0 AND bool_and(srsubstate = 'r') FROM pg_subscription_rel"; }
if wait_for 90 synced && wait_for 30 qs -c "SELECT count(*) = 1 FROM tasker_core.step_state_source"; then
  check ok "initial copy done; the subscriber has the replicated step_state_source row"
else
  tail -5 "$sub/server.log"; check bad "initial copy done; the subscriber has the replicated step_state_source row"
fi
# More writes after the copy, streamed through the apply worker (step_state updates by full row).
w "the writer procedure (one second), streamed to the subscriber" "CALL repl_test.writer(1)"
# Wait for the subscription's slot to confirm the primary's last write.
target=$(qp -c "SELECT pg_current_wal_lsn()")
wait_for 60 qp -c "SELECT bool_and(confirmed_flush_lsn >= '$target') FROM pg_replication_slots WHERE slot_type = 'logical'" \
  || echo "    the subscription did not catch up in 60 s"
errs=$(qs -c "SELECT apply_error_count + sync_error_count FROM pg_stat_subscription_stats WHERE subname = 's'")
counts_p=$(qp -c "SELECT (SELECT count(*) FROM tasker_workflow_steps) || '/' || (SELECT count(*) FROM tasker_workflow_step_transitions) || '/' || (SELECT count(*) FROM tasker_core.step_state)")
counts_s=$(qs -c "SELECT (SELECT count(*) FROM tasker_workflow_steps) || '/' || (SELECT count(*) FROM tasker_workflow_step_transitions) || '/' || (SELECT count(*) FROM tasker_core.step_state)")
echo "  steps/transitions/step_state rows: primary $counts_p, subscriber $counts_s; apply+sync errors: $errs"
[ "$counts_p" = "$counts_s" ] && [ "$errs" = 0 ] && check ok "the subscriber caught up with the primary without apply errors" \
  || { grep -m3 ERROR "$sub/server.log"; check bad "the subscriber caught up with the primary without apply errors"; }
src=$(qs -c "SELECT valid || ' built_on=' || coalesce(built_on, '?') FROM tasker_core.step_state_source")
echo "  subscriber's step_state_source: valid=$src; subscriber's system identifier $(qs -c "SELECT system_identifier FROM pg_control_system()")"
paths=$(qs -c "SELECT function_name || ': ' || path || ' (' || coalesce(reason, '') || ')' FROM tasker_core.read_paths() ORDER BY 1")
echo "$paths" | sed 's/^/    /'
nsql=$(qs -c "SELECT count(*) FROM tasker_core.read_paths() WHERE path = 'sql' AND reason LIKE '%built on another server%' AND reason LIKE '%system identifier%'")
nall=$(qs -c "SELECT count(*) FROM tasker_core.read_paths()")
[ "$nall" = 7 ] && [ "$nsql" = 7 ] && check ok "read_paths() on the subscriber: 'sql' for all 7 functions, because the copy was built on another server" \
  || check bad "read_paths() on the subscriber: 'sql' for all 7 functions, because the copy was built on another server ($nsql of $nall)"
# Self-check: the replicated row is valid and names the subscriber's own tables (regclass
# travels as a name), so built_on is all that keeps the subscriber off the copy.
forged=$(qs -c "BEGIN; UPDATE tasker_core.step_state_source SET built_on = (SELECT system_identifier::text FROM pg_control_system());
                SELECT count(*) FROM tasker_core.read_paths() WHERE path = 'step_state'; ROLLBACK;")
[ "$forged" = 7 ] && check ok "self-check: with built_on set to the subscriber's own identifier, read_paths() would say 'step_state' (the check can fail)" \
  || check bad "self-check: with built_on set to the subscriber's own identifier, read_paths() would say 'step_state' (got $forged)"
res=$(qs <<SQL
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT tasker_core.read_path_stats_reset();
SET LOCAL tasker_core.direct_reads = off;
$batch_digest;
$ctx_digest;
SET LOCAL tasker_core.direct_reads = on;
$batch_digest;
$ctx_digest;
$stats;
COMMIT;
SQL
)
off_b=$(echo "$res" | sed -n 2p); off_c=$(echo "$res" | sed -n 3p); on_b=$(echo "$res" | sed -n 4p); on_c=$(echo "$res" | sed -n 5p); st=$(echo "$res" | sed -n 6p)
echo "  subscriber readiness batch: direct_reads off $off_b, on $on_b; contexts batch: off $off_c, on $on_c; read_path_stats: $st"
[ -n "$off_b" ] && [ "$off_b" = "$on_b" ] && [ "$off_c" = "$on_c" ] && [ "${off_b%% *}" -gt 0 ] \
  && check ok "the subscriber's batch functions answer exactly as SQL (direct_reads on = off)" \
  || check bad "the subscriber's batch functions answer exactly as SQL (direct_reads on = off)"
case " $st " in
  *" step_state="*) check bad "no call on the subscriber took the step_state path ($st)" ;;
  *" sql="*) check ok "no call on the subscriber took the step_state path ($st)" ;;
  *) check bad "no call on the subscriber took the step_state path: no calls counted at all ($st)" ;;
esac
# The same full answers as the primary's (same rows replicated, read by SQL there).
qp -f "$work/reads.sql" > "$work/reads.primary"
qs -f "$work/reads.sql" > "$work/reads.subscriber"
if cmp -s "$work/reads.primary" "$work/reads.subscriber"; then
  check ok "every read function on the subscriber answers as on the primary ($(wc -l < "$work/reads.primary") rows)"
else
  { diff "$work/reads.primary" "$work/reads.subscriber" || true; } | head -6; check bad "every read function on the subscriber answers as on the primary"
fi
out=$(qs -c "\\set VERBOSITY verbose" -c "SELECT * FROM tasker_core.step_state_enable()" 2>&1 || true)
grep -q "ERROR: *55000.*subscriptions" <<<"$out" && check ok "step_state_enable() is refused on the subscriber (55000: subscriptions)" \
  || { echo "    $(echo "$out" | head -2)"; check bad "step_state_enable() is refused on the subscriber (55000: subscriptions)"; }

echo "== 3. a hot standby of the primary (port $p2)"
mkdir -p "$stby"; chown postgres: "$stby"; chmod 700 "$stby"
sudo -u postgres -- "$bindir/pg_basebackup" -h "$prim" -p "$p0" -U postgres -D "$stby/data" -R -X stream -c fast >"$stby/basebackup.log" 2>&1 \
  || { cat "$stby/basebackup.log"; exit 1; }
"$cluster" start "$stby" "$p2"
caught_up_standby() { # waits for the standby to replay up to the primary's current WAL position
  local lsn; lsn=$(qp -c "SELECT pg_current_wal_lsn()")
  wait_for 60 qb -c "SELECT pg_is_in_recovery() AND pg_last_wal_replay_lsn() >= '$lsn'"
}
caught_up_standby && check ok "the standby is in recovery and has replayed the primary's WAL" \
  || { tail -5 "$stby/server.log"; check bad "the standby is in recovery and has replayed the primary's WAL"; }
echo "  system identifier: primary $(qp -c "SELECT system_identifier FROM pg_control_system()"), standby $(qb -c "SELECT system_identifier FROM pg_control_system()")"
nss=$(qb -c "SELECT count(*) FROM tasker_core.read_paths() WHERE path = 'step_state'")
[ "$nss" = 7 ] && check ok "read_paths() on the standby: 'step_state' for all 7 functions" \
  || { qb -c "SELECT function_name || ': ' || path || ' (' || coalesce(reason, '') || ')' FROM tasker_core.read_paths()" | sed 's/^/    /'; check bad "read_paths() on the standby: 'step_state' for all 7 functions ($nss)"; }
qp -f "$work/reads.sql" > "$work/reads.primary"
st=$(qb -c "\\o $work/reads.standby" -f "$work/reads.sql" -c "\\o" -c "$stats")
if cmp -s "$work/reads.primary" "$work/reads.standby"; then
  check ok "every read function on the standby answers as on the primary ($(wc -l < "$work/reads.primary") rows: $(cut -d'|' -f1 "$work/reads.primary" | sort | uniq -c | awk '{printf "%s %s, ", $2, $1}' | sed 's/, $//'))"
else
  { diff "$work/reads.primary" "$work/reads.standby" || true; } | head -6; check bad "every read function on the standby answers as on the primary"
fi
case " $st " in
  *" step_state="*) check ok "the standby's calls took the step_state path (read_path_stats: $st)" ;;
  *) check bad "the standby's calls took the step_state path (read_path_stats: $st)" ;;
esac

echo "== 3b. the standby during replay: direct_reads on and off in one REPEATABLE READ snapshot"
secs=8
qp -c "CALL repl_test.writer($secs)" > "$work/writer.out" 2>&1 &
writer=$!
iters=0; mismatches=0; on_states=""; step_state_calls=0
end=$((SECONDS + secs))
while [ "$SECONDS" -lt "$end" ]; do
  res=$(qb <<SQL 2>&1
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT tasker_core.read_path_stats_reset();
SET LOCAL tasker_core.direct_reads = on;
$batch_digest;
$ctx_digest;
SET LOCAL tasker_core.direct_reads = off;
$batch_digest;
$ctx_digest;
SELECT coalesce(sum(calls), 0) FROM tasker_core.read_path_stats() WHERE path = 'step_state';
COMMIT;
SQL
) || { echo "    standby transaction failed: $(echo "$res" | grep -m1 ERROR)"; mismatches=$((mismatches + 1)); continue; }
  iters=$((iters + 1))
  on_b=$(echo "$res" | sed -n 2p); on_c=$(echo "$res" | sed -n 3p); off_b=$(echo "$res" | sed -n 4p); off_c=$(echo "$res" | sed -n 5p)
  step_state_calls=$((step_state_calls + $(echo "$res" | sed -n 6p)))
  if [ "$on_b" != "$off_b" ] || [ "$on_c" != "$off_c" ]; then
    mismatches=$((mismatches + 1)); echo "    mismatch: readiness on $on_b / off $off_b; contexts on $on_c / off $off_c"
  fi
  on_states="$on_states${on_b%% *}"$'\n'
done
writer_rc=0; wait "$writer" || writer_rc=$?
moves=$(tail -1 "$work/writer.out")
distinct=$(printf '%s' "$on_states" | sort -u | grep -c . || true)
echo "  writer: exit $writer_rc, $moves step moves; standby: $iters snapshots compared, $distinct different readiness row counts seen, $step_state_calls step_state calls, $mismatches mismatches"
[ "$writer_rc" = 0 ] && [ "$iters" -ge 5 ] && [ "$mismatches" = 0 ] \
  && check ok "during replay, every snapshot on the standby gave the same batches with direct_reads on and off" \
  || { cat "$work/writer.out" | head -3; check bad "during replay, every snapshot on the standby gave the same batches with direct_reads on and off"; }
[ "$distinct" -ge 2 ] && [ "$step_state_calls" -ge "$iters" ] \
  && check ok "the comparison saw replay happening ($distinct states) and the 'on' reads took the step_state path" \
  || check bad "the comparison saw replay happening ($distinct states) and the 'on' reads took the step_state path ($step_state_calls calls)"
caught_up_standby || true
qp -f "$work/reads.sql" > "$work/reads.primary"
qb -f "$work/reads.sql" > "$work/reads.standby"
bad=$(qp -c "SELECT count(*) FROM tasker_core.step_state_verify()")
cmp -s "$work/reads.primary" "$work/reads.standby" && [ "$bad" = 0 ] \
  && check ok "after the writer: the standby answers as the primary, and step_state_verify() finds nothing on the primary" \
  || { { diff "$work/reads.primary" "$work/reads.standby" || true; } | head -6; check bad "after the writer: the standby answers as the primary (verify: $bad)"; }

echo "replication: $passed passed, $failed failed"
[ "$failed" = 0 ]
