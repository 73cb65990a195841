# End-to-end orchestration benchmark from Ruby (ActiveRecord 6.1 over a unix socket, one client):
# the native call against the engine's statement sequence for the same work, side by side, on
# the same database (tasker_core.enable(triggers => false): the drop-in reads are native on both
# sides, so only the orchestration differs). The engine's sequences are reproduced from its
# source as orchestration.md A.4, B.3 and C.7 count them (get_sequence, discovery, the
# StepExecutor pre-checks, Statesman's reads, guard, validations and writes, TaskFinalizer's
# three context reads); lifecycle-event payload queries are left out on both sides.
# Prints one line per workload: name|tasks|native median us|engine median us|statements per task.
# Usage: PGHOST=... PGPORT=... PGDATABASE=... ruby tests/bench/orchestration.rb [TASKS]
require 'active_record'
require 'json'

ActiveRecord::Base.establish_connection(
  adapter: 'postgresql', host: ENV.fetch('PGHOST'), port: ENV.fetch('PGPORT').to_i,
  username: ENV.fetch('PGUSER', 'postgres'), database: ENV.fetch('PGDATABASE')
)
ActiveRecord::Base.logger = nil
C = ActiveRecord::Base.connection
TASKS = (ARGV[0] || 200).to_i

def q(sql, *binds)
  attrs = binds.map { |b| ActiveRecord::Relation::QueryAttribute.new('b', b, ActiveRecord::Type::Value.new) }
  $statements += 1
  C.select_all(sql, 'bench', attrs).to_a
end

def clock = Process.clock_gettime(Process::CLOCK_MONOTONIC)

def median(xs) = xs.sort[xs.size / 2]

# A task of 10 steps: 3 roots, then 1->4, 2->4, 3->5, 4->6, 5->6, 6->7, 6->8, 7->9, 8->10.
def make_task(named_task, named_steps)
  now = Time.now.utc
  task = q('INSERT INTO tasker_tasks (named_task_id, requested_at, identity_hash, created_at, updated_at) VALUES ($1, $2, md5(random()::text), $2, $2) RETURNING task_id', named_task, now).first['task_id']
  ids = named_steps.map do |ns|
    q('INSERT INTO tasker_workflow_steps (task_id, named_step_id, attempts, retry_limit, created_at, updated_at) VALUES ($1, $2, 0, 3, $3, $3) RETURNING workflow_step_id', task, ns, now).first['workflow_step_id']
  end
  [[1, 4], [2, 4], [3, 5], [4, 6], [5, 6], [6, 7], [6, 8], [7, 9], [8, 10]].each do |a, b|
    q("INSERT INTO tasker_workflow_step_edges (from_step_id, to_step_id, name, created_at, updated_at) VALUES ($1, $2, 'provides', $3, $3)", ids[a - 1], ids[b - 1], now)
  end
  q("INSERT INTO tasker_task_transitions (task_id, to_state, sort_key, most_recent, metadata, created_at, updated_at) VALUES ($1, 'in_progress', 10, true, '{}', $2, $2)", task, now)
  [task, ids]
end

# --- the engine's sequences -------------------------------------------------------------------

def current_state(table, col, id)
  q("SELECT * FROM #{table} WHERE #{col} = $1 AND most_recent = true ORDER BY id ASC LIMIT 1", id).first&.fetch('to_state') || 'pending'
end

# WorkflowStep.get_steps_for_task, per orchestration.md A.4.
def get_sequence(task)
  steps = q('SELECT * FROM tasker_workflow_steps WHERE task_id = $1', task)
  named_task = q('SELECT named_task_id FROM tasker_tasks WHERE task_id = $1 LIMIT 1', task).first['named_task_id']
  steps.each do |s|
    ns = q('SELECT * FROM tasker_named_steps WHERE named_step_id = $1 LIMIT 1', s['named_step_id']).first
    q('SELECT * FROM tasker_dependent_systems WHERE dependent_system_id = $1 LIMIT 1', ns['dependent_system_id'])
    q('SELECT * FROM tasker_named_tasks_named_steps WHERE named_task_id = $1 AND named_step_id = $2 LIMIT 1', named_task, s['named_step_id'])
    q('SELECT * FROM tasker_named_tasks WHERE named_task_id = $1', named_task)
    q('SELECT * FROM tasker_named_steps WHERE named_step_id = $1', s['named_step_id'])
    q('SELECT * FROM tasker_workflow_steps WHERE task_id = $1 AND named_step_id = $2 LIMIT 1', task, s['named_step_id'])
  end
  q('SELECT from_step_id, to_step_id FROM tasker_workflow_step_edges WHERE to_step_id = ANY($1::bigint[])', "{#{steps.map { |s| s['workflow_step_id'] }.join(',')}}").each do |e|
    q('SELECT 1 AS one FROM tasker_workflow_step_edges WHERE from_step_id = $1 AND to_step_id = $2 LIMIT 1', e['from_step_id'], e['to_step_id'])
  end
  steps
