-- Orders placed before 2020-01-11 move to orders_archive (no foreign key there).
CREATE TABLE orders_archive (LIKE orders);
WITH moved AS (DELETE FROM orders WHERE placed_on < date '2020-01-11' RETURNING *)
INSERT INTO orders_archive SELECT * FROM moved;
