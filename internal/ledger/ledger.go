// Package ledger is the helper's PostgreSQL ledger: accounts, addresses, transactions, the chain
// cursor and the event outbox of one asset. Writes run in SERIALIZABLE transactions retried on
// contention, but for two that lock every row they decide on (an internal transfer, recording a
// paid broadcast); nothing in here talks to the network, so a retried transaction never repeats a
// side effect.
package ledger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/cryptoassets/cryptoassets-operator/internal/coin"
)

// Errors callers can test for with errors.Is.
var (
	ErrNotFound            = errors.New("not found")
	ErrExists              = errors.New("already exists")
	ErrSameAccount         = errors.New("sending and receiving account are the same")
	ErrInsufficientBalance = errors.New("insufficient balance")
	ErrInvalidAmount       = errors.New("amount must be greater than zero")
	ErrInvalidAddress      = errors.New("invalid address")
	ErrNotOurAddress       = errors.New("not one of our receiving addresses")
	ErrIdempotencyConflict = errors.New("idempotency key was used for a different request")
	ErrInconsistent        = errors.New("backend report contradicts the ledger")
	ErrFeeAccount          = errors.New("the network fees account is the ledger's own: it takes no receiving addresses and sends nothing on request")
	ErrNotCancellable      = errors.New("the send can no longer be cancelled")
)

// DefaultWallet is the wallet every asset has; the original library's API had several, the helper
// serves one per asset.
const DefaultWallet = "default"

// FeeAccount takes network fees and may go negative.
const FeeAccount = "network fees"

// Options describe the asset a Ledger serves.
type Options struct {
	// Namespace and Asset identify the asset: a CryptoAsset's namespace and name, or an empty
	// namespace and a name for a standalone helper.
	Namespace string
	Asset     string
	// Backend is the backend type serving the asset (bitcoind, blockio...); the ledger records
	// it and refuses a helper configured with another.
	Backend                 string
	Coin                    string
	Network                 string
	Confirmations           int32
	MaxTrackedConfirmations int32
	// ValidateAddress checks an external address for the asset's coin and network.
	ValidateAddress func(string) error
	// EventTargets are the names of the application notification targets; every event gets one
	// delivery row per target.
	EventTargets []string
	Retry        RetryPolicy
	// OnEvents, if set, is called after a write that added events has committed, so that their
	// delivery starts at once instead of at the dispatcher's next poll. It must not block.
	OnEvents func()
}

// Ledger is the ledger of one asset.
type Ledger struct {
	pool         *pgxpool.Pool
	opts         Options
	coin         coin.Coin
	assetID      int64
	walletID     int64
	feeAccountID int64
}

// Account is a ledger account.
type Account struct {
	ID      int64
	Name    string
	Kind    string
	Balance Amount
}

// Address is one of our receiving addresses (AccountID set) or an external address.
type Address struct {
	ID        int64
	Address   string
	AccountID *int64
	Label     string
}

// Transaction is a ledger transaction.
type Transaction struct {
	ID                 int64
	Kind               string
	State              string
	SendingAccountID   *int64
	ReceivingAccountID *int64
	Address            string
	Amount             Amount
	TxID               string
	OutputIndex        *int32
	Confirmations      int32
	Credited           bool
	ProcessedAt        *time.Time
	IdempotencyKey     string
	CreatedAt          time.Time
	// Note says why a send in an open broadcast waits (a backend that did not answer, an
	// interrupted broadcast looked for in the wallet's records).
	Note string
	// Reason says why a send is in needs_review: the backend's refusal, or a double spend.
	Reason string
	// Replayed: an Idempotency-Key found this transaction; the request created nothing.
	Replayed bool
}

// Open checks the schema and makes sure the asset, its default wallet and its fee account exist.
func Open(ctx context.Context, pool *pgxpool.Pool, opts Options) (*Ledger, error) {
	k, err := coin.LookupNetwork(opts.Coin, opts.Network)
	if err != nil {
		return nil, err
	}
	if opts.Retry.Attempts == 0 {
		opts.Retry = DefaultRetry()
	}
	if opts.ValidateAddress == nil {
		return nil, errors.New("ledger: ValidateAddress is required")
	}
	if err := CheckSchema(ctx, pool); err != nil {
		return nil, err
	}
	l := &Ledger{pool: pool, opts: opts, coin: k}
	err = inTx(ctx, pool, opts.Retry, func(tx pgx.Tx) error {
		var err error
		l.assetID, err = l.claimAsset(ctx, tx)
		if err != nil {
			return err
		}
		if err := tx.QueryRow(ctx, `INSERT INTO wallets (asset_id, name) VALUES ($1, $2)
			ON CONFLICT (asset_id, name) DO UPDATE SET name = excluded.name RETURNING id`, l.assetID, DefaultWallet).Scan(&l.walletID); err != nil {
			return err
		}
		return tx.QueryRow(ctx, `INSERT INTO accounts (wallet_id, name, kind) VALUES ($1, $2, 'network_fees')
			ON CONFLICT (wallet_id, name) DO UPDATE SET name = excluded.name RETURNING id`, l.walletID, FeeAccount).Scan(&l.feeAccountID)
	})
	if err != nil {
		return nil, fmt.Errorf("opening the ledger of asset %s: %w", l.AssetRef(), err)
	}
	return l, nil
}

