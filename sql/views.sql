-- tasker_core: the drop-in definition of Rails' view tasker_step_dag_relationships
-- (orchestration.md E). Hand-written; loaded into the install script by extension_sql_file!
-- (src/lib.rs). enable(views => true) puts it in place of Rails' definition with CREATE OR
-- REPLACE VIEW (same name, columns, types and order; privileges, owner, options and dependent
-- objects kept), after keeping Rails' definition as a view next to it; disable() puts Rails'
-- definition back.
--
-- Same rows as Rails' view: parents and children as jsonb arrays sorted ascending with
-- duplicate edges kept, cross-task edges included, counts of edges, root and leaf flags, and
-- min_depth_from_root from tasker_core.step_min_depth_from_root (src/pg/dag.rs), which reads the
-- step's task instead of walking from every root of the database. Each row's
-- columns come from that row's own edges (LATERAL), so `WHERE workflow_step_id = $1` or
-- `WHERE task_id = $1` costs that step's or that task's rows only.

-- The drop-in views: name, the columns Rails' view has (name and type, in order, as
-- pg_catalog.format_type writes them: enable() refuses a view that differs), and the
-- definition for a schema (%1$I: the schema as an identifier, %2$L: as a literal).
CREATE FUNCTION tasker_core.drop_in_views()
RETURNS TABLE (view_name name, columns text, definition text)
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    VALUES ('tasker_step_dag_relationships'::name,
            'workflow_step_id bigint, task_id bigint, named_step_id integer, parent_step_ids jsonb, '
            'child_step_ids jsonb, parent_count bigint, child_count bigint, is_root_step boolean, '
            'is_leaf_step boolean, min_depth_from_root integer',
            $view$SELECT ws.workflow_step_id,
    ws.task_id,
    ws.named_step_id,
    COALESCE(parents.ids, '[]'::jsonb) AS parent_step_ids,
    COALESCE(children.ids, '[]'::jsonb) AS child_step_ids,
    parents.n AS parent_count,
    children.n AS child_count,
    parents.n = 0 AS is_root_step,
    children.n = 0 AS is_leaf_step,
    tasker_core.step_min_depth_from_root(ws.workflow_step_id, %2$L) AS min_depth_from_root
   FROM %1$I.tasker_workflow_steps ws
     CROSS JOIN LATERAL ( SELECT jsonb_agg(e.from_step_id ORDER BY e.from_step_id) AS ids, count(*) AS n
           FROM %1$I.tasker_workflow_step_edges e
          WHERE e.to_step_id = ws.workflow_step_id) parents
     CROSS JOIN LATERAL ( SELECT jsonb_agg(e.to_step_id ORDER BY e.to_step_id) AS ids, count(*) AS n
           FROM %1$I.tasker_workflow_step_edges e
          WHERE e.from_step_id = ws.workflow_step_id) children$view$)
$$;

-- The columns of a view as drop_in_views() lists them.
CREATE FUNCTION tasker_core.view_columns(target regclass)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT pg_catalog.string_agg(pg_catalog.format('%s %s', a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod)),
                                 ', ' ORDER BY a.attnum)
      FROM pg_catalog.pg_attribute a
     WHERE a.attrelid = target AND a.attnum > 0 AND NOT a.attisdropped
$$;

-- Is `target` a view whose definition calls tasker_core (its rewrite rule depends on one of
-- the extension's functions)? Rails' own definition never does.
CREATE FUNCTION tasker_core.is_native_view(target regclass)
RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_rewrite r
                     JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass AND d.objid = r.oid
                     JOIN pg_catalog.pg_proc p ON d.refclassid = 'pg_catalog.pg_proc'::pg_catalog.regclass AND d.refobjid = p.oid
                    WHERE r.ev_class = target
                      AND p.pronamespace = 'tasker_core'::pg_catalog.regnamespace)
$$;
