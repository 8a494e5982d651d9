-- The same work done safely, and work on tables the script itself creates (new and
-- empty: a lock on them endangers no one). One script per line; `tests/lock_corpus.rs`
-- asserts none gets a planrun finding.
CREATE INDEX CONCURRENTLY orders_created_at ON orders (created_at);
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS orders_ref ON orders (ref);
DROP INDEX CONCURRENTLY IF EXISTS orders_created_at;
REINDEX TABLE CONCURRENTLY orders;
REINDEX INDEX CONCURRENTLY orders_pkey;
REFRESH MATERIALIZED VIEW CONCURRENTLY order_totals;
ALTER TABLE orders ADD CONSTRAINT orders_customer_fk FOREIGN KEY (customer_id) REFERENCES customers (id) NOT VALID;
ALTER TABLE orders VALIDATE CONSTRAINT orders_customer_fk;
ALTER TABLE orders ADD CONSTRAINT total_positive CHECK (total >= 0) NOT VALID;
ALTER TABLE orders VALIDATE CONSTRAINT total_positive;
ALTER TABLE orders ADD CONSTRAINT customer_present CHECK (customer_id IS NOT NULL) NOT VALID;
-- (lines 15-17 moved to dangerous.sql 52-54: a type change to text, varchar or numeric
-- is free only from some old types; offline planrun cannot see the old type and flags
-- it, `planrun plan` decides it from the target's catalog)
ALTER TABLE orders ADD COLUMN region text;
ALTER TABLE orders ADD COLUMN region text NOT NULL DEFAULT 'eu';
ALTER TABLE orders ADD COLUMN seen_at timestamptz DEFAULT now();
ALTER TABLE orders ADD COLUMN flags bigint NOT NULL DEFAULT 0;
ALTER TABLE orders ADD COLUMN meta jsonb NOT NULL DEFAULT '{}';
ALTER TABLE orders ADD CONSTRAINT orders_ref_key UNIQUE USING INDEX orders_ref;
ALTER TABLE events ADD CONSTRAINT events_pkey PRIMARY KEY USING INDEX events_id_idx;
ALTER TABLE orders ALTER COLUMN note SET DEFAULT '';
ALTER TABLE orders ALTER COLUMN note DROP DEFAULT;
ALTER TABLE orders SET (fillfactor = 70);
ALTER TABLE orders ALTER COLUMN total SET STATISTICS 500;
VACUUM orders;
ANALYZE orders;
UPDATE orders SET note = '' WHERE id BETWEEN 1 AND 1000;
INSERT INTO orders (customer_id, total) VALUES (1, 10);
DELETE FROM orders WHERE id < 100;
TRUNCATE order_staging;
COMMENT ON TABLE orders IS 'customer orders';
CREATE VIEW recent_orders AS SELECT * FROM orders WHERE created_at > now() - interval '1 day';
CREATE TABLE tags (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name text NOT NULL, created_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE shipments (id bigint PRIMARY KEY, order_id bigint); CREATE INDEX shipments_order ON shipments (order_id);
CREATE TABLE shipments (id bigint PRIMARY KEY, order_id bigint); ALTER TABLE shipments ADD CONSTRAINT shipments_order_fk FOREIGN KEY (order_id) REFERENCES orders (id);
CREATE TABLE shipments (id bigint PRIMARY KEY, note text); ALTER TABLE shipments ALTER COLUMN note SET NOT NULL;
CREATE TABLE shipments (id bigint PRIMARY KEY, note text); ALTER TABLE shipments ADD COLUMN token uuid NOT NULL DEFAULT gen_random_uuid();
CREATE TABLE shipments (id bigint PRIMARY KEY, qty bigint); ALTER TABLE shipments ALTER COLUMN qty TYPE numeric(20);
CREATE TABLE shipments (id bigint PRIMARY KEY, ref text); ALTER TABLE shipments ADD CONSTRAINT shipments_ref_key UNIQUE (ref);
CREATE TABLE shipments (id bigint, note text); ALTER TABLE shipments ADD PRIMARY KEY (id);
CREATE TABLE shipments (id bigint PRIMARY KEY, qty bigint); ALTER TABLE shipments ADD CONSTRAINT qty_positive CHECK (qty > 0);
CREATE TABLE shipments (id bigint PRIMARY KEY, note text); ALTER TABLE shipments RENAME COLUMN note TO remark;
CREATE TABLE shipments (id bigint PRIMARY KEY, note text); ALTER TABLE shipments RENAME TO deliveries;
CREATE TABLE shipments (id bigint PRIMARY KEY, note text); ALTER TABLE shipments DROP COLUMN note;
CREATE TABLE shipments_tmp (id bigint PRIMARY KEY); DROP TABLE shipments_tmp;
CREATE TABLE shipments (id bigint PRIMARY KEY, order_id bigint); CREATE INDEX shipments_order ON shipments (order_id); DROP INDEX shipments_order;