end

# IdempotentStateTransitions#safe_transition_to on a step, as Statesman runs it (B.2, B.3).
def engine_transition_step(step, to)
  return false if current_state('tasker_workflow_step_transitions', 'workflow_step_id', step) == to
  from = current_state('tasker_workflow_step_transitions', 'workflow_step_id', step)
  if to == 'in_progress'
    parents = q('SELECT from_step_id FROM tasker_workflow_step_edges WHERE to_step_id = $1', step)
    return false unless parents.all? { |p| %w[complete resolved_manually].include?(current_state('tasker_workflow_step_transitions', 'workflow_step_id', p['from_step_id'])) }
  end
  return false unless { 'pending' => %w[in_progress error cancelled resolved_manually], 'in_progress' => %w[complete error cancelled], 'error' => %w[pending resolved_manually] }.fetch(from, []).include?(to)
  last = q('SELECT * FROM tasker_workflow_step_transitions WHERE workflow_step_id = $1 ORDER BY sort_key DESC LIMIT 1', step).first
  ActiveRecord::Base.transaction do
    return false if current_state('tasker_workflow_step_transitions', 'workflow_step_id', step) == to
    now = Time.now.utc
    q('UPDATE tasker_workflow_step_transitions SET most_recent = false, updated_at = $2 WHERE workflow_step_id = $1 AND most_recent = true', step, now)
    key = (last ? last['sort_key'] : 0) + 10
    q('SELECT 1 AS one FROM tasker_workflow_step_transitions WHERE sort_key = $1 AND workflow_step_id = $2 LIMIT 1', key, step)
    q('SELECT 1 AS one FROM tasker_workflow_steps WHERE workflow_step_id = $1 LIMIT 1', step)
    q("INSERT INTO tasker_workflow_step_transitions (workflow_step_id, to_state, sort_key, most_recent, metadata, created_at, updated_at) VALUES ($1, $2, $3, true, '{}', $4, $4) RETURNING id", step, to, key, now)
  end
  true
end

# One discovery iteration plus the start of every viable step (A.1, A.2, A.4).
def engine_discover_and_start(task)
  steps = get_sequence(task)
  ready = q('SELECT * FROM get_step_readiness_status($1::BIGINT, $2::BIGINT[])', task, "{#{steps.map { |s| s['workflow_step_id'] }.join(',')}}")
          .select { |r| r['ready_for_execution'] }.map { |r| r['workflow_step_id'] }
  return [] if ready.empty?
  q("SELECT 1 AS one FROM tasker_workflow_steps WHERE workflow_step_id = ANY($1::bigint[]) LIMIT 1", "{#{ready.join(',')}}")
  viable = q('SELECT * FROM tasker_workflow_steps WHERE workflow_step_id = ANY($1::bigint[])', "{#{ready.join(',')}}")
  q('SELECT * FROM tasker_named_steps WHERE named_step_id = ANY($1::int[])', "{#{viable.map { |s| s['named_step_id'] }.join(',')}}")
  viable.select do |s|
    q('SELECT * FROM tasker_workflow_steps WHERE workflow_step_id = $1 LIMIT 1', s['workflow_step_id'])
    next false unless current_state('tasker_workflow_step_transitions', 'workflow_step_id', s['workflow_step_id']) == 'pending'
    engine_transition_step(s['workflow_step_id'], 'in_progress')
  end.map { |s| s['workflow_step_id'] }
end

# TaskFinalizer#finalize_task on a task whose steps are all complete (C.1, C.3, C.7).
def engine_finalize(task)
  get_sequence(task)
  3.times { q('SELECT * FROM get_task_execution_context($1::BIGINT)', task) }
  q('SELECT * FROM tasker_tasks WHERE task_id = $1 LIMIT 1', task)
  return unless current_state('tasker_task_transitions', 'task_id', task) == 'in_progress'
  ActiveRecord::Base.transaction do
    q('UPDATE tasker_tasks SET complete = true, updated_at = $2 WHERE task_id = $1', task, Time.now.utc)
    3.times { current_state('tasker_task_transitions', 'task_id', task) }
    done = q('SELECT * FROM get_step_readiness_status($1::BIGINT, NULL::BIGINT[])', task).count { |r| %w[complete resolved_manually].include?(r['current_state']) }
    total = q('SELECT COUNT(*) FROM tasker_workflow_steps WHERE task_id = $1', task).first['count']
    raise ActiveRecord::Rollback unless done == total
    last = q('SELECT * FROM tasker_task_transitions WHERE task_id = $1 ORDER BY sort_key DESC LIMIT 1', task).first
    now = Time.now.utc
    q('UPDATE tasker_task_transitions SET most_recent = false, updated_at = $2 WHERE task_id = $1 AND most_recent = true', task, now)
    q('SELECT 1 AS one FROM tasker_task_transitions WHERE sort_key = $1 AND task_id = $2 LIMIT 1', last['sort_key'] + 10, task)
    q('SELECT 1 AS one FROM tasker_tasks WHERE task_id = $1 LIMIT 1', task)
    q("INSERT INTO tasker_task_transitions (task_id, to_state, sort_key, most_recent, metadata, created_at, updated_at) VALUES ($1, 'complete', $2, true, '{}', $3, $3)", task, last['sort_key'] + 10, now)
  end
