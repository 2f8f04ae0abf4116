-- Every catch-up and every broadcaster pass ends by listing the transactions whose confirmations
-- are still followed (below the tracking horizon): a handful. With no index on confirmations,
-- each listing read all of the asset's network transactions: the deposits' listing took 14 ms
-- with 100,000 past deposits and 55 ms with 400,000, and an idle catch-up 23 ms with 200,000
-- against 2.5 ms with none, growing with the ledger's age however idle the helper.
-- Confirmations change once a block for each followed transaction only (they stop at the
-- horizon), so the updates this index makes non-HOT are few.
CREATE INDEX network_transactions_followed ON network_transactions (asset_id, kind, confirmations);
