-- A deployment script written for psql: the deployment tool passes variables with
-- `psql --set schema=... --set team=...`, and the script sets its own with \set.
\set ON_ERROR_STOP on
\set default_limit 25
\set greeting 'Welcome, it''s ' :team '!'

CREATE SCHEMA :"schema";

CREATE TABLE :"schema".accounts (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text NOT NULL,
    page_size int NOT NULL DEFAULT :default_limit,
    greeting text NOT NULL DEFAULT :'greeting',
    data_dir text DEFAULT :'data_dir',
    -- :team in a comment stays a comment
    note text DEFAULT 'a :team in a string, ' || $$:team in dollars$$
);

COMMENT ON TABLE :"schema".accounts IS :'team';

INSERT INTO :"schema".accounts (name) VALUES ('alice'), (:'team');

\unset default_limit
\set default_limit 50
CREATE VIEW :"schema".big_pages AS
    SELECT id, name, page_size::numeric / 2 AS half FROM :"schema".accounts WHERE page_size > :default_limit;

COPY :"schema".accounts (name, page_size) FROM stdin;
carol	10
:team stays as written in COPY rows	60
\.

UPDATE :"schema".accounts SET page_size = page_size + :{?default_limit}::int WHERE name = 'carol';
