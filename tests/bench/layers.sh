# The write layers the write benchmarks compare (sourced by tests/bench/events_write.sh and
# tests/bench/write_instructions.sh, so both measure the same things): LAYERS in order, each
# layer's label and the statements that install it on a database where tasker_core is off.
# shellcheck shell=bash disable=SC2034
LAYERS=(plain guards state events state_alone events_alone)
declare -A LAYER_LABEL=(
  [plain]="plain"
  [guards]="+ guards"
  [state]="+ guards + step state"
  [events]="+ guards + step state + events"
  [state_alone]="step state alone"
  [events_alone]="events alone"
)
declare -A LAYER_SETUP=(
  [plain]=""
  [guards]="SELECT count(*) FROM tasker_core.enable(functions => false, views => false)"
  [state]="SELECT count(*) FROM tasker_core.enable(functions => false, views => false); SELECT count(*) FROM tasker_core.step_state_enable()"
  [events]="SELECT count(*) FROM tasker_core.enable(functions => false, views => false, events => true); SELECT count(*) FROM tasker_core.step_state_enable()"
  [state_alone]="SELECT count(*) FROM tasker_core.step_state_enable()"
  [events_alone]="SELECT count(*) FROM tasker_core.enable(functions => false, views => false, triggers => false, events => true)"
)
# median(a, n): sorts a[1..n] in place and returns their median (an awk function, prepended to
# the programs that summarize rounds).
AWK_MEDIAN='
  function median(a, n,   i, j, t) {
    for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
  }'
