CREATE TABLE orders (
    id          bigserial PRIMARY KEY,
    customer_id bigint NOT NULL REFERENCES customers(id),
    placed_on   date NOT NULL
);
INSERT INTO orders (customer_id, placed_on)
SELECT id, date '2020-01-01' + id::int FROM customers ORDER BY id;
