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
