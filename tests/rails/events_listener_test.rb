# A Rails-side consumer of the lifecycle events (docs/events.md), end to end: a listener on its
# own ActiveRecord connection LISTENs on tasker_core_events, wakes with wait_for_notify, and
# reads tasker_core.events_since(last_id) until empty, storing the id of the last row returned.
# Two writer threads move steps and tasks exactly as Statesman does while it listens; midway
# the listener disconnects, more is written while it is away, and it reconnects and resumes
# from its stored id. It must receive every event of the workload exactly once, in delivery
# order, with the catalog's names, and nothing of a rolled back transaction.
# Run with PG* set, on a database holding the Tasker tables and CREATE EXTENSION tasker_core:
#   PGHOST=... PGPORT=... PGUSER=postgres PGDATABASE=... ruby tests/rails/events_listener_test.rb
require 'minitest/autorun'
require 'active_record'
require 'securerandom'
require 'timeout'

CONFIG = {
  adapter: 'postgresql', host: ENV.fetch('PGHOST'), port: ENV.fetch('PGPORT').to_i,
  username: ENV.fetch('PGUSER', 'postgres'), database: ENV.fetch('PGDATABASE'), pool: 5
}.freeze
ActiveRecord::Base.establish_connection(CONFIG)
ActiveRecord::Base.logger = nil

require_relative 'tasker_models'

# The listener's own connection pool: a connection of its own, closed and reopened at will.
class ListenerRecord < ActiveRecord::Base
  self.abstract_class = true
end
ListenerRecord.establish_connection(CONFIG.merge(pool: 1))

# A consumer as an application would write it, in a thread of its own. Between commands it
# waits up to 0.1 s for a NOTIFY and then reads events_since(last_id) until it returns nothing
# (also after a timeout: a NOTIFY can come before events_since may hand the events out, when
# an older transaction is still running). Commands: :away (disconnect, then wait for :back),
# :back (reconnect and LISTEN again), :stop.
class Listener
  CHANNEL = 'tasker_core_events'.freeze
  FETCH = 'SELECT id, xid::text AS xid, name, task_id, step_id, from_state, to_state, transition_id ' \
          'FROM tasker_core.events_since(%d, 1000)'.freeze
  Event = Struct.new(:id, :xid, :name, :task_id, :step_id, :from_state, :to_state, :transition_id, keyword_init: true)

  attr_reader :last_id, :pids, :woken, :error

  def initialize(after)
    @last_id = after
    @events = []
    @notifications = []
    @pids = []
    @woken = 0 # wait_for_notify calls that returned the channel
    @lock = Mutex.new
    @commands = Queue.new
    @acks = Queue.new
  end

  def start
    @thread = Thread.new { run }
    ack(:connected)
  end

  def command(cmd)
    @commands << cmd
    ack(cmd)
  end

  def stop
    command(:stop)
    @thread.join(5)
  end

  def events = @lock.synchronize { @events.dup }
  def notifications = @lock.synchronize { @notifications.dup }
  def count = @lock.synchronize { @events.size }

  private

  def ack(expected)
    got = nil
    Timeout.timeout(10) { got = @acks.pop }
    raise "listener failed: #{@error.full_message}" if got == :error
    raise "listener acknowledged #{got}, not #{expected}" unless got == expected
  end

  def run
    connect
    @acks << :connected
    loop do
      unless @commands.empty?
        case @commands.pop
        when :away
          ListenerRecord.connection_pool.disconnect!
          @acks << :away
          cmd = @commands.pop
          break @acks << :stop if cmd == :stop
          connect
          @acks << :back
        when :stop
          drain
          ListenerRecord.connection_pool.disconnect!
          break @acks << :stop
        end
      end
      wait
      drain
    end
  rescue StandardError => e
    @error = e
    @acks << :error
  end

  def connect
    conn = ListenerRecord.connection
    conn.execute("LISTEN #{CHANNEL}")
    @pids << conn.select_value('SELECT pg_backend_pid()').to_i
  end

  def wait
    channel = ListenerRecord.connection.raw_connection.wait_for_notify(0.1) do |ch, pid, payload|
      @lock.synchronize { @notifications << [ch, pid, payload] }
    end
    # wait_for_notify returns the channel's name when a notification arrived, nil on timeout.
    raise "wait_for_notify returned #{channel.inspect}" unless channel.nil? || channel == CHANNEL
    @woken += 1 if channel
  end

  def drain
    loop do
      rows = ListenerRecord.connection.select_all(format(FETCH, @last_id)).to_a
      break if rows.empty?
      got = rows.map do |r|
        Event.new(id: r['id'].to_i, xid: r['xid'].to_i, name: r['name'], task_id: r['task_id'].to_i,
                  step_id: r['step_id']&.to_i, from_state: r['from_state'], to_state: r['to_state'],
                  transition_id: r['transition_id'].to_i)
      end
      @lock.synchronize { @events.concat(got) }
      @last_id = got.last.id # the last row returned, not the highest id
    end
  end
