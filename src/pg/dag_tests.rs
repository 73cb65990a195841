// `#[pg_test]`s of the native view tasker_step_dag_relationships and step_min_depth_from_root
// (orchestration.md E): depths worked out by hand, the enable() / disable() round trip of the
// view, and enable()'s refusal of a view with other columns. (Included into `mod tests` after
// tests.rs, whose helpers it uses: tasker_db, diamond, one, text, error_of.)

const REFERENCE_VIEW: &str = include_str!("../../tests/fixtures/reference_view.sql");

fn depths(steps: &str) -> String {
    text(&format!(
        "SELECT string_agg(format('%s:%s', s, coalesce(tasker_core.step_min_depth_from_root(s)::text, 'NULL')), ' ' ORDER BY s)
           FROM unnest('{{{steps}}}'::bigint[]) s"
    ))
}

#[pg_test]
fn min_depth_from_root_by_hand() {
    diamond();
    // 1 -> {2, 3} -> 4; 5 -> 6 -> 5 (no root above); 7 -> 7 (a self-loop is an incoming edge).
    Spi::run(
        "SELECT pg_temp.step(g, 2, g::int) FROM generate_series(5, 7) g;
         INSERT INTO tasker_workflow_step_edges (from_step_id, to_step_id, name, created_at, updated_at)
              VALUES (5, 6, 'e', now(), now()), (6, 5, 'e', now(), now()), (7, 7, 'e', now(), now());",
    )
    .unwrap();
    assert_eq!(depths("1,2,3,4,5,6,7,999"), "1:0 2:1 3:1 4:2 5:NULL 6:NULL 7:NULL 999:NULL");
    assert_eq!(one::<i32>("SELECT tasker_core.step_min_depth_from_root(NULL::bigint)"), None);
    // The two-argument form reads the named schema's tables.
    assert_eq!(one::<i32>("SELECT tasker_core.step_min_depth_from_root(4, current_schema()::text)"), Some(2));
    assert_eq!(
        error_of("SELECT tasker_core.step_min_depth_from_root(4, 'no_such_schema')").as_deref().map(|e| &e[..5]),
        Some("3F000")
    );
    // No such step: NULL in both forms.
    assert_eq!(one::<i32>("SELECT tasker_core.step_min_depth_from_root(999, current_schema()::text)"), None);
    // Task 3's step 8 hangs below step 4 of task 1: its task is not closed, so it is searched
    // backwards; the other tasks are read whole. read_path_stats() tells the two apart.
    Spi::run(
        "SELECT pg_temp.step(8, 3, 8); SELECT pg_temp.step(9, 3, 9); SELECT pg_temp.edge(4, 8); SELECT pg_temp.edge(8, 9);
         SELECT tasker_core.read_path_stats_reset();",
    )
    .unwrap();
    assert_eq!(depths("8,9"), "8:3 9:4");
    assert_eq!(
        text(
            "SELECT string_agg(path || '=' || calls, ' ' ORDER BY path) FROM tasker_core.read_path_stats()
              WHERE function_name = 'step_min_depth_from_root'"
        ),
        "search=2"
    );
    assert_eq!(depths("1,2,3,4"), "1:0 2:1 3:1 4:2");
    assert_eq!(
        text(
            "SELECT string_agg(path || '=' || calls, ' ' ORDER BY path) FROM tasker_core.read_path_stats()
              WHERE function_name = 'step_min_depth_from_root'"
        ),
        "search=2 task=4"
    );
}

#[pg_test]
fn min_depth_kept_only_under_one_snapshot() {
    diamond();
    // PL/pgSQL keeps a simple expression's call site for the transaction: the depth read in
    // the first pass must not be served after the edge 10 -> 4 made step 4 one level deep.
    Spi::run(
        "CREATE TEMP TABLE seen (pass int, depth int);
         DO $$ DECLARE d int; BEGIN
           FOR pass IN 1..2 LOOP
             d := tasker_core.step_min_depth_from_root(4::bigint);
             INSERT INTO seen VALUES (pass, d);
             IF pass = 1 THEN PERFORM pg_temp.step(10, 1, 10); PERFORM pg_temp.edge(10, 4); END IF;
           END LOOP; END $$;",
    )
    .unwrap();
    assert_eq!(text("SELECT string_agg(depth::text, ' ' ORDER BY pass) FROM seen"), "2 1");
}

#[pg_test]
fn min_depth_stops_at_fifty() {
    tasker_db();
    // A chain 1 -> 2 -> ... -> 60 in task 1.
    Spi::run(
        "SELECT pg_temp.step(g, 1, 1) FROM generate_series(1, 60) g;
         SELECT pg_temp.edge(g, g + 1) FROM generate_series(1, 59) g;",
    )
    .unwrap();
    assert_eq!(depths("1,2,51,52,60"), "1:0 2:1 51:50 52:NULL 60:NULL");
}

