-- tasker_core: lifecycle events (docs/events.md).
-- Hand-written; loaded into the install script by extension_sql_file! (src/lib.rs).
--
-- With enable(events => true), every committed step or task transition becomes one row of
-- tasker_core.events, named and with the payload Rails' state machines publish for it; each
-- transaction that recorded events sends one NOTIFY on channel tasker_core_events; consumers
-- read with events_since(), which never skips an event that commits late.

-- The events, in delivery order (xid, id): a transaction's events follow every event of the
-- transactions whose ids are lower than its own. events_since() hands out an event only once
-- every transaction that could still commit an event before it has ended.
CREATE TABLE tasker_core.events (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- The recording transaction (top level).
    xid xid8 NOT NULL DEFAULT pg_catalog.pg_current_xact_id(),
    name text NOT NULL,
    task_id bigint NOT NULL,
    step_id bigint,
    -- The state before the transition (the one with the next lower sort_key; NULL for the first).
    from_state text,
    to_state text NOT NULL,
    transition_id bigint NOT NULL,
    created_at timestamptz NOT NULL DEFAULT pg_catalog.statement_timestamp(),
    payload jsonb NOT NULL
);
CREATE INDEX events_delivery_order ON tasker_core.events (xid, id);
CREATE INDEX events_created_at ON tasker_core.events USING brin (created_at);
REVOKE ALL ON tasker_core.events FROM PUBLIC;
COMMENT ON TABLE tasker_core.events IS
    'Lifecycle events of committed transitions (docs/events.md). Read with tasker_core.events_since(); prune with tasker_core.prune_events().';

-- The event triggers enable(events => true) attaches: (trigger, table).
CREATE FUNCTION tasker_core.event_triggers()
RETURNS TABLE (trigger_name name, table_name name)
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    VALUES ('tasker_core_events'::name, 'tasker_workflow_step_transitions'::name),
           ('tasker_core_events', 'tasker_task_transitions')
$$;

-- The event trigger (AFTER INSERT, per statement, with the inserted rows): notes the
-- statement's transitions, whose events are recorded at commit (src/pg/events.rs).
-- SECURITY DEFINER: writers of the Tasker tables get no privilege on tasker_core.events.
CREATE FUNCTION tasker_core.events_capture()
RETURNS trigger
LANGUAGE c SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'events_capture_wrapper';
REVOKE ALL ON FUNCTION tasker_core.events_capture() FROM PUBLIC;
REVOKE ALL ON FUNCTION tasker_core.events_record(oid, bigint[]) FROM PUBLIC;

