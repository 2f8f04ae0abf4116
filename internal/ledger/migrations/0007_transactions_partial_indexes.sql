-- A send's state changes twice on its way out (broadcasting, then broadcasted), and neither
-- update can be HOT: each adds an entry to every index of the table. Three indexes took entries
-- no query reads:
--   - transactions_account and transactions_receiving indexed NULLs (btree indexes keep them):
--     a deposit has no sending account and a send no receiving one. Lookups by account compare
--     with =, which implies IS NOT NULL, so the partial indexes still serve them.
--   - transactions_pending kept every send ever made; sends are looked up by state only while
--     on their way (pending, broadcasting, needs_review), and the index now holds only those.
DROP INDEX transactions_account;
CREATE INDEX transactions_account ON transactions (sending_account_id) WHERE sending_account_id IS NOT NULL;
DROP INDEX transactions_receiving;
CREATE INDEX transactions_receiving ON transactions (receiving_account_id) WHERE receiving_account_id IS NOT NULL;
DROP INDEX transactions_pending;
CREATE INDEX transactions_pending ON transactions (wallet_id, state)
    WHERE kind = 'outgoing' AND state IN ('pending', 'broadcasting', 'needs_review');
