ALTER TABLE orders ADD COLUMN total numeric;
UPDATE orders SET total = customer_id * 10;