// AssetRef names the asset as the ledger knows it: namespace/name, or the name alone for a
// standalone helper.
func (l *Ledger) AssetRef() string { return AssetRef(l.opts.Namespace, l.opts.Asset) }

// AssetRef is namespace/name, or name when namespace is empty.
func AssetRef(namespace, name string) string {
	if namespace == "" {
		return name
	}
	return namespace + "/" + name
}

// ErrAssetMismatch: the ledger's record of the asset says another coin, network or backend than
// the helper's config. Serving it would mix two wallets' money in one ledger.
var ErrAssetMismatch = errors.New("the ledger's record of the asset does not match the config")

// differences lists how the ledger's record of the asset differs from the options.
func (o Options) differences(coinName, network, backend string) []string {
	var differs []string
	if coinName != o.Coin {
		differs = append(differs, fmt.Sprintf("coin is %s, the config says %s", coinName, o.Coin))
	}
	if network != o.Network {
		differs = append(differs, fmt.Sprintf("network is %s, the config says %s", network, o.Network))
	}
	if backend != "" && o.Backend != "" && backend != o.Backend {
		differs = append(differs, fmt.Sprintf("backend is %s, the config says %s", backend, o.Backend))
	}
	return differs
}

func (o Options) mismatch(differs []string) error {
	return fmt.Errorf("%w: asset %s in the ledger: %s; refusing to serve it (point the helper at its own asset name or database)",
		ErrAssetMismatch, AssetRef(o.Namespace, o.Asset), strings.Join(differs, "; "))
}

// assetRecord is the ledger's row for an asset: the one of its namespace, or one from before
// namespaces (Namespace nil) with its name.
type assetRecord struct {
	ID                     int64
	Namespace              *string
	Coin, Network, Backend string
}

// queryRower is what reads an asset record: a connection, a pool or a transaction.
type queryRower interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}

// readAssetRecord reads the asset's record, locking its row when lock is set; ok=false when the
// ledger has none yet.
func (o Options) readAssetRecord(ctx context.Context, q queryRower, lock bool) (r assetRecord, ok bool, err error) {
	query := `SELECT id, namespace, coin, network, coalesce(backend, '') FROM assets
		WHERE name = $2 AND (namespace = $1 OR namespace IS NULL) ORDER BY namespace NULLS LAST LIMIT 1`
	if lock {
		query += ` FOR UPDATE`
	}
	err = q.QueryRow(ctx, query, o.Namespace, o.Asset).Scan(&r.ID, &r.Namespace, &r.Coin, &r.Network, &r.Backend)
	if errors.Is(err, pgx.ErrNoRows) {
		return assetRecord{}, false, nil
	}
	if err != nil {
		return assetRecord{}, false, fmt.Errorf("reading the ledger's record of asset %s: %w", AssetRef(o.Namespace, o.Asset), err)
	}
	return r, true, nil
}

// VerifyAsset checks, without writing, that the ledger's record of the asset (if there is one
// yet) is the asset o describes. A helper runs it before it queues for the asset's lock, so a
// helper configured for another coin refuses to start rather than wait behind the right one.
func VerifyAsset(ctx context.Context, q queryRower, o Options) error {
	r, ok, err := o.readAssetRecord(ctx, q, false)
	if err != nil || !ok {
		return err
	}
	if differs := o.differences(r.Coin, r.Network, r.Backend); len(differs) > 0 && r.Namespace != nil {
		return o.mismatch(differs)
	}
	return nil
}

