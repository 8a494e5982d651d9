CREATE TABLE shipments (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    order_id   bigint NOT NULL REFERENCES orders (id),
    shipped_at timestamptz
);
CREATE INDEX shipments_order ON shipments (order_id);
ALTER TABLE shipments ADD CONSTRAINT shipped_after_2000 CHECK (shipped_at > '2000-01-01');
