-- Large orders from a CSV file, enriched and written as JSON lines, exactly once.
-- Run from the repository's root:  eddy sql -f examples/sql/large_orders.sql

CREATE TABLE orders (
  order_id BIGINT NOT NULL,
  customer STRING,
  amount DECIMAL(10, 2),
  order_time TIMESTAMP(3),
  WATERMARK FOR order_time AS order_time - INTERVAL '5' SECOND
) WITH (
  'connector' = 'filesystem',
  'path' = 'examples/data/orders.csv',
  'format' = 'csv'
);

CREATE TABLE large_orders (
  order_id BIGINT,
  customer STRING,
  amount DECIMAL(10, 2),
  tier STRING,
  order_time TIMESTAMP(3)
) WITH (
  'connector' = 'filesystem',
  'path' = 'target/large_orders',
  'format' = 'json'
);

DESCRIBE orders;

INSERT INTO large_orders
SELECT order_id,
       UPPER(customer),
       amount,
       CASE WHEN amount >= 400 THEN 'platinum' ELSE 'gold' END,
       order_time
FROM orders
WHERE amount >= 250;
