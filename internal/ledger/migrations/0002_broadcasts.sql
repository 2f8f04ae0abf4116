-- A broadcast batches the pending sends of a wallet into one network transaction. It is opened
-- (sends reserved for it) before the backend is asked to pay, and closed with the txid after. A
-- broadcast still open when the helper starts was interrupted: the broadcaster checks the wallet's
-- own record of sends before it pays anything again.
CREATE TABLE broadcasts (
    id         bigserial PRIMARY KEY,
    asset_id   bigint      NOT NULL REFERENCES assets (id),
    wallet_id  bigint      NOT NULL REFERENCES wallets (id),
    state      text        NOT NULL CHECK (state IN ('opened', 'broadcasted', 'failed')),
    txid       text,
    attempts   integer     NOT NULL DEFAULT 0,
    last_error text,
    opened_at  timestamptz NOT NULL DEFAULT now(),
    closed_at  timestamptz
);
CREATE UNIQUE INDEX broadcasts_one_open ON broadcasts (wallet_id) WHERE state = 'opened';

ALTER TABLE transactions ADD COLUMN broadcast_id bigint REFERENCES broadcasts (id);
-- One network fee per network transaction, however often it is booked.
CREATE UNIQUE INDEX transactions_one_fee ON transactions (network_transaction_id) WHERE kind = 'network_fee';