-- Up to `max` events after event `after` (0: from the oldest kept), in delivery order.
-- An event is handed out once every transaction that was running when this call's snapshot was
-- taken has ended (its xid is below the snapshot's xmin), so nothing can later commit before
-- it: a consumer that stores the id of the last event it received and calls again never
-- misses one. Ids are unique but do not follow delivery order; store the last one received.
CREATE FUNCTION tasker_core.events_since(after bigint, max integer DEFAULT 1000)
RETURNS SETOF tasker_core.events
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    horizon xid8 := pg_catalog.pg_snapshot_xmin(pg_catalog.pg_current_snapshot());
    seen xid8;
BEGIN
    IF max IS NULL OR max OPERATOR(pg_catalog.<) 1 THEN
        RAISE EXCEPTION 'events_since: max must be a positive number of events, not %', COALESCE(max::text, 'NULL')
            USING ERRCODE = '22023';
    END IF;
    IF after IS NULL OR after OPERATOR(pg_catalog.<) 0 THEN
        RAISE EXCEPTION 'events_since: after must be the id of an event, or 0 for the oldest, not %', COALESCE(after::text, 'NULL')
            USING ERRCODE = '22023';
    END IF;
    IF after OPERATOR(pg_catalog.=) 0 THEN
        RETURN QUERY SELECT e.* FROM tasker_core.events e
                      WHERE e.xid OPERATOR(pg_catalog.<) horizon
                      ORDER BY e.xid, e.id LIMIT max;
        RETURN;
    END IF;
    SELECT e.xid INTO seen FROM tasker_core.events e WHERE e.id OPERATOR(pg_catalog.=) after;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'events_since: event % is not in tasker_core.events', after
            USING ERRCODE = '22023',
                  DETAIL = 'It was pruned (tasker_core.prune_events keeps the last event handed out, and no event not yet handed out), or it never existed.',
                  HINT = 'The events after it that were pruned are gone. Read from the oldest kept with events_since(0).';
    END IF;
    RETURN QUERY SELECT e.* FROM tasker_core.events e
                  WHERE e.xid OPERATOR(pg_catalog.>=) seen AND e.xid OPERATOR(pg_catalog.<) horizon
                    AND (e.xid OPERATOR(pg_catalog.>) seen OR e.id OPERATOR(pg_catalog.>) after)
                  ORDER BY e.xid, e.id LIMIT max;
END
$$;

-- Named consumers: a position stored in the database per consumer. prune_events() keeps every
-- event a consumer has not acknowledged, as a replication slot keeps WAL (unsubscribe a consumer
-- that is gone, or it keeps every event from its position on).
CREATE TABLE tasker_core.event_consumers (
    name text PRIMARY KEY CHECK (name OPERATOR(pg_catalog.<>) ''),
    -- The last event acknowledged (0: none yet, read from the oldest kept).
    last_event bigint NOT NULL DEFAULT 0,
    -- Its transaction id (NULL with last_event 0): what prune_events() keeps after.
    last_xid xid8,
    created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    acked_at timestamptz
);
REVOKE ALL ON tasker_core.event_consumers FROM PUBLIC;

-- Registers consumer `consumer`, positioned at the last event events_since() hands out now (or,
-- with from_oldest, before the oldest kept). Registering a name again changes nothing; returns
-- its position.
CREATE FUNCTION tasker_core.subscribe(consumer text, from_oldest boolean DEFAULT false)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    horizon xid8;
    latest_id bigint;
    latest_xid xid8;
    pos bigint;
BEGIN
    IF consumer IS NULL OR consumer OPERATOR(pg_catalog.=) '' THEN
        RAISE EXCEPTION 'subscribe: a consumer needs a name' USING ERRCODE = '22023';
    END IF;
    -- No prune_events() under way while the position is read and stored (it waits, or this does).
    LOCK TABLE tasker_core.event_consumers IN ROW EXCLUSIVE MODE;
    horizon := pg_catalog.pg_snapshot_xmin(pg_catalog.pg_current_snapshot());
    IF NOT COALESCE(from_oldest, false) THEN
        SELECT e.id, e.xid INTO latest_id, latest_xid FROM tasker_core.events e WHERE e.xid OPERATOR(pg_catalog.<) horizon
         ORDER BY e.xid DESC, e.id DESC LIMIT 1;
    END IF;
    INSERT INTO tasker_core.event_consumers AS c (name, last_event, last_xid)
    VALUES (consumer, COALESCE(latest_id, 0), latest_xid)
    ON CONFLICT (name) DO NOTHING;
    SELECT c.last_event INTO pos FROM tasker_core.event_consumers c WHERE c.name OPERATOR(pg_catalog.=) consumer;
    RETURN pos;
END
$$;

-- Forgets consumer `consumer` (prune_events() no longer keeps events for it). Returns whether
-- it existed.
CREATE FUNCTION tasker_core.unsubscribe(consumer text)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    DELETE FROM tasker_core.event_consumers c WHERE c.name OPERATOR(pg_catalog.=) consumer;
    RETURN FOUND;
END
$$;

-- Up to `max` events after consumer `consumer`'s position, as events_since() hands them out.
CREATE FUNCTION tasker_core.consumer_events(consumer text, max integer DEFAULT 1000)
RETURNS SETOF tasker_core.events
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    pos bigint;
BEGIN
    SELECT c.last_event INTO pos FROM tasker_core.event_consumers c WHERE c.name OPERATOR(pg_catalog.=) consumer;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'consumer_events: there is no consumer %', pg_catalog.quote_literal(consumer) USING ERRCODE = '42704',
            HINT = 'Register it first: SELECT tasker_core.subscribe(name).';
    END IF;
    RETURN QUERY SELECT * FROM tasker_core.events_since(pos, max);
END
$$;

-- Moves consumer `consumer`'s position to event `event_id` (the last one it handled). Call it
-- in the transaction that records the handling, and the position moves exactly when the work
-- commits. Moving back is allowed (to read again); an event that does not exist is refused.
CREATE FUNCTION tasker_core.ack(consumer text, event_id bigint)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    at xid8;
BEGIN
    IF event_id IS NULL OR event_id OPERATOR(pg_catalog.<) 0 THEN
        RAISE EXCEPTION 'ack: event_id must be the id of an event, or 0, not %', COALESCE(event_id::text, 'NULL') USING ERRCODE = '22023';
    END IF;
    -- No prune_events() under way while the event is checked and the position stored.
    LOCK TABLE tasker_core.event_consumers IN ROW EXCLUSIVE MODE;
    IF event_id OPERATOR(pg_catalog.<>) 0 THEN
        SELECT e.xid INTO at FROM tasker_core.events e WHERE e.id OPERATOR(pg_catalog.=) event_id;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'ack: event % is not in tasker_core.events', event_id USING ERRCODE = '22023';
        END IF;
        -- An event events_since() would not hand out yet: past it, a late commit would be skipped.
        IF at OPERATOR(pg_catalog.>=) pg_catalog.pg_snapshot_xmin(pg_catalog.pg_current_snapshot()) THEN
            RAISE EXCEPTION 'ack: event % has not been handed out yet', event_id USING ERRCODE = '22023',
                DETAIL = 'A transaction that could still commit events before it is running.',
                HINT = 'Acknowledge only events that consumer_events() or events_since() returned.';
        END IF;
    END IF;
    UPDATE tasker_core.event_consumers c SET last_event = event_id, last_xid = at, acked_at = pg_catalog.now()
     WHERE c.name OPERATOR(pg_catalog.=) consumer;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'ack: there is no consumer %', pg_catalog.quote_literal(consumer) USING ERRCODE = '42704',
            HINT = 'Register it first: SELECT tasker_core.subscribe(name).';
    END IF;
END
$$;

-- Deletes up to `max_rows` events recorded more than `older_than` ago that events_since() has
-- already handed out, keeping the last one (a consumer that is up to date stores its id), and
-- every event from the slowest named consumer's position on (its acknowledged event included).
-- Returns how many it deleted; call it again until it returns 0. A DELETE takes no lock that
-- writers wait for; batches keep each transaction short, because events_since() hands out no
-- event newer than the oldest transaction still running.
CREATE FUNCTION tasker_core.prune_events(older_than interval, max_rows integer DEFAULT 100000)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    horizon xid8;
    keep bigint;
    slowest_xid xid8;
    slowest_id bigint;
    deleted bigint;
BEGIN
    IF older_than IS NULL OR older_than OPERATOR(pg_catalog.<) '0'::interval THEN
        RAISE EXCEPTION 'prune_events: older_than must be an interval of 0 or more, not %', COALESCE(older_than::text, 'NULL')
            USING ERRCODE = '22023';
    END IF;
    IF max_rows IS NULL OR max_rows OPERATOR(pg_catalog.<) 1 THEN
        RAISE EXCEPTION 'prune_events: max_rows must be positive, not %', COALESCE(max_rows::text, 'NULL')
            USING ERRCODE = '22023';
    END IF;
    -- The consumers' positions as committed, with no ack() or subscribe() under way until this
    -- transaction ends (they wait; writers of the Tasker tables never touch this table).
    LOCK TABLE tasker_core.event_consumers IN SHARE MODE;
    horizon := pg_catalog.pg_snapshot_xmin(pg_catalog.pg_current_snapshot());
    SELECT e.id INTO keep FROM tasker_core.events e WHERE e.xid OPERATOR(pg_catalog.<) horizon
     ORDER BY e.xid DESC, e.id DESC LIMIT 1;
    -- Nothing after the slowest named consumer's position: before it only (a consumer at 0 keeps
    -- everything).
    IF EXISTS (SELECT 1 FROM tasker_core.event_consumers c WHERE c.last_xid IS NULL) THEN
        RETURN 0;
    END IF;
    SELECT c.last_xid, c.last_event INTO slowest_xid, slowest_id FROM tasker_core.event_consumers c
     ORDER BY c.last_xid, c.last_event LIMIT 1;
    DELETE FROM tasker_core.events e
     WHERE e.id OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT d.id FROM tasker_core.events d
                     WHERE d.created_at OPERATOR(pg_catalog.<) (pg_catalog.now() OPERATOR(pg_catalog.-) older_than)
                       AND d.xid OPERATOR(pg_catalog.<) horizon
                       AND d.id OPERATOR(pg_catalog.<>) keep
                       AND (slowest_xid IS NULL OR d.xid OPERATOR(pg_catalog.<) slowest_xid
                            OR (d.xid OPERATOR(pg_catalog.=) slowest_xid AND d.id OPERATOR(pg_catalog.<) slowest_id))
                     LIMIT max_rows));
    GET DIAGNOSTICS deleted = ROW_COUNT;
    RETURN deleted;
END
$$;
REVOKE ALL ON FUNCTION tasker_core.prune_events(interval, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION tasker_core.subscribe(text, boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION tasker_core.unsubscribe(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION tasker_core.consumer_events(text, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION tasker_core.ack(text, bigint) FROM PUBLIC;