// claimAsset finds or creates the asset's row, and checks that the ledger's record of it is the
// asset the config describes. A row from before assets had namespaces (namespace NULL) with the
// same name is adopted once, by the first helper to open it, so an upgrade keeps its ledger.
func (l *Ledger) claimAsset(ctx context.Context, tx pgx.Tx) (int64, error) {
	insert := func() (id int64, err error) {
		err = tx.QueryRow(ctx, `INSERT INTO assets (namespace, name, coin, network, backend) VALUES ($1, $2, $3, $4, nullif($5, '')) RETURNING id`,
			l.opts.Namespace, l.opts.Asset, l.opts.Coin, l.opts.Network, l.opts.Backend).Scan(&id)
		return id, err
	}
	r, ok, err := l.opts.readAssetRecord(ctx, tx, true)
	if err != nil {
		return 0, err
	}
	if !ok {
		return insert()
	}
	differs := l.opts.differences(r.Coin, r.Network, r.Backend)
	if len(differs) > 0 && r.Namespace == nil {
		return insert() // another coin's ledger from before namespaces: not ours to adopt
	}
	if len(differs) > 0 {
		return 0, l.opts.mismatch(differs)
	}
	_, err = tx.Exec(ctx, `UPDATE assets SET namespace = $2, backend = coalesce(backend, nullif($3, '')) WHERE id = $1
		AND (namespace IS NULL OR backend IS NULL)`, r.ID, l.opts.Namespace, l.opts.Backend)
	return r.ID, err
}

// Coin is the coin of the ledger's asset.
func (l *Ledger) Coin() coin.Coin { return l.coin }

// FeeAccountID is the id of the network fees account.
func (l *Ledger) FeeAccountID() int64 { return l.feeAccountID }

func isUniqueViolation(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23505"
}

func (l *Ledger) feeAccountError(id int64) error {
	return fmt.Errorf("account %d (%q): %w", id, FeeAccount, ErrFeeAccount)
}

// CreateAccount creates a user account with balance 0.
func (l *Ledger) CreateAccount(ctx context.Context, name string) (Account, error) {
	name = strings.TrimSpace(name)
	if name == "" || len(name) > 200 {
		return Account{}, fmt.Errorf("account name must be 1-200 characters")
	}
	if name == FeeAccount {
		return Account{}, fmt.Errorf("account %q: %w (reserved for network fees)", name, ErrExists)
	}
	a := Account{Name: name, Kind: "user"}
	err := l.inTx(ctx, l.opts.Retry, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, `INSERT INTO accounts (wallet_id, name) VALUES ($1, $2) RETURNING id`, l.walletID, name).Scan(&a.ID)
	})
	if isUniqueViolation(err) {
		return Account{}, fmt.Errorf("account %q: %w", name, ErrExists)
	}
	if err != nil {
		return Account{}, fmt.Errorf("creating account %q: %w", name, err)
	}
	return a, nil
}

func scanAccount(row pgx.Row) (Account, error) {
	var a Account
	err := row.Scan(&a.ID, &a.Name, &a.Kind, &a.Balance)
	if errors.Is(err, pgx.ErrNoRows) {
		return Account{}, ErrNotFound
	}
	return a, err
}

// Account returns one account of this asset.
func (l *Ledger) Account(ctx context.Context, id int64) (Account, error) {
	a, err := scanAccount(l.pool.QueryRow(ctx, `SELECT id, name, kind, balance FROM accounts WHERE id = $1 AND wallet_id = $2`, id, l.walletID))
	if err != nil {
		return Account{}, fmt.Errorf("account %d: %w", id, err)
	}
	return a, nil
}

// Page is one page of a listing in id order: the rows with an id above After (the last id of
// the page before; 0 for the first page), at most Limit of them (0: all the rest).
type Page struct {
	After int64
	Limit int
}

// limit is the page's LIMIT argument: NULL, which PostgreSQL reads as no limit, for all.
func (p Page) limit() any {
	if p.Limit <= 0 {
		return nil
	}
	return p.Limit
}

// The listings of accounts and of an account's addresses, a page at a time.
const (
	accountsSQL           = `SELECT id, name, kind, balance FROM accounts WHERE wallet_id = $1 AND id > $2 ORDER BY id LIMIT $3`
	receivingAddressesSQL = `SELECT id, address, account_id, label FROM addresses
		WHERE account_id = $1 AND wallet_id = $2 AND id > $3 ORDER BY id LIMIT $4`
)

