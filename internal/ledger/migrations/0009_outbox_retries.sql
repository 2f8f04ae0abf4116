-- The deliveries due at a target are read as two sets, each in the order of an index of its own
-- (Ledger.DueDeliveries): the events never tried, in event order, and the retries, in the order
-- they fall due. One index over both in event order made every read walk past the retries still
-- backing off, and while a target is down that is every event since it went down.
DROP INDEX outbox_deliveries_due;
DROP INDEX outbox_deliveries_pending;
CREATE INDEX outbox_deliveries_new ON outbox_deliveries (target, event_id) WHERE delivered_at IS NULL AND attempts = 0;
CREATE INDEX outbox_deliveries_retries ON outbox_deliveries (target, next_attempt_at, event_id)
    WHERE delivered_at IS NULL AND attempts > 0;
