-- tasker_core: orchestration helpers written in SQL (the rest of orchestration is in Rust:
-- src/pg/transitions.rs, claiming.rs, finalization.rs).

-- A server's Retry-After header in seconds (orchestration.md D.2, RetryHeaderParser):
-- NULL or blank: 0; digits only: that number; otherwise a date, parsed by PostgreSQL's own
-- timestamptz input (HTTP dates such as 'Wed, 21 Oct 2015 07:28:00 GMT'; a date without a zone
-- is UTC, the zone the engine runs in), and the whole seconds from `at` until then, never
-- negative. Not capped (the engine only logs values above 3600). NULL when the value is neither,
-- or does not fit an integer: the engine raises there, and its caller treats the header as absent.
-- PARALLEL UNSAFE (the default): the EXCEPTION block is a subtransaction.
CREATE FUNCTION tasker_core.parse_retry_after(header text, at timestamptz DEFAULT pg_catalog.now())
RETURNS integer
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
SET "TimeZone" = 'UTC'
AS $$
DECLARE
    t timestamptz;
BEGIN
    IF header IS NULL OR pg_catalog.btrim(header, E' \t\n\r\f\v') OPERATOR(pg_catalog.=) '' THEN
        RETURN 0;
    END IF;
    -- A date has digits: this keeps out the words timestamptz input also takes ('now',
    -- 'tomorrow', 'epoch', 'infinity'), which are not HTTP dates.
    IF header OPERATOR(pg_catalog.!~) '[0-9]' THEN
        RETURN NULL;
    END IF;
    BEGIN
        IF header OPERATOR(pg_catalog.~) '^[0-9]+$' THEN
            RETURN header::pg_catalog.int4;
        END IF;
        t := header::pg_catalog.timestamptz;
        RETURN GREATEST(pg_catalog.trunc(pg_catalog.date_part('epoch', t OPERATOR(pg_catalog.-) at)), 0)::pg_catalog.int4;
    EXCEPTION WHEN data_exception THEN
        RETURN NULL;
    END;
END
$$;
