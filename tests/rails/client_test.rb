# The Rails side, end to end: ActiveRecord models on the Tasker tables, reads that call the
# functions exactly as Tasker's FunctionWrapper does, writes exactly as Statesman does, against
# a database after tasker_core.enable(). Run by `make test` (scripts/test.sh) with PG* set.
require 'minitest/autorun'
require 'active_record'
require 'json'

ActiveRecord::Base.establish_connection(
  adapter: 'postgresql', host: ENV.fetch('PGHOST'), port: ENV.fetch('PGPORT').to_i,
  username: ENV.fetch('PGUSER', 'postgres'), database: ENV.fetch('PGDATABASE')
)
ActiveRecord::Base.logger = nil

require_relative 'tasker_models'

class TaskerCoreRailsTest < Minitest::Test
  include Tasker
  C = -> { ActiveRecord::Base.connection }

  def setup
    C.call.execute('SELECT * FROM tasker_core.enable()')
    C.call.execute('SELECT * FROM tasker_core.step_state_enable()')
    @ns = TaskNamespace.find_or_create_by!(name: 'default') { |n| n.created_at = n.updated_at = Time.now.utc }
    @sys = DependentSystem.find_or_create_by!(name: 'billing') { |n| n.created_at = n.updated_at = Time.now.utc }
    @named_task = NamedTask.find_or_create_by!(name: 'invoice', task_namespace_id: @ns.task_namespace_id) { |n| n.created_at = n.updated_at = Time.now.utc }
    @names = %w[fetch price tax send].map do |n|
      NamedStep.find_or_create_by!(name: n, dependent_system_id: @sys.dependent_system_id) { |s| s.created_at = s.updated_at = Time.now.utc }
    end
    now = Time.now.utc
    @task = Task.create!(named_task_id: @named_task.named_task_id, requested_at: now, identity_hash: SecureRandom.hex(16), created_at: now, updated_at: now)
    @steps = @names.map do |ns|
      WorkflowStep.create!(task_id: @task.task_id, named_step_id: ns.named_step_id, attempts: 0, retry_limit: 3, created_at: now, updated_at: now)
    end
    fetch, price, tax, send_ = @steps
    [[fetch, price], [fetch, tax], [price, send_], [tax, send_]].each do |a, b|
      WorkflowStepEdge.create!(from_step_id: a.workflow_step_id, to_step_id: b.workflow_step_id, name: 'provides', created_at: now, updated_at: now)
    end
    @steps.each { |s| Statesman.transition_step(s, 'pending') }
    Statesman.transition_task(@task, 'pending')
  end

  def test_enable_reports_native_functions_triggers_and_the_fast_read_path
    states = C.call.select_rows('SELECT kind, state FROM tasker_core.status()').uniq.sort
    # enable() leaves the lifecycle events off unless asked (docs/events.md).
    assert_equal [%w[events absent], %w[function native], ['read path', 'step_state'], %w[trigger installed], %w[view native]], states
  end

  def test_the_dag_view_as_the_model_reads_it
    fetch, price, tax, send_ = @steps
    rows = StepDagRelationship.for_task(@task.task_id).order(:workflow_step_id).to_a
    assert_equal @steps.map(&:workflow_step_id), rows.map(&:workflow_step_id)
    # jsonb arrays arrive as Ruby arrays of integers, as the serializers read them.
    assert_equal [[], [fetch.workflow_step_id], [fetch.workflow_step_id], [price.workflow_step_id, tax.workflow_step_id]],
                 rows.map(&:parent_step_ids)
    assert_equal [[price.workflow_step_id, tax.workflow_step_id], [send_.workflow_step_id], [send_.workflow_step_id], []],
                 rows.map(&:child_step_ids)
    assert_equal [0, 1, 1, 2], rows.map(&:min_depth_from_root)
    assert_equal [true, false, false, false], rows.map(&:is_root_step)
    assert_equal [fetch.workflow_step_id], StepDagRelationship.for_task(@task.task_id).root_steps.pluck(:workflow_step_id)
    # One step at a time, as WorkflowStepSerializer and the GraphQL type ask.
    one = StepDagRelationship.find(send_.workflow_step_id)
    assert_equal [2, 0, true], [one.parent_count, one.child_count, one.is_leaf_step]
    sql = StepDagRelationship.where(workflow_step_id: send_.workflow_step_id).to_sql
    assert_equal 1, C.call.select_value("SELECT count(*) FROM (#{sql}) q").to_i
  end

  def test_readiness_runs_native_code_and_follows_the_spec
    rows = nil
    # The difference across the call: on PostgreSQL 15+ the view also holds the session's
    # calls that are not yet flushed (earlier tests of this session).
    count = "SELECT coalesce(sum(calls), 0) FROM pg_stat_xact_user_functions WHERE schemaname = 'tasker_core' AND funcname = 'get_step_readiness_status'"
    calls = ActiveRecord::Base.transaction do
      C.call.execute("SET LOCAL track_functions = 'all'")
      before = C.call.select_value(count).to_i
      rows = FunctionWrapper.step_readiness(@task.task_id)
      C.call.select_value(count).to_i - before
    end
    assert_equal 1, calls, 'the Rails SQL text ran tasker_core.get_step_readiness_status'
    assert_equal @steps.map(&:workflow_step_id), rows.map(&:workflow_step_id)
    by_name = rows.to_h { |r| [r.name, r] }
    # fetch has no parents: ready; the others wait on unfinished parents.
    assert_equal [true, false, false, false], %w[fetch price tax send].map { |n| by_name[n].ready_for_execution }
    assert_equal [0, 1, 1, 2], %w[fetch price tax send].map { |n| by_name[n].total_parents }
    assert_equal 'pending', by_name['send'].current_state
    only = FunctionWrapper.step_readiness(@task.task_id, [@steps[1].workflow_step_id, @steps[3].workflow_step_id])
    assert_equal %w[price send], only.map(&:name)
  end

  def test_progress_changes_what_is_ready_and_the_context
    fetch, price, tax, = @steps
    Statesman.transition_task(@task, 'in_progress')
    Statesman.transition_step(fetch, 'in_progress')
    Statesman.transition_step(fetch, 'complete')
    Statesman.transition_step(price, 'in_progress')
    Statesman.transition_step(price, 'error')
    ready = FunctionWrapper.step_readiness_batch([@task.task_id]).select(&:ready_for_execution).map(&:name)
    assert_equal ['tax'], ready, 'tax is ready; price failed a moment ago and is in backoff'
    ctx = FunctionWrapper.execution_context(@task.task_id)
    assert_equal ['in_progress', 4, 1, 1, 1, 'has_ready_steps', 'execute_ready_steps', 'recovering'],
                 [ctx.status, ctx.total_steps, ctx.completed_steps, ctx.failed_steps, ctx.ready_steps, ctx.execution_status, ctx.recommended_action, ctx.health_status]
    assert_equal '25.0', ctx.completion_percentage.to_s
    batch = FunctionWrapper.execution_contexts([@task.task_id, @task.task_id, 0])
    assert_equal [@task.task_id, @task.task_id], batch.map(&:task_id)
    levels = FunctionWrapper.dependency_levels(@task.task_id).map { |r| [r.workflow_step_id, r.dependency_level] }
    assert_equal [[fetch.workflow_step_id, 0], [price.workflow_step_id, 1], [tax.workflow_step_id, 1], [@steps[3].workflow_step_id, 2]], levels
    health = FunctionWrapper.health_counts
    assert_operator health.total_steps.to_i, :>=, 4
    assert_operator health.error_steps.to_i, :>=, 1
  end

  def test_a_refused_move_surfaces_as_an_activerecord_error_with_sqlstate_and_constraint
    send_step = @steps[3]
    error = assert_raises(ActiveRecord::StatementInvalid) { Statesman.transition_step(send_step, 'in_progress') }
    assert_kind_of PG::CheckViolation, error.cause
    assert_equal '23514', error.cause.result.error_field(PG::PG_DIAG_SQLSTATE)
    assert_equal 'tasker_step_dependencies_met', error.cause.result.error_field(PG::PG_DIAG_CONSTRAINT_NAME)
    assert_equal 'tasker_workflow_step_transitions', error.cause.result.error_field(PG::PG_DIAG_TABLE_NAME)
    assert_match(/workflow step #{send_step.workflow_step_id} cannot start/, error.message)
    # The history is untouched: still exactly one most_recent row, 'pending'.
    rows = WorkflowStepTransition.where(workflow_step_id: send_step.workflow_step_id, most_recent: true).pluck(:to_state)
    assert_equal ['pending'], rows
    error = assert_raises(ActiveRecord::StatementInvalid) { Statesman.transition_step(send_step, 'complete') }
    assert_equal 'tasker_step_transition_allowed', error.cause.result.error_field(PG::PG_DIAG_CONSTRAINT_NAME)
  end

  def test_a_cycle_is_refused_on_edge_insert
    now = Time.now.utc
    error = assert_raises(ActiveRecord::StatementInvalid) do
      WorkflowStepEdge.create!(from_step_id: @steps[3].workflow_step_id, to_step_id: @steps[0].workflow_step_id, name: 'provides', created_at: now, updated_at: now)
    end
    assert_equal 'tasker_edge_acyclic', error.cause.result.error_field(PG::PG_DIAG_CONSTRAINT_NAME)
  end

  # The engine's statement sequence for one run of a task, reproduced from its source
  # (StepExecutor#execute_single_step, #complete_step_execution, TaskFinalizer#complete_task),
  # without locks, one statement at a time.
  def run_task_the_engines_way(task)
    Statesman.transition_task(task, 'in_progress')
    loop do
      ready = FunctionWrapper.step_readiness(task.task_id, WorkflowStep.where(task_id: task.task_id).pluck(:workflow_step_id))
                             .select(&:ready_for_execution).map(&:workflow_step_id)
      break if ready.empty?
      WorkflowStep.where(workflow_step_id: ready).each do |step|
        Statesman.transition_step(step, 'in_progress')
        ActiveRecord::Base.transaction do
          now = Time.now.utc
          step.update!(attempts: (step.attempts || 0) + 1, last_attempted_at: now, processed: true, processed_at: now,
                       in_process: false, results: { 'done' => step.workflow_step_id })
          Statesman.transition_step(step, 'complete')
        end
      end
    end
    ctx = FunctionWrapper.execution_context(task.task_id)
    return unless ctx.execution_status == 'all_complete'

    ActiveRecord::Base.transaction do
      task.update!(complete: true, updated_at: Time.now.utc)
      Statesman.transition_task(task, 'complete')
    end
  end

  # The same run with the native calls: claim, record, finalize.
  def run_task_natively(task)
    C.call.select_all("SELECT * FROM tasker_core.transition_task(#{task.task_id}, 'in_progress')")
    loop do
      claimed = C.call.select_values("SELECT workflow_step_id FROM tasker_core.claim_ready_steps(#{task.task_id})")
      break if claimed.empty?
      claimed.each do |id|
        C.call.select_all(ActiveRecord::Base.sanitize_sql_array(
          ['SELECT * FROM tasker_core.record_step_success(?, ?::jsonb)', id, { 'done' => id }.to_json]))
      end
    end
    C.call.select_one("SELECT * FROM tasker_core.finalize_task(#{task.task_id})")
  end

  # What a run leaves, without ids and clocks: per step (in id order) its history and columns,
  # then the task's history and flag.
  def final_rows(task)
    steps = WorkflowStep.where(task_id: task.task_id).order(:workflow_step_id).map do |s|
      history = WorkflowStepTransition.where(workflow_step_id: s.workflow_step_id).order(:sort_key)
                                      .pluck(:to_state, :from_state, :sort_key, :most_recent, :metadata)
      results = s.results&.transform_values { |v| v == s.workflow_step_id ? 'own id' : v }
      [history, s.attempts, s.processed, !s.processed_at.nil?, s.in_process, results]
    end
    task.reload
    [steps, TaskTransition.where(task_id: task.task_id).order(:sort_key).pluck(:to_state, :from_state, :sort_key, :most_recent, :metadata),
     task.complete]
  end

  def test_a_task_run_natively_leaves_the_rows_of_the_engines_statement_sequence
    run_task_the_engines_way(@task)
    engine = final_rows(@task)
    other = Task.create!(named_task_id: @named_task.named_task_id, requested_at: Time.now.utc, identity_hash: SecureRandom.hex(16),
                         created_at: Time.now.utc, updated_at: Time.now.utc)
    map = {}
    @steps.each do |s|
      copy = WorkflowStep.create!(task_id: other.task_id, named_step_id: s.named_step_id, attempts: 0, retry_limit: 3,
                                  created_at: Time.now.utc, updated_at: Time.now.utc)
      map[s.workflow_step_id] = copy
      Statesman.transition_step(copy, 'pending')
    end
    WorkflowStepEdge.where(to_step_id: @steps.map(&:workflow_step_id)).each do |e|
      WorkflowStepEdge.create!(from_step_id: map[e.from_step_id].workflow_step_id, to_step_id: map[e.to_step_id].workflow_step_id,
                               name: e.name, created_at: Time.now.utc, updated_at: Time.now.utc)
    end
    Statesman.transition_task(other, 'pending')
    finalized = run_task_natively(other)
    assert_equal %w[complete in_progress complete], [finalized['decision'], finalized['previous_state'], finalized['final_state']]
    native = final_rows(other)
    assert_equal engine, native, 'the native calls write the rows the engine writes'
    assert_equal true, native.last
    assert(native.first.all? { |history, attempts, *| attempts == 1 && history.map(&:first) == %w[pending in_progress complete] })
  end

  def test_the_step_state_follows_activerecord_writes
    fetch, price, tax, = @steps
    Statesman.transition_task(@task, 'in_progress')
    Statesman.transition_step(fetch, 'in_progress')
    Statesman.transition_step(fetch, 'complete')
    price.update!(attempts: 1, last_attempted_at: Time.now.utc, backoff_request_seconds: 30)
    Statesman.transition_step(tax, 'in_progress')
    assert_equal true, C.call.select_value('SELECT valid FROM tasker_core.step_state_source')
    assert_equal 0, C.call.select_value('SELECT count(*) FROM tasker_core.step_state_verify()')
    rows = FunctionWrapper.step_readiness_batch([@task.task_id])
    from_state = rows.map(&:to_h)
    from_sql = ActiveRecord::Base.transaction do
      C.call.execute('SET LOCAL tasker_core.direct_reads = off')
      FunctionWrapper.step_readiness_batch([@task.task_id]).map(&:to_h)
    end
    assert_equal from_sql, from_state, 'the step state answers as the Tasker tables do'
    assert_equal %w[complete pending in_progress pending], rows.map(&:current_state)
  end
end
