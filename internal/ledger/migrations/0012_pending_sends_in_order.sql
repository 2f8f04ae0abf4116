-- A broadcast takes the oldest pending sends: ORDER BY id LIMIT 1000. With (wallet_id, state)
-- to go by, every broadcast read all of the wallet's pending sends and sorted them, so draining
-- a backlog of n sends (queued while the network was down) cost n²/1000 entry visits; and the
-- planner, seeing the whole backlog to sort, often preferred walking the primary key past every
-- send ever made. With id last, the pending sends come in id order and the read stops after
-- the sends it takes. On a ledger with 200,000 past sends and a backlog of 100,000, taking a
-- broadcast's 1,000 sends took 78 ms against 14 on a fresh ledger, and 24-25 ms with this index
-- (BenchmarkBroadcastBacklog). The index holds the same rows as before (sends on their way), so
-- no update adds an entry it did not add already.
DROP INDEX transactions_pending;
CREATE INDEX transactions_pending ON transactions (wallet_id, state, id)
    WHERE kind = 'outgoing' AND state IN ('pending', 'broadcasting', 'needs_review');
