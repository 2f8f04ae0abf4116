-- A delivery is now deleted when its event is delivered (Ledger.MarkDelivered), so that marking
-- a page delivered does not write a new version of every row and index entry. The rows of
-- deliveries made before are of no further use: nothing reads a delivered row, and the
-- retention would delete them with their events.
DELETE FROM outbox_deliveries WHERE delivered_at IS NOT NULL;