/// The view's rows as text, by step.
fn view_rows() -> String {
    text(
        "SELECT string_agg(format('%s|%s|%s|%s|%s|%s|%s|%s|%s|%s', workflow_step_id, task_id, named_step_id, parent_step_ids,
                                  child_step_ids, parent_count, child_count, is_root_step, is_leaf_step,
                                  coalesce(min_depth_from_root::text, 'NULL')), ' ' ORDER BY workflow_step_id)
           FROM tasker_step_dag_relationships",
    )
}

#[pg_test]
fn view_round_trip() {
    diamond();
    // A duplicate edge 1 -> 2 and a cross-task edge 4 -> 5 (step 5 of task 2).
    Spi::run(
        "SELECT pg_temp.step(5, 2, 5); SELECT pg_temp.edge(1, 2), pg_temp.edge(4, 5);
         CREATE ROLE dag_test_reader NOLOGIN;",
    )
    .unwrap();
    Spi::run(REFERENCE_VIEW).unwrap();
    Spi::run(
        "GRANT SELECT ON tasker_step_dag_relationships TO dag_test_reader;
         CREATE VIEW dag_leaves AS SELECT workflow_step_id FROM tasker_step_dag_relationships WHERE is_leaf_step;",
    )
    .unwrap();
    let rails = view_rows();
    assert_eq!(
        rails,
        "1|1|1|[]|[2, 2, 3]|0|3|t|f|0 2|1|2|[1, 1]|[4]|2|1|f|f|1 3|1|3|[1]|[4]|1|1|f|f|1 \
         4|1|4|[2, 3]|[5]|2|1|f|f|2 5|2|5|[4]|[]|1|0|f|t|3"
    );
    let definition = text("SELECT pg_get_viewdef('tasker_step_dag_relationships'::regclass)");
    let oid = text("SELECT 'tasker_step_dag_relationships'::regclass::oid::text");
    assert_eq!(
        text("SELECT string_agg(object || ': ' || action, '; ') FROM tasker_core.enable(functions => false, triggers => false)"),
        format!("view {}.tasker_step_dag_relationships: replaced with native", text("SELECT current_schema()::text"))
    );
    assert_eq!(text("SELECT state FROM tasker_core.status() WHERE kind = 'view'"), "native");
    assert_eq!(view_rows(), rails);
    assert_ne!(text("SELECT pg_get_viewdef('tasker_step_dag_relationships'::regclass)"), definition);
    // Lookups by step and by task see the same rows.
    assert_eq!(
        text("SELECT format('%s %s', min_depth_from_root, child_step_ids) FROM tasker_step_dag_relationships WHERE workflow_step_id = 5"),
        "3 []"
    );
    assert_eq!(one::<i64>("SELECT count(*) FROM tasker_step_dag_relationships WHERE task_id = 1"), Some(4));
    // Same OID, the grant and the dependent view kept; a second enable() changes nothing.
    assert_eq!(text("SELECT 'tasker_step_dag_relationships'::regclass::oid::text"), oid);
    assert_eq!(one::<bool>("SELECT has_table_privilege('dag_test_reader', 'tasker_step_dag_relationships', 'SELECT')"), Some(true));
    assert_eq!(text("SELECT string_agg(workflow_step_id::text, ',' ORDER BY 1) FROM dag_leaves"), "5");
    assert_eq!(
        text("SELECT action FROM tasker_core.enable(functions => false, triggers => false)"),
        "already native"
    );
    assert_eq!(
        text("SELECT string_agg(action, ', ') FROM tasker_core.disable() WHERE object LIKE 'view %'"),
        "restored"
    );
    assert_eq!(text("SELECT pg_get_viewdef('tasker_step_dag_relationships'::regclass)"), definition);
    assert_eq!(text("SELECT state FROM tasker_core.status() WHERE kind = 'view'"), "original");
    assert_eq!(one::<bool>("SELECT to_regclass('tasker_step_dag_relationships_before_tasker_core') IS NULL"), Some(true));
    assert_eq!(view_rows(), rails);
    Spi::run("DROP VIEW dag_leaves; DROP OWNED BY dag_test_reader; DROP ROLE dag_test_reader;").unwrap();
}

#[pg_test]
fn view_with_other_columns_is_refused() {
    diamond();
    Spi::run("CREATE VIEW tasker_step_dag_relationships AS SELECT workflow_step_id, task_id FROM tasker_workflow_steps")
        .unwrap();
    let e = error_of("SELECT count(*) FROM tasker_core.enable()").unwrap_or_default();
    assert!(e.starts_with("42P13: cannot enable tasker_core: view"), "{e}");
    // Nothing changed: no guard trigger, no native function.
    assert_eq!(text("SELECT string_agg(DISTINCT state, ',') FROM tasker_core.status() WHERE kind <> 'read path'"), "absent,missing,original");
    // Without the view, enable() leaves the schema without one.
    Spi::run("DROP VIEW tasker_step_dag_relationships").unwrap();
    assert_eq!(one::<i64>("SELECT count(*) FROM tasker_core.enable() WHERE object LIKE 'view %'"), Some(0));
    assert_eq!(text("SELECT state FROM tasker_core.status() WHERE kind = 'view'"), "missing");
}
