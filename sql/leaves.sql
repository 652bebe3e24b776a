-- Leaves: one partition per tier and UTC day, named <tier table>_pYYYYMMDD.

-- audit.leaf_name is the name of the leaf of a tier holding a given instant.
CREATE OR REPLACE FUNCTION audit.leaf_name(tier text, at timestamptz) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
RETURN 'events_' || tier || '_p' || to_char(at AT TIME ZONE 'UTC', 'YYYYMMDD');
COMMENT ON FUNCTION audit.leaf_name(text, timestamptz) IS 'Name (in schema audit) of the leaf of a tier that holds the given instant.';

-- audit.protect_leaf gives a leaf the privileges and the TRUNCATE trigger its
-- tier table has: a new leaf starts with its owner holding every privilege.
CREATE OR REPLACE FUNCTION audit.protect_leaf(leaf regclass) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  EXECUTE format('REVOKE ALL ON %s FROM PUBLIC', leaf);
  EXECUTE format('REVOKE UPDATE, DELETE, TRUNCATE ON %s FROM audit_owner', leaf);
  EXECUTE format('GRANT SELECT ON %s TO audit_reader', leaf);
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_trigger t WHERE t.tgrelid = leaf AND t.tgname = 'immutable_table') THEN
    EXECUTE format('CREATE TRIGGER immutable_table BEFORE TRUNCATE ON %s
                      FOR EACH STATEMENT EXECUTE FUNCTION audit.refuse_change()', leaf);
  END IF;
END
$$;
COMMENT ON FUNCTION audit.protect_leaf(regclass) IS 'Gives a new leaf its tier table''s privileges and TRUNCATE trigger.';

-- audit.make_leaf creates and attaches the leaf of a tier for one UTC day
-- unless it exists, and says whether it made it. The table is created on its
-- own and then attached, which locks the tier table only in SHARE UPDATE
-- EXCLUSIVE mode: inserts and reads of other leaves go on meanwhile (CREATE
-- TABLE ... PARTITION OF would take ACCESS EXCLUSIVE).
CREATE OR REPLACE FUNCTION audit.make_leaf(tier text, day date) RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  parent text := 'events_' || tier;
  leaf   text := audit.leaf_name(tier, day::timestamp AT TIME ZONE 'UTC');
  bounds text := format('FROM (%L) TO (%L)', to_char(day, 'YYYY-MM-DD') || ' 00:00:00+00',
                                              to_char(day + 1, 'YYYY-MM-DD') || ' 00:00:00+00');
BEGIN
  IF tier IS NULL OR tier NOT IN ({{ range $i, $t := $.tiers }}{{ if $i }}, {{ end }}'{{ $t }}'{{ end }}) THEN
    RAISE EXCEPTION 'unknown tier "%"', tier USING ERRCODE = 'AL008', HINT = 'Tiers are {{ join ", " $.tiers }}.';
  END IF;
  IF to_regclass('audit.' || leaf) IS NOT NULL THEN
    RETURN false;
  ELSIF day > audit.premake_horizon() THEN
    RAISE EXCEPTION 'leaf of % is past the premake horizon (%)', day, audit.premake_horizon() USING ERRCODE = 'AL014';
  END IF;
  BEGIN
    EXECUTE format('CREATE TABLE audit.%I (LIKE audit.%I INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING STORAGE INCLUDING COMPRESSION)', leaf, parent);
  EXCEPTION WHEN duplicate_table OR duplicate_object OR unique_violation THEN
    -- A concurrent transaction made it and has committed (its table, or the
    -- table's row type, is found first).
    RETURN false;
  END;
  EXECUTE format('ALTER TABLE audit.%I ATTACH PARTITION audit.%I FOR VALUES %s', parent, leaf, bounds);
  PERFORM audit.protect_leaf(('audit.' || quote_ident(leaf))::regclass);
  EXECUTE format('COMMENT ON TABLE audit.%I IS %L', leaf,
                 format('Events of %s-plan orgs on %s (UTC).', tier, to_char(day, 'YYYY-MM-DD')));
  RETURN true;
END
$$;
COMMENT ON FUNCTION audit.make_leaf(text, date) IS 'Creates and attaches the leaf of a tier for one UTC day unless it exists; true if it made it.';

-- Leaves made before this version of the code package get the same
-- protection; those that have it are left alone (migrate takes no lock on
-- them).
DO $$
DECLARE
  leaf regclass;
BEGIN
  FOR leaf IN
    SELECT i.inhrelid::regclass
    FROM pg_catalog.pg_inherits i
    WHERE i.inhparent IN ({{ range $i, $t := $.tiers }}{{ if $i }}, {{ end }}'audit.events_{{ $t }}'::regclass{{ end }})
      AND NOT EXISTS (SELECT FROM pg_catalog.pg_trigger t WHERE t.tgrelid = i.inhrelid AND t.tgname = 'immutable_table')
  LOOP
    PERFORM audit.protect_leaf(leaf);
  END LOOP;
END
$$;
