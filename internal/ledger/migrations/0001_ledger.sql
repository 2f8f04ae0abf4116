-- The ledger: one database may hold several assets (one per CryptoAsset or helper config).
-- Amounts are bigint base units (satoshi); never floats.

CREATE TABLE assets (
    id         bigserial PRIMARY KEY,
    name       text        NOT NULL UNIQUE,
    coin       text        NOT NULL,
    network    text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE wallets (
    id         bigserial PRIMARY KEY,
    asset_id   bigint      NOT NULL REFERENCES assets (id),
    name       text        NOT NULL,
    balance    bigint      NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (asset_id, name)
);

-- A user account's balance can only go below zero through a reorg that takes back a deposit the
-- account already spent; sends refuse to overdraw. The network fees account goes negative by design.
CREATE TABLE accounts (
    id         bigserial PRIMARY KEY,
    wallet_id  bigint      NOT NULL REFERENCES wallets (id),
    name       text        NOT NULL,
    kind       text        NOT NULL DEFAULT 'user' CHECK (kind IN ('user', 'network_fees')),
    balance    bigint      NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (wallet_id, name)
);
CREATE UNIQUE INDEX accounts_one_fee_account ON accounts (wallet_id) WHERE kind = 'network_fees';

-- Rows with an account are our receiving addresses; rows without are external addresses we sent to.
CREATE TABLE addresses (
    id         bigserial PRIMARY KEY,
    asset_id   bigint      NOT NULL REFERENCES assets (id),
    wallet_id  bigint      NOT NULL REFERENCES wallets (id),
    account_id bigint      REFERENCES accounts (id),
    address    text        NOT NULL,
    label      text        NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (asset_id, address)
);

-- One row per transaction on the network, per direction: paying ourselves gives one deposit and
-- one broadcast row with the same txid. confirmations: -1 unknown, 0 seen unconfirmed.
CREATE TABLE network_transactions (
    id            bigserial PRIMARY KEY,
    asset_id      bigint      NOT NULL REFERENCES assets (id),
    kind          text        NOT NULL CHECK (kind IN ('deposit', 'broadcast')),
    txid          text,
    confirmations integer     NOT NULL DEFAULT -1,
    block_hash    text,
    block_height  bigint,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (asset_id, kind, txid)
);

CREATE TABLE transactions (
    id                     bigserial PRIMARY KEY,
    asset_id               bigint      NOT NULL REFERENCES assets (id),
    wallet_id              bigint      NOT NULL REFERENCES wallets (id),
    kind                   text        NOT NULL CHECK (kind IN ('deposit', 'outgoing', 'internal', 'network_fee')),
    state                  text        NOT NULL CHECK (state IN (
        'pending', 'broadcasting', 'broadcasted', 'confirmed', 'failed', 'needs_review',  -- outgoing
        'incoming', 'credited', 'reverted',                                              -- deposit
        'done')),                                                                        -- internal, network_fee
    sending_account_id     bigint      REFERENCES accounts (id),
    receiving_account_id   bigint      REFERENCES accounts (id),
    address_id             bigint      REFERENCES addresses (id),
    amount                 bigint      NOT NULL CHECK (amount > 0),
    network_transaction_id bigint      REFERENCES network_transactions (id),
    output_index           integer,
    credited               boolean     NOT NULL DEFAULT false,
    processed_at           timestamptz,
    idempotency_key        text,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now(),
    CHECK (kind <> 'deposit' OR (network_transaction_id IS NOT NULL AND output_index IS NOT NULL AND receiving_account_id IS NOT NULL)),
    CHECK (kind <> 'internal' OR (sending_account_id IS NOT NULL AND receiving_account_id IS NOT NULL AND sending_account_id <> receiving_account_id)),
    CHECK (kind <> 'outgoing' OR (sending_account_id IS NOT NULL AND address_id IS NOT NULL))
);
-- A deposit is one output of one network transaction: booked once, however often it is reported.
CREATE UNIQUE INDEX transactions_deposit_output ON transactions (network_transaction_id, output_index) WHERE kind = 'deposit';
CREATE UNIQUE INDEX transactions_idempotency ON transactions (sending_account_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX transactions_account ON transactions (sending_account_id);
CREATE INDEX transactions_receiving ON transactions (receiving_account_id);
CREATE INDEX transactions_pending ON transactions (wallet_id, state) WHERE kind = 'outgoing';

-- Where catch-up resumes: the last block the helper fully processed.
CREATE TABLE cursors (
    asset_id     bigint PRIMARY KEY REFERENCES assets (id),
    block_height bigint      NOT NULL,
    block_hash   text        NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now()
);

-- Events for the application, written in the same transaction as the ledger change they report.
CREATE TABLE outbox_events (
    id         bigserial PRIMARY KEY,
    event_id   uuid        NOT NULL UNIQUE DEFAULT gen_random_uuid(),
    asset_id   bigint      NOT NULL REFERENCES assets (id),
    name       text        NOT NULL,
    payload    jsonb       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- One row per event and target, so a failing target never holds back the others.
CREATE TABLE outbox_deliveries (
    event_id        bigint      NOT NULL REFERENCES outbox_events (id),
    target          text        NOT NULL,
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    delivered_at    timestamptz,
    last_error      text,
    PRIMARY KEY (event_id, target)
);
CREATE INDEX outbox_deliveries_due ON outbox_deliveries (target, next_attempt_at) WHERE delivered_at IS NULL;