// Accounts lists a page of the accounts of this asset in id order, the fee account included.
func (l *Ledger) Accounts(ctx context.Context, p Page) ([]Account, error) {
	rows, err := l.pool.Query(ctx, accountsSQL, l.walletID, p.After, p.limit())
	if err != nil {
		return nil, fmt.Errorf("listing accounts: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Account, error) { return scanAccount(r) })
}

// WalletBalance is the balance of the asset's wallet.
func (l *Ledger) WalletBalance(ctx context.Context) (Amount, error) {
	var b Amount
	err := l.pool.QueryRow(ctx, `SELECT balance FROM wallets WHERE id = $1`, l.walletID).Scan(&b)
	return b, err
}

// AddReceivingAddress records an address the backend created for an account. The backend call
// happens before, outside any database transaction.
func (l *Ledger) AddReceivingAddress(ctx context.Context, accountID int64, address, label string) (Address, error) {
	if err := l.opts.ValidateAddress(address); err != nil {
		return Address{}, fmt.Errorf("the backend returned address %q: %w: %v", address, ErrInvalidAddress, err)
	}
	a := Address{Address: address, AccountID: &accountID, Label: label}
	err := l.inTx(ctx, l.opts.Retry, func(tx pgx.Tx) error {
		owner, err := l.lockAccount(ctx, tx, accountID)
		if err != nil {
			return err
		}
		if owner.Kind == "network_fees" {
			return l.feeAccountError(accountID)
		}
		var existing *int64
		err = tx.QueryRow(ctx, `SELECT id, account_id FROM addresses WHERE asset_id = $1 AND address = $2`, l.assetID, address).Scan(&a.ID, &existing)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			return tx.QueryRow(ctx, `INSERT INTO addresses (asset_id, wallet_id, account_id, address, label) VALUES ($1, $2, $3, $4, $5) RETURNING id`,
				l.assetID, l.walletID, accountID, address, label).Scan(&a.ID)
		case err != nil:
			return err
		case existing != nil && *existing != accountID:
			return fmt.Errorf("address %s already belongs to account %d: %w", address, *existing, ErrExists)
		default:
			// Known as an external address we once paid, or already this account's: it is ours now.
			_, err := tx.Exec(ctx, `UPDATE addresses SET account_id = $1, label = $2 WHERE id = $3`, accountID, label, a.ID)
			return err
		}
	})
	if err != nil {
		return Address{}, fmt.Errorf("adding receiving address %s: %w", address, err)
	}
	return a, nil
}

// ReceivingAddresses lists a page of an account's receiving addresses in id order, from
// addresses_account (migration 15).
func (l *Ledger) ReceivingAddresses(ctx context.Context, accountID int64, p Page) ([]Address, error) {
	rows, err := l.pool.Query(ctx, receivingAddressesSQL, accountID, l.walletID, p.After, p.limit())
	if err != nil {
		return nil, fmt.Errorf("listing the addresses of account %d: %w", accountID, err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Address, error) {
		var a Address
		err := r.Scan(&a.ID, &a.Address, &a.AccountID, &a.Label)
		return a, err
	})
}

// lockAccount reads an account of this wallet inside tx, locking its row for the transaction.
func (l *Ledger) lockAccount(ctx context.Context, tx pgx.Tx, id int64) (Account, error) {
	a, err := scanAccount(tx.QueryRow(ctx, `SELECT id, name, kind, balance FROM accounts WHERE id = $1 AND wallet_id = $2 FOR UPDATE`, id, l.walletID))
	if err != nil {
		return Account{}, fmt.Errorf("account %d: %w", id, err)
	}
	return a, nil
}

// adjustAccount moves delta into an account, refusing to leave int64's range.
func (l *Ledger) adjustAccount(ctx context.Context, tx pgx.Tx, account Account, delta Amount) error {
	if _, err := account.Balance.Add(delta); err != nil {
		return fmt.Errorf("account %d: %w", account.ID, err)
	}
	_, err := tx.Exec(ctx, `UPDATE accounts SET balance = balance + $1 WHERE id = $2`, delta, account.ID)
	return err
}

// adjustWallet moves delta into the wallet. Only money entering or leaving the wallet touches its
// row; internal transfers do not, so concurrent transfers do not all collide on it.
func (l *Ledger) adjustWallet(ctx context.Context, tx pgx.Tx, delta Amount) error {
	var wallet Amount
	if err := tx.QueryRow(ctx, `SELECT balance FROM wallets WHERE id = $1 FOR UPDATE`, l.walletID).Scan(&wallet); err != nil {
		return err
	}
	if _, err := wallet.Add(delta); err != nil {
		return fmt.Errorf("wallet: %w", err)
	}
	_, err := tx.Exec(ctx, `UPDATE wallets SET balance = balance + $1 WHERE id = $2`, delta, l.walletID)
	return err
}

// adjust moves delta into an account and, with it, the wallet.
func (l *Ledger) adjust(ctx context.Context, tx pgx.Tx, account Account, delta Amount) error {
	if err := l.adjustAccount(ctx, tx, account, delta); err != nil {
		return err
	}
	return l.adjustWallet(ctx, tx, delta)
}

// existingByKey returns the transaction an idempotency key already created, if any.
func (l *Ledger) existingByKey(ctx context.Context, tx queryRower, from int64, key string) (*Transaction, error) {
	if key == "" {
		return nil, nil
	}
	t, err := l.scanTransaction(tx.QueryRow(ctx, transactionSelect+` WHERE t.sending_account_id = $1 AND t.idempotency_key = $2`, from, key))
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	return &t, err
}

// SendInternal moves amount between two accounts of the asset.
//
// The transfer is one statement in its own transaction (see transfer), not a SERIALIZABLE
// transaction of several: under SERIALIZABLE a transfer failed whenever another had touched one
// of its accounts since it began, and with many accounts in use the retries, not the work, set
// the rate. Everything it decides on is in the two account rows, which it locks before reading.
func (l *Ledger) SendInternal(ctx context.Context, from, to int64, amount Amount, idempotencyKey string) (Transaction, error) {
	if amount <= 0 {
		return Transaction{}, ErrInvalidAmount
	}
	if from == to {
		return Transaction{}, ErrSameAccount
	}
	var out Transaction
	err := withRetry(ctx, l.opts.Retry, func() error {
		if prev, err := l.existingByKey(ctx, l.pool, from, idempotencyKey); err != nil || prev != nil {
			if prev != nil {
				if prev.Kind != "internal" || prev.Amount != amount || prev.ReceivingAccountID == nil || *prev.ReceivingAccountID != to {
					return ErrIdempotencyConflict
				}
				out = *prev
				out.Replayed = true
			}
			return err
		}
		var err error
		out, err = l.transfer(ctx, l.pool, from, to, amount, idempotencyKey)
		return err
	})
	if err != nil {
		return Transaction{}, fmt.Errorf("internal send of %s from account %d to %d: %w", amount.Format(l.coin.Decimals), from, to, err)
	}
	if !out.Replayed {
		l.eventsWritten() // the transfer's statement, on the pool, committed its event
	}
	return out, nil
}

// transfer books an internal transfer, with its txupdate event, in one statement: on a pool
// that is a transaction of its own, at the server's isolation level (READ COMMITTED unless the
// database says otherwise).
//
// The statement locks both account rows in id order (two opposite transfers cannot deadlock) and
// moves money only if the locked rows, which are their latest committed versions, allow it. A
// retry of the same request that ran meanwhile is not visible to the statement's snapshot, but
// the unique idempotency index refuses the second row; that and a refusal the accounts no longer
// explain come back as errRaced, to be tried again from the idempotency lookup.
func (l *Ledger) transfer(ctx context.Context, q queryRower, from, to int64, amount Amount, key string) (Transaction, error) {
	// What transactionSelect reads back for a new internal transfer; the id and created_at come
	// from the database.
	t := Transaction{Kind: "internal", State: "done", SendingAccountID: &from, ReceivingAccountID: &to,
		Amount: amount, Confirmations: -1, IdempotencyKey: key}
	payload := l.txUpdatePayload(t, 0, DepositUpdate{})
	payload.FromAccountID = t.SendingAccountID
	body, err := json.Marshal(payload)
	if err != nil {
		return Transaction{}, fmt.Errorf("encoding txupdate event: %w", err)
	}
	// The event carries the transaction's id, which the statement draws: the event's text goes
	// in as the parts before and after it ($3 and $5). Drawing the id first took a round trip of
	// its own, a quarter of a transfer's time for a client making one transfer after another.
	before, after, err := aroundTransactionID(string(body))
	if err != nil {
		return Transaction{}, err
	}
	eventID, err := newEventID()
	if err != nil {
		return Transaction{}, err
	}
	// $1, $2 and $4 are outboxWrite's; the event's id is $11.
	args := []any{l.assetID, "txupdate", before, l.eventTargets(), after, l.walletID, from, to, amount, key, eventID}
	// ok has a row only when the transfer is allowed; every write reads it, so none runs before
	// both rows are locked, and none runs at all when it is refused.
	err = q.QueryRow(ctx, `WITH drawn AS MATERIALIZED (SELECT nextval('transactions_id_seq') AS id),
		locked AS MATERIALIZED (
			SELECT id, kind, balance FROM accounts WHERE id IN ($7, $8) AND wallet_id = $6 ORDER BY id FOR UPDATE),
		ok AS MATERIALIZED (
			SELECT FROM locked s, locked r WHERE s.id = $7 AND r.id = $8 AND s.kind <> 'network_fees'
				AND s.balance >= $9 AND r.balance <= 9223372036854775807 - $9),
		debit AS (UPDATE accounts SET balance = balance - $9 FROM ok WHERE accounts.id = $7),
		credit AS (UPDATE accounts SET balance = balance + $9 FROM ok WHERE accounts.id = $8),
		t AS (INSERT INTO transactions (id, asset_id, wallet_id, kind, state, sending_account_id, receiving_account_id, amount, idempotency_key)
			SELECT drawn.id, $1, $6, 'internal', 'done', $7, $8, $9, nullif($10, '') FROM ok, drawn RETURNING id, created_at),
		gate AS (SELECT FROM t),
		`+outboxWriteHead+`(SELECT $3::text || t.id || $5::text AS p, $11::uuid AS id, 1 AS n FROM t) AS u`+outboxWriteTail+`
		SELECT id, created_at FROM t`, args...).Scan(&t.ID, &t.CreatedAt)
	var pgErr *pgconn.PgError
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return Transaction{}, l.transferRefused(ctx, q, from, to, amount)
	case errors.As(err, &pgErr) && pgErr.Code == "23505" && pgErr.ConstraintName == "transactions_idempotency":
		return Transaction{}, fmt.Errorf("idempotency key %q used meanwhile: %w", key, errRaced)
	case err == nil:
		noteEvents(q)
	}
	return t, err
}

