-- sending_at is when the backend was last asked to pay an open broadcast. A broadcast found open
-- after a crash with no sending_at never reached the backend and is paid at once; one with it
-- waits for the wallet's record only until the request could no longer be carried out. Open
-- broadcasts from before this column are treated as asked when they were opened.
ALTER TABLE broadcasts ADD COLUMN sending_at timestamptz;
UPDATE broadcasts SET sending_at = opened_at WHERE state = 'opened';

-- Recording a broadcast updates its sends by broadcast_id and reports them by network
-- transaction. Without an index both scan the whole table, and under SERIALIZABLE a scan's
-- predicate lock covers every row, so any send queued or deposit booked meanwhile conflicts with
-- the record: a 118-send broadcast gave up twice after 25 retries.
CREATE INDEX transactions_broadcast ON transactions (broadcast_id) WHERE broadcast_id IS NOT NULL;
CREATE INDEX transactions_network_tx ON transactions (network_transaction_id) WHERE network_transaction_id IS NOT NULL;
