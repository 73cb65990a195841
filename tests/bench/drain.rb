# Draining benchmark (issue 13): W worker processes (ActiveRecord 6.1, one connection each, unix
# socket) run T tasks of 10 steps to the end, every worker walking the same task list from its
# own starting point. Two ways, each on its own fresh tasks:
# - native: claim_ready_steps, then record_step_success for each claimed step;
# - the engine's: readiness, an unlocked "is it pending" check, Statesman's in_progress write,
#   then the step UPDATE and Statesman's complete write in one transaction (StepExecutor's
#   sequence, without locks), as Rails runs without tasker_core: Rails' own SQL functions, no
#   tasker_core triggers (the database is switched back with disable() for that run).
# "Executing" a step is appending its id to the worker's log; a step executed twice is a double
# execution. Prints: way|workers|tasks|steps done|seconds|steps/s|double executions|errors.
# Usage: PGHOST=... PGPORT=... PGDATABASE=... ruby tests/bench/drain.rb [WORKERS] [TASKS]
require 'active_record'
require 'json'
require 'tmpdir'

WORKERS = (ARGV[0] || 8).to_i
TASKS = (ARGV[1] || 1000).to_i
CONFIG = { adapter: 'postgresql', host: ENV.fetch('PGHOST'), port: ENV.fetch('PGPORT').to_i,
           username: ENV.fetch('PGUSER', 'postgres'), database: ENV.fetch('PGDATABASE') }.freeze

def connect
  ActiveRecord::Base.establish_connection(CONFIG)
  ActiveRecord::Base.logger = nil
  ActiveRecord::Base.connection
end

def q(conn, sql, *binds)
  attrs = binds.map { |b| ActiveRecord::Relation::QueryAttribute.new('b', b, ActiveRecord::Type::Value.new) }
  conn.select_all(sql, 'drain', attrs).to_a
end

# T tasks of 10 steps (3 roots; 1->4, 2->4, 3->5, 4->6, 5->6, 6->7, 6->8, 7->9, 8->10), in one statement each kind.
def make_tasks(conn, label)
  q(conn, "INSERT INTO tasker_task_namespaces (name, created_at, updated_at) VALUES ($1, now(), now()) ON CONFLICT DO NOTHING", 'drain')
  ns = q(conn, "SELECT task_namespace_id FROM tasker_task_namespaces WHERE name = 'drain'").first['task_namespace_id']
  q(conn, "INSERT INTO tasker_dependent_systems (name, created_at, updated_at) VALUES ('drain', now(), now()) ON CONFLICT DO NOTHING")
  sys = q(conn, "SELECT dependent_system_id FROM tasker_dependent_systems WHERE name = 'drain'").first['dependent_system_id']
  nt = q(conn, 'INSERT INTO tasker_named_tasks (name, task_namespace_id, created_at, updated_at) VALUES ($1, $2, now(), now()) RETURNING named_task_id', "drain_#{label}_#{rand(1_000_000_000)}", ns).first['named_task_id']
  nstep = q(conn, 'INSERT INTO tasker_named_steps (name, dependent_system_id, created_at, updated_at) VALUES ($1, $2, now(), now()) RETURNING named_step_id', "drain_#{label}_#{rand(1_000_000_000)}", sys).first['named_step_id']
  q(conn, <<~SQL, nt, nstep, TASKS).map { |r| r['task_id'] }
    WITH t AS (
      INSERT INTO tasker_tasks (named_task_id, requested_at, identity_hash, created_at, updated_at)
      SELECT $1, now(), md5(random()::text), now(), now() FROM generate_series(1, $3) RETURNING task_id)
    , s AS (
      INSERT INTO tasker_workflow_steps (task_id, named_step_id, attempts, retry_limit, created_at, updated_at)
      SELECT t.task_id, $2, 0, 3, now(), now() FROM t, generate_series(1, 10) RETURNING task_id, workflow_step_id)
    , n AS (SELECT task_id, workflow_step_id, row_number() OVER (PARTITION BY task_id ORDER BY workflow_step_id) AS k FROM s)
    , e AS (
      INSERT INTO tasker_workflow_step_edges (from_step_id, to_step_id, name, created_at, updated_at)
      SELECT a.workflow_step_id, b.workflow_step_id, 'provides', now(), now()
        FROM (VALUES (1, 4), (2, 4), (3, 5), (4, 6), (5, 6), (6, 7), (6, 8), (7, 9), (8, 10)) v(x, y)
        JOIN n a ON a.k = v.x JOIN n b ON b.k = v.y AND b.task_id = a.task_id
      RETURNING 1)
    , tt AS (
      INSERT INTO tasker_task_transitions (task_id, to_state, sort_key, most_recent, metadata, created_at, updated_at)
      SELECT task_id, 'in_progress', 10, true, '{}', now(), now() FROM t RETURNING task_id)
    SELECT task_id FROM tt ORDER BY task_id
  SQL
end

def native_worker(conn, tasks, log)
  deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + 600
  loop do
    worked = false
    tasks.each do |t|
      q(conn, 'SELECT workflow_step_id FROM tasker_core.claim_ready_steps($1)', t).each do |r|
        log.puts r['workflow_step_id']
        q(conn, "SELECT outcome FROM tasker_core.record_step_success($1, '{}'::jsonb)", r['workflow_step_id'])
        worked = true
      end
    end
    break if !worked && q(conn, "SELECT count(*) FROM tasker_workflow_steps s WHERE s.task_id = ANY($1::bigint[]) AND NOT s.processed", "{#{tasks.join(',')}}").first['count'].zero?
    break if Process.clock_gettime(Process::CLOCK_MONOTONIC) > deadline
    sleep 0.01 unless worked
  end
