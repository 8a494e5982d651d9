INSERT INTO orders (customer_id) SELECT id FROM customers;