// aroundTransactionID splits an event's JSON text, encoded with transaction_id 0, into what
// comes before and after that 0.
func aroundTransactionID(body string) (before, after string, err error) {
	const key = `"transaction_id":0`
	// An unescaped quote only delimits strings, so the key's text can be nothing but that key.
	i := strings.Index(body, key)
	if i < 0 || strings.Contains(body[i+len(key):], key) {
		return "", "", fmt.Errorf("event %s: no single transaction_id to fill in", body)
	}
	return body[:i+len(key)-1], body[i+len(key):], nil
}

// cannotPay says why an account cannot send amount, or nil when it can.
func (l *Ledger) cannotPay(sender Account, amount Amount) error {
	if sender.Kind == "network_fees" {
		return l.feeAccountError(sender.ID)
	}
	if sender.Balance < amount {
		return fmt.Errorf("account %d has %s: %w", sender.ID, sender.Balance.Format(l.coin.Decimals), ErrInsufficientBalance)
	}
	return nil
}

// transferRefused says why transfer moved nothing.
func (l *Ledger) transferRefused(ctx context.Context, q queryRower, from, to int64, amount Amount) error {
	accounts := map[int64]Account{}
	for _, id := range []int64{from, to} {
		a, err := scanAccount(q.QueryRow(ctx, `SELECT id, name, kind, balance FROM accounts WHERE id = $1 AND wallet_id = $2`, id, l.walletID))
		if err != nil {
			return fmt.Errorf("account %d: %w", id, err)
		}
		accounts[id] = a
	}
	if err := l.cannotPay(accounts[from], amount); err != nil {
		return err
	}
	if _, err := accounts[to].Balance.Add(amount); err != nil {
		return fmt.Errorf("account %d: %w", to, err)
	}
	return fmt.Errorf("accounts %d and %d changed while the transfer was refused: %w", from, to, errRaced)
}

