-- Deliveries are read in event order, 500 at a time. With only (target, next_attempt_at) to go
-- by, every read sorted all of a target's undelivered events, so draining a backlog of n events
-- cost n²/500 row visits: a day's outage of a busy asset took longer to deliver than to make.
-- This index gives the pending deliveries of a target in event order, so a read stops after the
-- events it returns.
CREATE INDEX outbox_deliveries_pending ON outbox_deliveries (target, event_id) WHERE delivered_at IS NULL;