end

class EventsListenerTest < Minitest::Test
  include Tasker
  C = -> { ActiveRecord::Base.connection }
  STEPS_PER_TASK = 15
  STEP_NAMES = { 'pending' => 'step.initialize_requested', 'in_progress' => 'step.execution_requested', 'complete' => 'step.completed' }.freeze
  TASK_NAMES = { 'pending' => 'task.initialize_requested', 'in_progress' => 'task.start_requested', 'complete' => 'task.completed' }.freeze
  Written = Struct.new(:kind, :id, :task_id, :step_id, :from_state, :to_state, :phase, keyword_init: true)

  @@seeded = nil

  # Once: the templates the tasks need, and events on (with the guard triggers).
  def setup
    @@seeded ||= begin
      now = Time.now.utc
      ns = TaskNamespace.find_or_create_by!(name: 'events_listener') { |n| n.created_at = n.updated_at = now }
      sys = DependentSystem.find_or_create_by!(name: 'events_listener') { |n| n.created_at = n.updated_at = now }
      named_task = NamedTask.find_or_create_by!(name: 'listened', task_namespace_id: ns.task_namespace_id) { |n| n.created_at = n.updated_at = now }
      named_steps = (1..STEPS_PER_TASK).map do |i|
        NamedStep.find_or_create_by!(name: "listened_#{i}", dependent_system_id: sys.dependent_system_id) { |s| s.created_at = s.updated_at = now }
      end
      C.call.select_value('SELECT count(*) FROM tasker_core.enable(events => true)')
      { named_task: named_task, named_steps: named_steps }
    end
  end

  def new_task(steps)
    now = Time.now.utc
    task = Task.create!(named_task_id: @@seeded[:named_task].named_task_id, requested_at: now, identity_hash: SecureRandom.hex(16),
                        context: { 'listener' => true }, created_at: now, updated_at: now)
    list = @@seeded[:named_steps].first(steps).map do |ns|
      WorkflowStep.create!(task_id: task.task_id, named_step_id: ns.named_step_id, attempts: 0, retry_limit: 3, created_at: now, updated_at: now)
    end
    [task, list]
  end

  # One writer's moves of one task and its steps, in three phases separated by gates; every
  # committed transition is recorded in `log` with the state it leaves.
  def write(task, steps, gates, log, ghost: nil)
    state = Hash.new { nil }
    record = lambda do |row, kind, phase|
      key = kind == :step ? [:step, row.workflow_step_id] : [:task, row.task_id]
      log << Written.new(kind: kind, id: row.id, task_id: task.task_id, step_id: kind == :step ? row.workflow_step_id : nil,
                         from_state: state[key], to_state: row.to_state, phase: phase)
      state[key] = row.to_state
    end
    step = ->(s, to, phase) { record.call(Statesman.transition_step(s, to), :step, phase) }
    move_task = ->(to, phase) { record.call(Statesman.transition_task(task, to), :task, phase) }
    jitter = -> { sleep(rand * 0.004) }
    ActiveRecord::Base.connection_pool.with_connection do
      # Phase A, the listener connected.
      move_task.call('pending', :a)
      rows = ActiveRecord::Base.transaction { steps.map { |s| Statesman.transition_step(s, 'pending') } } # one xid, many events
      rows.each { |r| record.call(r, :step, :a) }
      move_task.call('in_progress', :a)
      steps[0, 5].each do |s|
        step.call(s, 'in_progress', :a)
        jitter.call
        step.call(s, 'complete', :a)
      end
      if ghost
        # Moves that roll back: no event, no notification.
        ghost_task, ghost_steps = ghost[:task], ghost[:steps]
        ActiveRecord::Base.transaction do
          ghost[:xid] = C.call.select_value('SELECT pg_current_xact_id()::text').to_i
          Statesman.transition_task(ghost_task, 'pending')
          ghost_steps.each { |s| Statesman.transition_step(s, 'pending') }
          ghost[:ids] = ghost_steps.map { |s| Statesman.transition_step(s, 'in_progress').id }
          sleep 0.05 # long enough for the other writer to commit behind it
          raise ActiveRecord::Rollback
        end
      end
      gates[:a_done] << true
      gates[:b].pop
      # Phase B, the listener away: half the steps move twice in one transaction.
      steps[5, 5].each_with_index do |s, i|
        if i.even?
          rows = ActiveRecord::Base.transaction { [Statesman.transition_step(s, 'in_progress'), Statesman.transition_step(s, 'complete')] }
          rows.each { |r| record.call(r, :step, :b) }
        else
          step.call(s, 'in_progress', :b)
          step.call(s, 'complete', :b)
        end
        jitter.call
      end
      gates[:b_done] << true
      gates[:c].pop
      # Phase C, the listener back.
      steps[10..].each do |s|
        step.call(s, 'in_progress', :c)
        jitter.call
        step.call(s, 'complete', :c)
      end
      move_task.call('complete', :c)
    end
  end

  def wait_until(seconds, what)
    deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + seconds
    until yield
      flunk "timed out after #{seconds} s waiting for #{what}" if Process.clock_gettime(Process::CLOCK_MONOTONIC) > deadline
      sleep 0.02
    end
  end

  def test_a_listener_receives_every_event_once_in_delivery_order_across_a_reconnect
    # Where a consumer starting now begins: after the last event there is (none: 0).
    start_after = C.call.select_value('SELECT id FROM tasker_core.events ORDER BY xid DESC, id DESC LIMIT 1').to_i
    tasks = Array.new(2) { new_task(STEPS_PER_TASK) }
    ghost_task, ghost_steps = new_task(3)
    ghost = { task: ghost_task, steps: ghost_steps }
    assert_equal 30, tasks.sum { |_, s| s.size }

    listener = Listener.new(start_after)
    listener.start
    gates = { a_done: Queue.new, b: Queue.new, b_done: Queue.new, c: Queue.new }
    logs = Array.new(2) { Queue.new }
    writers = tasks.each_with_index.map do |(task, steps), i|
      Thread.new { write(task, steps, gates, logs[i], ghost: i.zero? ? ghost : nil) }.tap { |t| t.report_on_exception = false }
    end
    take = ->(q) { Timeout.timeout(15) { q.pop } }

    # Midway: both writers through phase A, the listener has had some of it; it goes away.
    2.times { take.call(gates[:a_done]) }
    wait_until(10, 'the first events') { listener.count.positive? }
    listener.command(:away)
    away_at = listener.last_id
    received_before = listener.count
    # Phase B while it is away; then it comes back as phase C starts.
    2.times { gates[:b] << true }
    2.times { take.call(gates[:b_done]) }
    2.times { gates[:c] << true }
    listener.command(:back)
    writers.each { |t| assert t.join(15), 'a writer finished' }
    written = logs.flat_map { |q| Array.new(q.size) { q.pop } }
    assert_equal 2 * (1 + STEPS_PER_TASK + 1 + 30 + 1), written.size, 'transitions written'
    assert written.any? { |w| w.phase == :b }, 'transitions were written while the listener was away'

    # Caught up: the writers are done, so the last event in delivery order is final; wait
    # until the listener's stored id is it (then compare what it got with what was written).
    final = C.call.select_value('SELECT id FROM tasker_core.events ORDER BY xid DESC, id DESC LIMIT 1').to_i
    wait_until(10, "the listener to reach event #{final}") { listener.last_id == final }
    sleep 0.3 # and nothing more arrives
    listener.stop
    assert_nil listener.error
    events = listener.events
    notes = listener.notifications

    # Exactly once: one event per transition written, no event id twice, none else.
    assert_equal events.size, events.map(&:id).uniq.size, 'no event id received twice'
    keys = ->(list) { list.map { |e| [e.step_id ? :step : :task, e.transition_id] }.sort }
    expected = written.map { |w| [w.kind, w.id] }.sort
    assert_empty expected - keys.call(events), 'transitions whose event was missed'
    assert_empty keys.call(events) - expected, 'events of no transition written'
    assert_equal expected, keys.call(events), 'one event per transition written, none twice'
    assert_equal written.size, events.size

    # What each event says: names from the catalog, owners, states before and after.
    by_key = written.to_h { |w| [[w.kind, w.id], w] }
    events.each do |e|
      w = by_key.fetch([e.step_id ? :step : :task, e.transition_id])
      names = w.kind == :step ? STEP_NAMES : TASK_NAMES
      assert_equal [names.fetch(w.to_state), w.task_id, w.step_id, w.to_state, w.from_state],
                   [e.name, e.task_id, e.step_id, e.to_state, e.from_state], "event #{e.id}"
    end
    assert_equal %w[step.completed step.execution_requested step.initialize_requested task.completed task.initialize_requested task.start_requested],
                 events.map(&:name).uniq.sort

    # Delivery order: xid never goes down; within one xid, ids go up.
    events.each_cons(2) do |a, b|
      assert_operator a.xid, :<=, b.xid, "xid order at events #{a.id}, #{b.id}"
      assert_operator a.id, :<, b.id, "id order within xid #{a.xid}" if a.xid == b.xid
    end
    assert_equal events.sort_by { |e| [e.xid, e.id] }.map(&:id), events.map(&:id)
    assert_operator events.group_by(&:xid).values.map(&:size).max, :>=, STEPS_PER_TASK, 'a transaction of many events'
    assert_equal events.last.id, listener.last_id, 'the stored id is the last row returned'

    # The reconnect: a new session, LISTENing again; the events written while away came after it.
    assert_equal 2, listener.pids.size
    refute_equal listener.pids[0], listener.pids[1], 'the listener reconnected with a new backend'
    wait_until(5, 'the old session to end') do
      C.call.select_value("SELECT count(*) FROM pg_stat_activity WHERE pid = #{listener.pids[0]}").to_i.zero?
    end
    assert_operator away_at, :>, start_after
    phase_b = written.select { |w| w.phase == :b }.map { |w| [w.kind, w.id] }
    assert_equal phase_b.sort, keys.call(events.drop(received_before)) & phase_b.sort, 'the events written while away arrived after the reconnect'

    # Notifications: at least one; one per transaction, each naming a transaction whose events arrived.
    assert_operator listener.woken, :>, 0, 'wait_for_notify returned the channel at least once'
    refute_empty notes, 'at least one NOTIFY arrived'
    assert(notes.all? { |ch, _, _| ch == Listener::CHANNEL })
    xids = notes.map { |_, _, payload| Integer(payload) }
    assert_equal xids.uniq, xids, 'one NOTIFY per transaction'
    assert_empty xids - events.map(&:xid).uniq, 'each NOTIFY names a transaction whose events were received'

    # The rolled back transaction: no event, no NOTIFY.
    assert ghost[:xid], 'the rolled back transaction ran'
    assert_equal 0, WorkflowStepTransition.where(workflow_step_id: ghost_steps.map(&:workflow_step_id)).count
    assert_equal 0, C.call.select_value("SELECT count(*) FROM tasker_core.events WHERE xid = '#{ghost[:xid]}'::xid8 OR task_id = #{ghost_task.task_id}").to_i
    refute_includes events.map(&:task_id), ghost_task.task_id
    refute_includes xids, ghost[:xid]
    assert_equal [], events.select { |e| e.step_id && ghost[:ids].include?(e.transition_id) && ghost_steps.map(&:workflow_step_id).include?(e.step_id) }

    # A consumer caught up gets nothing more.
    assert_equal 0, C.call.select_value("SELECT count(*) FROM tasker_core.events_since(#{listener.last_id}, 1000)").to_i
  ensure
    writers&.each { |t| t.kill if t.alive? }
    C.call.select_value('SELECT count(*) FROM tasker_core.disable()')
  end
end