// transactionEvent writes the txupdate event of a ledger transaction that has no network side
// of its own to report (an internal transfer, a cancelled or refused send, a fee).
func (l *Ledger) transactionEvent(ctx context.Context, tx pgx.Tx, id int64) error {
	t, err := l.scanTransaction(tx.QueryRow(ctx, transactionSelect+` WHERE t.id = $1`, id))
	if err != nil {
		return err
	}
	p := l.txUpdatePayload(t, 0, DepositUpdate{})
	if t.Kind != "deposit" && t.Kind != "internal" {
		p.AccountID = t.SendingAccountID
	}
	if t.Kind == "internal" {
		p.FromAccountID = t.SendingAccountID
	}
	return l.writeEvent(ctx, tx, "txupdate", p)
}

// SendExternal queues a send to an address outside the ledger. The amount is reserved at once and
// the send stays pending until the broadcaster sends it, however long the backend is down. A send
// to one of our own receiving addresses is booked as an internal transfer unless forceExternal.
func (l *Ledger) SendExternal(ctx context.Context, from int64, address string, amount Amount, idempotencyKey string, forceExternal bool) (Transaction, error) {
	if amount <= 0 {
		return Transaction{}, ErrInvalidAmount
	}
	if err := l.opts.ValidateAddress(address); err != nil {
		return Transaction{}, fmt.Errorf("send to %q: %w: %v", address, ErrInvalidAddress, err)
	}
	var out Transaction
	err := l.inTx(ctx, l.opts.Retry, func(tx pgx.Tx) error {
		if prev, err := l.existingByKey(ctx, tx, from, idempotencyKey); err != nil || prev != nil {
			if prev != nil {
				if prev.Amount != amount || (prev.Kind == "outgoing" && prev.Address != address) {
					return ErrIdempotencyConflict
				}
				out = *prev
				out.Replayed = true
			}
			return err
		}
		var addrID int64
		var owner *int64
		err := tx.QueryRow(ctx, `SELECT id, account_id FROM addresses WHERE asset_id = $1 AND address = $2`, l.assetID, address).Scan(&addrID, &owner)
		if errors.Is(err, pgx.ErrNoRows) {
			err = tx.QueryRow(ctx, `INSERT INTO addresses (asset_id, wallet_id, address) VALUES ($1, $2, $3) RETURNING id`, l.assetID, l.walletID, address).Scan(&addrID)
		}
		if err != nil {
			return err
		}
		if owner != nil && !forceExternal {
			if *owner == from {
				return ErrSameAccount
			}
			// transfer returns the transaction as transactionSelect would read it back.
			out, err = l.transfer(ctx, tx, from, *owner, amount, idempotencyKey)
			return err
		}
		sender, err := l.lockAccount(ctx, tx, from)
		if err != nil {
			return err
		}
		if err := l.cannotPay(sender, amount); err != nil {
			return err
		}
		if err := l.adjust(ctx, tx, sender, -amount); err != nil {
			return err
		}
		var id int64
		if err := tx.QueryRow(ctx, `INSERT INTO transactions (asset_id, wallet_id, kind, state, sending_account_id, address_id, amount, idempotency_key)
			VALUES ($1, $2, 'outgoing', 'pending', $3, $4, $5, nullif($6, '')) RETURNING id`,
			l.assetID, l.walletID, from, addrID, amount, idempotencyKey).Scan(&id); err != nil {
			return err
		}
		out, err = l.scanTransaction(tx.QueryRow(ctx, transactionSelect+` WHERE t.id = $1`, id))
		return err
	})
	if err != nil {
		return Transaction{}, fmt.Errorf("send of %s from account %d to %s: %w", amount.Format(l.coin.Decimals), from, address, err)
	}
	return out, nil
}

