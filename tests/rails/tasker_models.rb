# The Tasker models as the engine defines them over its tables, the call wrapper of Tasker's
# Functions::FunctionWrapper, and Statesman's write path: shared by the Rails-side tests
# (client_test.rb, events_listener_test.rb), each of which connects ActiveRecord first.
require 'active_record'

module Tasker
  class ApplicationRecord < ActiveRecord::Base
    self.abstract_class = true
  end

  class TaskNamespace < ApplicationRecord
    self.table_name = 'tasker_task_namespaces'
    self.primary_key = 'task_namespace_id'
  end

  class DependentSystem < ApplicationRecord
    self.table_name = 'tasker_dependent_systems'
    self.primary_key = 'dependent_system_id'
  end

  class NamedTask < ApplicationRecord
    self.table_name = 'tasker_named_tasks'
    self.primary_key = 'named_task_id'
  end

  class NamedStep < ApplicationRecord
    self.table_name = 'tasker_named_steps'
    self.primary_key = 'named_step_id'
  end

  class Task < ApplicationRecord
    self.table_name = 'tasker_tasks'
    self.primary_key = 'task_id'
    has_many :workflow_steps, foreign_key: :task_id
    has_many :task_transitions, foreign_key: :task_id
  end

  class WorkflowStep < ApplicationRecord
    self.table_name = 'tasker_workflow_steps'
    self.primary_key = 'workflow_step_id'
    belongs_to :task
    has_many :workflow_step_transitions, foreign_key: :workflow_step_id
  end

  class WorkflowStepEdge < ApplicationRecord
    self.table_name = 'tasker_workflow_step_edges'
  end

  class WorkflowStepTransition < ApplicationRecord
    self.table_name = 'tasker_workflow_step_transitions'
  end

  class TaskTransition < ApplicationRecord
    self.table_name = 'tasker_task_transitions'
  end

  # Tasker::StepDagRelationship: the read-only model over the view, keyed by workflow_step_id.
  class StepDagRelationship < ApplicationRecord
    self.table_name = 'tasker_step_dag_relationships'
    self.primary_key = 'workflow_step_id'
    scope :for_task, ->(task_id) { where(task_id: task_id) }
    scope :root_steps, -> { where(is_root_step: true) }
    def readonly? = true
  end

  # What Tasker's Functions::FunctionWrapper does: select_all with positional binds, arrays
  # bound as '{1,2,3}' strings, rows mapped to attribute structs.
  module FunctionWrapper
    Row = Struct.new(:attributes) do
      def method_missing(name, *args) = attributes.key?(name.to_s) ? attributes[name.to_s] : super
      def respond_to_missing?(name, priv = false) = attributes.key?(name.to_s) || super
    end

    def self.convert_bind(value)
      value.is_a?(Array) ? "{#{value.join(',')}}" : value
    end

    def self.select_all(sql, name, *binds)
      attrs = binds.map { |b| ActiveRecord::Relation::QueryAttribute.new('bind', convert_bind(b), ActiveRecord::Type::Value.new) }
      ActiveRecord::Base.connection.select_all(sql, name, attrs).to_a.map { |h| Row.new(h) }
    end

    def self.step_readiness(task_id, step_ids = nil)
      select_all('SELECT * FROM get_step_readiness_status($1::BIGINT, $2::BIGINT[])', 'StepReadinessStatus Load', task_id, step_ids)
    end

    def self.step_readiness_batch(task_ids)
      select_all('SELECT * FROM get_step_readiness_status_batch($1::BIGINT[])', 'StepReadinessStatus Batch Load', task_ids)
    end

    def self.execution_context(task_id)
      select_all('SELECT * FROM get_task_execution_context($1::BIGINT)', 'TaskExecutionContext Load', task_id).first
    end

    def self.execution_contexts(task_ids)
      select_all('SELECT * FROM get_task_execution_contexts_batch($1::BIGINT[])', 'TaskExecutionContext Batch Load', task_ids)
    end

    def self.dependency_levels(task_id)
      select_all('SELECT * FROM calculate_dependency_levels($1::BIGINT)', 'DependencyLevels Load', task_id)
    end

    def self.health_counts
      select_all('SELECT * FROM get_system_health_counts_v01()', 'SystemHealthCounts Load').first
    end
  end

  # Statesman's write path: clear the old most_recent, insert sort_key + 10, one transaction.
  module Statesman
    def self.transition_step(step, to_state, metadata = {})
      ActiveRecord::Base.transaction do
        now = Time.now.utc
        WorkflowStepTransition.where(workflow_step_id: step.workflow_step_id, most_recent: true).update_all(most_recent: false, updated_at: now)
        last = WorkflowStepTransition.where(workflow_step_id: step.workflow_step_id).maximum(:sort_key) || 0
        WorkflowStepTransition.create!(workflow_step_id: step.workflow_step_id, to_state: to_state, sort_key: last + 10,
                                       most_recent: true, metadata: metadata, created_at: now, updated_at: now)
      end
    end

    def self.transition_task(task, to_state)
      ActiveRecord::Base.transaction do
        now = Time.now.utc
        TaskTransition.where(task_id: task.task_id, most_recent: true).update_all(most_recent: false, updated_at: now)
        last = TaskTransition.where(task_id: task.task_id).maximum(:sort_key) || 0
        TaskTransition.create!(task_id: task.task_id, to_state: to_state, sort_key: last + 10, most_recent: true,
                               metadata: {}, created_at: now, updated_at: now)
      end
    end
  end
end
