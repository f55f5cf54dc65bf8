-- The demo price list and discount codes (DESIGN.md §5): EUR cents per year, net of VAT.
-- Applied by `make run` and by the tests; re-applying resets them to these values.
INSERT INTO products (product, label, unit_price_cents, unit_mb) VALUES
    ('service', 'Fatturazione Elettronica Solo Ricezione', 2500, NULL),
    ('extra_storage', 'Spazio aggiuntivo 1 GB', 1000, 1024),
    ('extra_users', 'Utente aggiuntivo', 500, NULL)
ON CONFLICT (product) DO UPDATE
    SET label = EXCLUDED.label, unit_price_cents = EXCLUDED.unit_price_cents, unit_mb = EXCLUDED.unit_mb;

INSERT INTO discount_codes (code, percent_off, valid_from, valid_to, product) VALUES
    ('PARTNER10', 10, DATE '2020-01-01', NULL, NULL),
    ('OLD20', 20, DATE '2020-01-01', DATE '2024-12-31', NULL)
ON CONFLICT (code) DO UPDATE
    SET percent_off = EXCLUDED.percent_off, valid_from = EXCLUDED.valid_from,
        valid_to = EXCLUDED.valid_to, product = EXCLUDED.product;