const transactionSelect = transactionColumns + ` FROM transactions t ` + transactionJoins

// transactionColumns and transactionJoins are transactionSelect around its FROM, for reading
// rows named t that come from elsewhere (an UPDATE's RETURNING).
//
// The address, network transaction and open broadcast of each row are looked up by key, one row
// at a time: the ledger reads at most a page of transactions (1,000), never the whole table.
// As plain joins, the planner read 1,000 rows by hashing the whole of a table they point into:
// reading back a catch-up's 1,000 deposits on a ledger with 100,000 past deposits seq-scanned
// all of network_transactions (13 of the statement's 15 ms, against 1 ms of lookups), so every
// booking slowed as the ledger aged. LIMIT 1 keeps PostgreSQL from turning the lateral lookups
// back into plain joins.
const (
	transactionColumns = `SELECT t.id, t.kind, t.state, t.sending_account_id, t.receiving_account_id, coalesce(a.address, ''),
	t.amount, coalesce(n.txid, ''), t.output_index, coalesce(n.confirmations, -1), t.credited, t.processed_at,
	coalesce(t.idempotency_key, ''), t.created_at, coalesce(b.last_error, ''), coalesce(t.reason, '')`
	transactionJoins = addressJoin + `
	LEFT JOIN LATERAL (SELECT txid, confirmations FROM network_transactions WHERE id = t.network_transaction_id LIMIT 1) n ON true
	LEFT JOIN LATERAL (SELECT last_error FROM broadcasts WHERE id = t.broadcast_id AND state = 'opened' LIMIT 1) b ON true`
)

// addressJoin is transactionJoins' lookup of each row's address, which closedSendJoins shares.
const addressJoin = `LEFT JOIN LATERAL (SELECT address FROM addresses WHERE id = t.address_id LIMIT 1) a ON true`

// scanTransaction reads a row of transactionColumns; extra receives the columns a query selects
// after them.
func (l *Ledger) scanTransaction(row pgx.Row, extra ...any) (Transaction, error) {
	var t Transaction
	err := row.Scan(append([]any{&t.ID, &t.Kind, &t.State, &t.SendingAccountID, &t.ReceivingAccountID, &t.Address, &t.Amount, &t.TxID,
		&t.OutputIndex, &t.Confirmations, &t.Credited, &t.ProcessedAt, &t.IdempotencyKey, &t.CreatedAt, &t.Note, &t.Reason}, extra...)...)
	if errors.Is(err, pgx.ErrNoRows) {
		return Transaction{}, ErrNotFound
	}
	return t, err
}

// collectTransactions reads every row of rows with scanTransaction.
func (l *Ledger) collectTransactions(rows pgx.Rows) ([]Transaction, error) {
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Transaction, error) { return l.scanTransaction(r) })
}

// Transaction returns one transaction of this asset.
func (l *Ledger) Transaction(ctx context.Context, id int64) (Transaction, error) {
	t, err := l.scanTransaction(l.pool.QueryRow(ctx, transactionSelect+` WHERE t.id = $1 AND t.asset_id = $2`, id, l.assetID))
	if err != nil {
		return Transaction{}, fmt.Errorf("transaction %d: %w", id, err)
	}
	return t, nil
}

