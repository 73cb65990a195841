# The event pipeline's consumer for tests/bench/events_pipeline.sh: LISTENs on
# tasker_core_events, reads with events_since from the last id it stored, for SECONDS seconds
# and then until nothing more comes; prints how many events it received, the rate, and the lag
# from each event's recording (its statement's time) to its receipt.
#   ruby tests/bench/events_drain.rb CONNINFO SECONDS
require 'pg'
conn = PG.connect(ARGV.fetch(0))
seconds = Float(ARGV.fetch(1))
conn.exec('LISTEN tasker_core_events')
last = conn.exec('SELECT id FROM tasker_core.events ORDER BY xid DESC, id DESC LIMIT 1').values.dig(0, 0)&.to_i || 0
conn.prepare('since', 'SELECT id, extract(epoch FROM clock_timestamp() - created_at)::float8 FROM tasker_core.events_since($1, 5000)')
lags = []
received = 0
t0 = Process.clock_gettime(Process::CLOCK_MONOTONIC)
first = nil
last_at = nil
idle = 0
loop do
  conn.wait_for_notify(0.05)
  rows = conn.exec_prepared('since', [last]).values
  now = Process.clock_gettime(Process::CLOCK_MONOTONIC)
  if rows.empty?
    idle += 1
    break if now - t0 > seconds && idle >= 20
    next
  end
  idle = 0
  first ||= now
  last_at = now
  received += rows.size
  last = rows[-1][0].to_i
  rows.each { |r| lags << r[1].to_f }
end
lags.sort!
pct = ->(p) { lags.empty? ? 0 : lags[[(lags.size * p).ceil - 1, 0].max] * 1000 }
span = last_at && first ? last_at - first : 0
printf("received %d events in %.1f s: %.0f events/s; lag p50 %.0f ms, p99 %.0f ms, max %.0f ms\n",
       received, span, span.positive? ? received / span : 0, pct.(0.5), pct.(0.99), pct.(1.0))
