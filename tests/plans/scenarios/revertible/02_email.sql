ALTER TABLE customers ADD COLUMN email text;
UPDATE customers SET email = lower(name) || '@example.com';