end

def complete_all(ids)
  now = Time.now.utc
  ids.each do |s|
    q("INSERT INTO tasker_workflow_step_transitions (workflow_step_id, to_state, sort_key, most_recent, metadata, created_at, updated_at) VALUES ($1, 'complete', 10, true, '{}', $2, $2)", s, now)
  end
end

# --- the runs -----------------------------------------------------------------------------------

$statements = 0
ns_id = q("INSERT INTO tasker_task_namespaces (name, created_at, updated_at) VALUES ('bench', now(), now()) RETURNING task_namespace_id").first['task_namespace_id']
sys_id = q("INSERT INTO tasker_dependent_systems (name, created_at, updated_at) VALUES ('bench', now(), now()) RETURNING dependent_system_id").first['dependent_system_id']
named_task = q("INSERT INTO tasker_named_tasks (name, task_namespace_id, created_at, updated_at) VALUES ('bench', $1, now(), now()) RETURNING named_task_id", ns_id).first['named_task_id']
named_steps = (1..10).map do |i|
  id = q("INSERT INTO tasker_named_steps (name, dependent_system_id, created_at, updated_at) VALUES ($1, $2, now(), now()) RETURNING named_step_id", "bench_#{i}", sys_id).first['named_step_id']
  q('INSERT INTO tasker_named_tasks_named_steps (named_task_id, named_step_id, skippable, default_retryable, default_retry_limit, created_at, updated_at) VALUES ($1, $2, false, true, 3, now(), now())', named_task, id)
  id
end

results = {}
%w[discover_and_start finalize].each do |workload|
  pairs = Array.new(TASKS) { [make_task(named_task, named_steps), make_task(named_task, named_steps)] }
  pairs.each { |(_, a), (_, b)| complete_all(a) && complete_all(b) } if workload == 'finalize'
  C.execute('VACUUM ANALYZE')
  native = []
  engine = []
  statements = [0, 0]
  pairs.each_with_index do |((t1, _), (t2, _)), i|
    # Alternate which side goes first, so neither always meets a warmer cache.
    order = i.even? ? %i[native engine] : %i[engine native]
    order.each do |side|
      $statements = 0
      t0 = clock
      if side == :native
        workload == 'finalize' ? q('SELECT * FROM tasker_core.finalize_task($1)', t1) : q('SELECT * FROM tasker_core.claim_ready_steps($1)', t1)
        native << (clock - t0)
        statements[0] += $statements
      else
        workload == 'finalize' ? engine_finalize(t2) : engine_discover_and_start(t2)
        engine << (clock - t0)
        statements[1] += $statements
      end
    end
  end
  # Both sides did the same work.
  if workload == 'discover_and_start'
    started = pairs.map { |(t1, _), (t2, _)| [t1, t2].map { |t| q("SELECT count(*) FROM tasker_workflow_step_transitions x JOIN tasker_workflow_steps s USING (workflow_step_id) WHERE s.task_id = $1 AND x.to_state = 'in_progress'", t).first['count'] } }
    abort "bench: the two sides started different steps: #{started.uniq.inspect}" unless started.all? { |a, b| a == b && a == 3 }
  else
    done = pairs.map { |(t1, _), (t2, _)| [t1, t2].map { |t| q('SELECT complete FROM tasker_tasks WHERE task_id = $1', t).first['complete'] } }
    abort "bench: not every task was completed: #{done.uniq.inspect}" unless done.flatten.all?(true)
  end
  results[workload] = [median(native) * 1e6, median(engine) * 1e6, statements[0].fdiv(TASKS), statements[1].fdiv(TASKS)]
end
results.each do |w, (n, e, sn, se)|
  puts format('%s|%d|%.0f|%.0f|%.1f|%.1f', w, TASKS, n, e, sn, se)
end
