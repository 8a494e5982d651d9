-- Not part of the plan: run as `mallory` after mallory.sql, when she may create
-- schemas in the database. She creates planrun's ledger schema before planrun does:
-- a trigger on `ledger_version` (which an apply writes first) and a `stage_results`
-- that is a view over a function (which every command reads) would run her code
-- with the privileges of whoever runs planrun.

CREATE SCHEMA planrun;

CREATE FUNCTION planrun.written() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM public.trojan_ran('trigger on planrun.' || TG_TABLE_NAME::text);
    RETURN NEW;
END
$$;

CREATE TABLE planrun.ledger_version (
    version    int NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);
CREATE TRIGGER written BEFORE INSERT OR UPDATE ON planrun.ledger_version
    FOR EACH ROW EXECUTE FUNCTION planrun.written();

CREATE TABLE planrun.runs (
    id              bigserial PRIMARY KEY,
    plan_name       text NOT NULL,
    plan_checksum   text NOT NULL,
    planrun_version text NOT NULL,
    db_user         text NOT NULL DEFAULT current_user,
    client_host     text NOT NULL,
    command         text NOT NULL,
    target          text NOT NULL,
    backup_file     text,
    started_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at     timestamptz,
    outcome         text NOT NULL DEFAULT 'running'
);
CREATE TRIGGER written BEFORE INSERT OR UPDATE ON planrun.runs
    FOR EACH ROW EXECUTE FUNCTION planrun.written();

CREATE TABLE planrun.stored_results (
    id               bigserial PRIMARY KEY,
    run_id           bigint,
    plan_name        text,
    stage_id         text,
    status           text,
    checksum         text,
    definition       jsonb,
    drift_accepted   boolean,
    skip_reason      text,
    started_at       timestamptz,
    finished_at      timestamptz,
    duration_ms      bigint,
    rows_affected    bigint,
    rows_quarantined bigint,
    captures         jsonb,
    verifications    jsonb,
    error            jsonb
);

CREATE FUNCTION planrun.stored_results() RETURNS SETOF planrun.stored_results
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM public.trojan_ran('view planrun.stage_results');
    RETURN QUERY SELECT * FROM planrun.stored_results;
END
$$;

CREATE VIEW planrun.stage_results AS SELECT * FROM planrun.stored_results();