end

def statesman(conn, step, to)
  ActiveRecord::Base.transaction(requires_new: true) do
    last = q(conn, 'SELECT max(sort_key) AS k FROM tasker_workflow_step_transitions WHERE workflow_step_id = $1', step).first['k'] || 0
    q(conn, 'UPDATE tasker_workflow_step_transitions SET most_recent = false, updated_at = now() WHERE workflow_step_id = $1 AND most_recent', step)
    q(conn, "INSERT INTO tasker_workflow_step_transitions (workflow_step_id, to_state, sort_key, most_recent, metadata, created_at, updated_at) VALUES ($1, $2, $3, true, '{}', now(), now())", step, to, last + 10)
  end
end

def state_of(conn, step)
  q(conn, 'SELECT to_state FROM tasker_workflow_step_transitions WHERE workflow_step_id = $1 AND most_recent LIMIT 1', step).first&.fetch('to_state') || 'pending'
end

def engine_worker(conn, tasks, log, errors)
  idle_passes = 0
  loop do
    worked = false
    tasks.each do |t|
      ready = begin
        q(conn, 'SELECT workflow_step_id FROM get_step_readiness_status($1::BIGINT, NULL::BIGINT[]) WHERE ready_for_execution', t)
      rescue ActiveRecord::StatementInvalid
        []
      end
      ready.each do |r|
        s = r['workflow_step_id']
        next unless state_of(conn, s) == 'pending' # StepExecutor's check 3, unlocked
        begin
          statesman(conn, s, 'in_progress')
        rescue ActiveRecord::StatementInvalid
          # The engine's failure path: attempts + 1 and error written over the step.
          errors.puts s
          begin
            ActiveRecord::Base.transaction do
              q(conn, 'UPDATE tasker_workflow_steps SET attempts = coalesce(attempts, 0) + 1 WHERE workflow_step_id = $1', s)
              statesman(conn, s, 'error')
            end
          rescue ActiveRecord::StatementInvalid
            nil
          end
          next
        end
        log.puts s
        worked = true
        begin
          ActiveRecord::Base.transaction do
            q(conn, "UPDATE tasker_workflow_steps SET attempts = coalesce(attempts, 0) + 1, processed = true, processed_at = now(), results = '{}' WHERE workflow_step_id = $1", s)
            raise ActiveRecord::Rollback unless state_of(conn, s) == 'in_progress' # Statesman's validation of in_progress -> complete
            statesman(conn, s, 'complete')
          end
        rescue ActiveRecord::StatementInvalid
          errors.puts s
        end
      end
    end
    idle_passes = worked ? 0 : idle_passes + 1
    break if idle_passes >= 3
    sleep 0.01 unless worked
  end
end

def drain(way, conn)
  # The engine's way runs as Rails runs without tasker_core: its own SQL functions, no
  # tasker_core triggers (disable() puts Rails' functions back).
  if way == 'engine'
    conn.execute('SELECT count(*) FROM tasker_core.step_state_disable()')
    conn.execute('SELECT count(*) FROM tasker_core.disable()')
  end
  tasks = make_tasks(conn, way)
  conn.execute('VACUUM ANALYZE')
  dir = Dir.mktmpdir
  ActiveRecord::Base.connection_pool.disconnect!
  t0 = Process.clock_gettime(Process::CLOCK_MONOTONIC)
  pids = (0...WORKERS).map do |w|
    fork do
      c = connect
      mine = tasks.rotate(w * tasks.size / WORKERS)
      File.open("#{dir}/log.#{w}", 'w') do |log|
        File.open("#{dir}/err.#{w}", 'w') do |errors|
          way == 'native' ? native_worker(c, mine, log) : engine_worker(c, mine, log, errors)
        end
      end
      exit!(0)
    end
  end
  statuses = pids.map { |pid| Process.wait2(pid).last }
  seconds = Process.clock_gettime(Process::CLOCK_MONOTONIC) - t0
  conn = connect
  abort "drain: a #{way} worker failed" unless statuses.all?(&:success?)
  if way == 'engine'
    conn.execute('SELECT count(*) FROM tasker_core.enable(triggers => false)')
    conn.execute('SELECT count(*) FROM tasker_core.step_state_enable()')
  end
  executed = Dir["#{dir}/log.*"].flat_map { |f| File.readlines(f).map(&:to_i) }
  errors = Dir["#{dir}/err.*"].sum { |f| File.readlines(f).size }
  doubles = executed.size - executed.uniq.size
  done = q(conn, "SELECT count(*) FROM tasker_workflow_steps s JOIN tasker_workflow_step_transitions t USING (workflow_step_id)
                   WHERE s.task_id = ANY($1::bigint[]) AND t.most_recent AND t.to_state = 'complete'", "{#{tasks.join(',')}}").first['count']
  puts format('%s|%d|%d|%d|%.2f|%.0f|%d|%d', way, WORKERS, TASKS, done, seconds, done / seconds, doubles, errors)
  conn
end

conn = connect
conn = drain('native', conn)
drain('engine', conn)
