-- Everything that makes up the installed extension, as text: members with their full
-- definitions, ACLs, columns, constraints and indexes, plus the extension row itself.
SELECT 'extension' AS kind, e.extname || ' ' || e.extversion || ' relocatable=' || e.extrelocatable
       || ' schema=' || e.extnamespace::regnamespace || ' config=' || coalesce((SELECT string_agg(c::regclass::text, ',') FROM unnest(e.extconfig) c), '')
       || ' condition=' || coalesce(array_to_string(e.extcondition, ','), '') AS definition
  FROM pg_extension e WHERE e.extname = 'tasker_core'
UNION ALL
SELECT 'schema acl', coalesce(n.nspacl::text, '') FROM pg_namespace n WHERE n.nspname = 'tasker_core'
UNION ALL
SELECT 'member', pg_describe_object(d.classid, d.objid, d.objsubid) || E'\n' ||
       CASE d.classid
         WHEN 'pg_proc'::regclass THEN pg_get_functiondef(d.objid) || ' acl=' || coalesce((SELECT p.proacl::text FROM pg_proc p WHERE p.oid = d.objid), '')
         WHEN 'pg_class'::regclass THEN
           (SELECT string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod) || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
                              || coalesce(' default ' || pg_get_expr(ad.adbin, ad.adrelid), ''), ', ' ORDER BY a.attnum)
              FROM pg_attribute a LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
             WHERE a.attrelid = d.objid AND a.attnum > 0 AND NOT a.attisdropped)
           || ' acl=' || coalesce((SELECT c.relacl::text FROM pg_class c WHERE c.oid = d.objid), '')
           || ' constraints=' || coalesce((SELECT string_agg(pg_get_constraintdef(k.oid), '; ' ORDER BY k.conname) FROM pg_constraint k WHERE k.conrelid = d.objid), '')
           || ' indexes=' || coalesce((SELECT string_agg(pg_get_indexdef(i.indexrelid), '; ' ORDER BY i.indexrelid::regclass::text) FROM pg_index i WHERE i.indrelid = d.objid), '')
           || ' options=' || coalesce((SELECT c.reloptions::text FROM pg_class c WHERE c.oid = d.objid), '')
         WHEN 'pg_event_trigger'::regclass THEN
           (SELECT format('on %s tags %s enabled %s function %s', t.evtevent, t.evttags, t.evtenabled, t.evtfoid::regproc)
              FROM pg_event_trigger t WHERE t.oid = d.objid)
         ELSE ''
       END
  FROM pg_depend d
 WHERE d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
   AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'tasker_core')
ORDER BY 1, 2;
