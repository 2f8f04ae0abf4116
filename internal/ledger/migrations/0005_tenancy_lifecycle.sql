-- Tenancy: an asset is identified by namespace and name, so two teams' CryptoAssets called "btc"
-- in namespaces "shop" and "payroll" keep two ledgers on one database. A standalone helper's
-- namespace is ''. Assets from before this migration keep a NULL namespace: the first helper of
-- the same name that opens one adopts it (ledger.Open), once, so an upgrade keeps its ledger. backend is the backend type that serves the asset; a helper configured
-- with another is refused, because the ledger's addresses and sends belong to that backend's wallet.
ALTER TABLE assets ADD COLUMN namespace text;
ALTER TABLE assets ADD COLUMN backend text;
ALTER TABLE assets DROP CONSTRAINT assets_name_key;
CREATE UNIQUE INDEX assets_namespace_name ON assets (namespace, name);

-- The send lifecycle: a send the backend refused on its own (a dust output, an invalid address)
-- is moved to needs_review with the backend's reason; a send cancelled before it was broadcast is
-- 'cancelled', its amount back in the account. Both are final.
ALTER TABLE transactions ADD COLUMN reason text;
ALTER TABLE transactions DROP CONSTRAINT transactions_state_check;
ALTER TABLE transactions ADD CONSTRAINT transactions_state_check CHECK (state IN (
    'pending', 'broadcasting', 'broadcasted', 'confirmed', 'failed', 'needs_review', 'cancelled', -- outgoing
    'incoming', 'credited', 'reverted', 'conflicted',                                             -- deposit
    'done'));                                                                                     -- internal, network_fee

-- Events an application pulls: position numbers an asset's events 1, 2, 3... in the order they
-- became visible (committed), which id does not: a transaction that took id 101 can commit after
-- the one that took 102, and a reader that had moved past 102 would never see 101. The helper
-- numbers committed events under a per-asset lock before every read, so a position once read is
-- never followed by a lower one. events_pruned_through is the highest position deleted by the
-- retention, so a reader asking for older events is told they are gone rather than given a gap.
ALTER TABLE outbox_events ADD COLUMN position bigint;
CREATE UNIQUE INDEX outbox_events_position ON outbox_events (asset_id, position) WHERE position IS NOT NULL;
CREATE INDEX outbox_events_unpositioned ON outbox_events (asset_id, id) WHERE position IS NULL;
CREATE INDEX outbox_events_created ON outbox_events (asset_id, created_at);
ALTER TABLE assets ADD COLUMN events_pruned_through bigint NOT NULL DEFAULT 0;
