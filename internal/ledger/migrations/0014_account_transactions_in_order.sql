-- The transaction listing (GET /v1/transactions, Ledger.Transactions) of an account reads the
-- two indexes of the accounts a transaction is sent from and received by, a page from each, in id
-- order; keyed by the account alone, PostgreSQL instead walked the primary key back from the
-- newest transaction until it had a page, or read all the account's transactions and sorted
-- them. On a ledger with 600,000 transfers among 1,000 accounts (psql), an account with 5
-- transactions took 55-62 ms to list; with these, 0.04-0.2 ms for any account. The keys never
-- change, so the money paths pay only wider entries in the two indexes.
--
-- An index by asset and kind in id order, tried beside these, served the rest of the listings
-- (a quiet asset on a database other assets share: 42-50 ms; a rare kind: 31-78 ms) in 0.02-0.3
-- ms, but cost every transaction written an entry: internal transfers ran 4% slower and a
-- catch-up's bookings 7% slower, some of it because the planner read the open deposits of a new
-- ledger from it (0.03 ms to 0.9) rather than from network_transactions_followed. It was left
-- out. No index carries the state, which changes on the money path.
DROP INDEX transactions_account;
CREATE INDEX transactions_account ON transactions (sending_account_id, id) WHERE sending_account_id IS NOT NULL;
DROP INDEX transactions_receiving;
CREATE INDEX transactions_receiving ON transactions (receiving_account_id, id) WHERE receiving_account_id IS NOT NULL;