// MarkProcessed records that the application has handled a deposit. It changes nothing else:
// confirmation updates keep arriving afterwards (the original library broke them).
func (l *Ledger) MarkProcessed(ctx context.Context, id int64) (Transaction, error) {
	var out Transaction
	err := l.inTx(ctx, l.opts.Retry, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE transactions SET processed_at = coalesce(processed_at, now()), updated_at = now()
			WHERE id = $1 AND asset_id = $2 AND kind = 'deposit'`, id, l.assetID)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("deposit %d: %w", id, ErrNotFound)
		}
		out, err = l.scanTransaction(tx.QueryRow(ctx, transactionSelect+` WHERE t.id = $1`, id))
		return err
	})
	return out, err
}

// TransactionFilter selects transactions; zero fields do not filter.
type TransactionFilter struct {
	AccountID int64
	Kind      string
	State     string
	// Before: only transactions with a lower id, for the page after one that ended there.
	Before int64
	Limit  int
}

// Kinds and States are the values a transaction's kind and state take.
var (
	Kinds  = []string{"deposit", "outgoing", "internal", "network_fee"}
	States = []string{"pending", "broadcasting", "broadcasted", "confirmed", "failed", "needs_review", "cancelled",
		"incoming", "credited", "reverted", "conflicted", "done"}
)

// Transactions lists the asset's transactions, newest first.
//
// The statement names only the filters given, so that each combination is planned on its own
// (one catch-all statement, "$2 = 0 OR ...", had one generic plan for all). An account's
// transactions come from the indexes of the accounts a transaction is sent from and received
// by, in id order (migration 14), and the sends in a send's state from transactions_pending:
// each reads the page it returns. Otherwise the statement walks the primary key back from the
// newest transaction, which reads little more than the page unless the filter is rare, or the
// database holds other assets' newer transactions (migration 14 says why no index serves these).
func (l *Ledger) Transactions(ctx context.Context, f TransactionFilter) ([]Transaction, error) {
	if sendState(f.State) && f.Kind != "" && f.Kind != "outgoing" {
		return nil, nil // only sends are in the state
	}
	query, args := l.transactionsQuery(f)
	rows, err := l.pool.Query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("listing transactions: %w", err)
	}
	return l.collectTransactions(rows)
}

// transactionsQuery is Transactions' statement and its arguments. A statement with a send's
// state lists the asset's sends in it, whatever other kind it names (Transactions answers for
// those).
func (l *Ledger) transactionsQuery(f TransactionFilter) (string, []any) {
	if f.Limit <= 0 || f.Limit > 1000 {
		f.Limit = 100
	}
	args := []any{l.assetID, f.Limit}
	arg := func(v any) string {
		args = append(args, v)
		return fmt.Sprintf("$%d", len(args))
	}
	where := "t.asset_id = $1"
	if sendState(f.State) {
		// Only sends are in these states. Said outright, with the state as a literal (one of
		// three) and the wallet, it matches transactions_pending's predicate in a generic plan
		// too.
		where += " AND t.kind = 'outgoing' AND t.state = '" + f.State + "' AND t.wallet_id = " + arg(l.walletID)
	} else {
		if f.Kind != "" {
			where += " AND t.kind = " + arg(f.Kind)
		}
		if f.State != "" {
			where += " AND t.state = " + arg(f.State)
		}
	}
	if f.Before > 0 {
		// Every index the listing reads is in id order, so a later page starts where the one
		// before ended rather than reading past it.
		where += " AND t.id < " + arg(f.Before)
	}
	from := "transactions t"
	if f.AccountID != 0 {
		// A page from each of the two accounts' indexes. No transaction is both sent from and
		// received by one account (internal transfers are between two), so the two pages never
		// hold the same transaction.
		acct := arg(f.AccountID)
		from = fmt.Sprintf(`((SELECT * FROM transactions t WHERE t.sending_account_id = %[1]s AND %[2]s ORDER BY t.id DESC LIMIT $2)
			UNION ALL (SELECT * FROM transactions t WHERE t.receiving_account_id = %[1]s AND %[2]s ORDER BY t.id DESC LIMIT $2)) t`, acct, where)
		where = "true"
	}
	return transactionColumns + ` FROM ` + from + ` ` + transactionJoins + `
		WHERE ` + where + ` ORDER BY t.id DESC LIMIT $2`, args
}

// sendState: only a send (kind outgoing) is in this state, and transactions_pending holds it.
func sendState(state string) bool {
	switch state {
	case "pending", "broadcasting", "needs_review":
		return true
	}
	return false
}
