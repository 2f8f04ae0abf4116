-- A delivery carries its event's asset, and the deliveries still to make are indexed by asset
-- first. Without it, the outbox gauges (Ledger.Stats, every metrics scrape) found an asset's
-- undelivered events by joining every undelivered delivery in the database with the events,
-- and on a database shared by many assets one target down anywhere was enough to make the
-- planner hash-join instead: every helper's scrape then read its asset's whole event history.
-- With 1,000,000 events among 20 assets and one asset's 50,000 deliveries backing off, a
-- healthy asset's outbox query took 38-50 ms and read 11,700 pages; by asset, 0.05-0.2 ms (psql,
-- on the same data). BenchmarkOutboxStats, at those sizes: a healthy asset's whole scrape took
-- 89 ms, against 0.8 ms on a database of its own; now 0.6 ms. The reads of due deliveries
-- (DueDeliveries) no longer filter out other assets' deliveries to the same target name either.
ALTER TABLE outbox_deliveries ADD COLUMN asset_id bigint;
UPDATE outbox_deliveries d SET asset_id = e.asset_id FROM outbox_events e WHERE e.id = d.event_id;
ALTER TABLE outbox_deliveries ALTER COLUMN asset_id SET NOT NULL;

-- Helpers of an earlier version, still running for other assets on a shared database until
-- their own upgrade, write deliveries without the asset: it is taken from the event. This
-- binary writes it itself, so for its rows the trigger's condition is false and the function is
-- never called. No foreign key: the asset is the event's, which has one already.
CREATE FUNCTION outbox_delivery_asset() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    SELECT e.asset_id INTO NEW.asset_id FROM outbox_events e WHERE e.id = NEW.event_id;
    RETURN NEW;
END
$$;
CREATE TRIGGER outbox_deliveries_asset BEFORE INSERT ON outbox_deliveries
    FOR EACH ROW WHEN (NEW.asset_id IS NULL) EXECUTE FUNCTION outbox_delivery_asset();

DROP INDEX outbox_deliveries_new;
DROP INDEX outbox_deliveries_retries;
CREATE INDEX outbox_deliveries_new ON outbox_deliveries (asset_id, target, event_id)
    WHERE delivered_at IS NULL AND attempts = 0;
CREATE INDEX outbox_deliveries_retries ON outbox_deliveries (asset_id, target, next_attempt_at, event_id)
    WHERE delivered_at IS NULL AND attempts > 0;
