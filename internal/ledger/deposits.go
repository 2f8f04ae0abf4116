package ledger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

// Observation is what the trusted backend says about one output of a wallet transaction.
type Observation struct {
	TxID    string
	Output  int32
	Address string
	Amount  Amount
	// Confirmations: -1 when the backend no longer has the transaction (reorganised away or
	// double-spent), 0 when it is unconfirmed.
	Confirmations int32
	BlockHash     string
	BlockHeight   int64
	// Conflicted: the transaction was double-spent on the best chain. The deposit is taken back
	// and is never credited again.
	Conflicted bool
}

// DepositUpdate says what booking an observation changed.
type DepositUpdate struct {
	Transaction Transaction
	// New: the deposit was not known before.
	New bool
	// Changed: anything changed (a new deposit, confirmations, credit); false for a repeat.
	Changed bool
	// Credited: the deposit reached the threshold now and its amount went to the account.
	Credited bool
	// Uncredited: a credited deposit lost confirmations (reorg, double spend) and was taken back.
	Uncredited bool
	// Ignored: the output pays an address the ledger did not hand out (RecordDeposits only).
	Ignored bool
}

// RecordDeposit books what the backend reports about an output paying one of our receiving
// addresses. It is idempotent: the same observation twice changes nothing the second time. The
// deposit is credited once, when confirmations reach the asset's threshold, and taken back if a
// reorganisation lowers them again. Every change writes a txupdate event to the outbox in the same
// transaction. An address the ledger did not hand out is ErrNotOurAddress.
func (l *Ledger) RecordDeposit(ctx context.Context, o Observation) (DepositUpdate, error) {
	ups, err := l.RecordDeposits(ctx, []Observation{o})
	if err != nil {
		return DepositUpdate{}, err
	}
	if ups[0].Ignored {
		return DepositUpdate{}, fmt.Errorf("booking deposit %s:%d: %s: %w", o.TxID, o.Output, o.Address, ErrNotOurAddress)
	}
	return ups[0], nil
}

// depositBatch bounds the outputs one booking transaction takes. A catch-up after a busy hour
// books thousands; in transactions of this size a serialization retry repeats a bounded amount of
// work, and the statements stay a few hundred kilobytes.
const depositBatch = 1000

// RecordDeposits books many observations as RecordDeposit does, with the same outcome as booking
// them one by one in order, but in one transaction per depositBatch outputs and a fixed number of
// statements each, whatever the number of outputs: a catch-up of a thousand deposits costs a few
// round trips and one commit rather than a thousand commits.
//
// It returns one update per observation, in order. An observation of an address the ledger did
// not hand out (change of our own sends, another wallet's address) is Ignored. When an
// observation contradicts what the ledger booked (ErrInconsistent), its batch is booked again one
// observation at a time, so the others are not held back by it, and the error is returned after
// every batch is booked.
func (l *Ledger) RecordDeposits(ctx context.Context, obs []Observation) ([]DepositUpdate, error) {
	for _, o := range obs {
		if o.TxID == "" || o.Output < 0 {
			return nil, fmt.Errorf("deposit observation needs a txid and an output index, got %q:%d", o.TxID, o.Output)
		}
		if o.Amount <= 0 {
			return nil, fmt.Errorf("deposit %s:%d: %w", o.TxID, o.Output, ErrInvalidAmount)
		}
	}
	out := make([]DepositUpdate, len(obs))
	var errs []error
	for start := 0; start < len(obs); start += depositBatch {
		end := min(start+depositBatch, len(obs))
		ups, err := l.recordDeposits(ctx, obs[start:end])
		if err == nil {
			copy(out[start:], ups)
			continue
		}
		if !errors.Is(err, ErrInconsistent) || end-start == 1 {
			return out, errors.Join(append(errs, err)...)
		}
		for i := start; i < end; i++ {
			ups, err := l.recordDeposits(ctx, obs[i:i+1])
			if errors.Is(err, ErrInconsistent) {
				errs = append(errs, err)
				continue
			}
			if err != nil {
				return out, errors.Join(append(errs, err)...)
			}
			out[i] = ups[0]
		}
	}
	return out, errors.Join(errs...)
}

// booking is one observation on its way through recordDeposits.
type booking struct {
	conf     int32 // capped at the tracking horizon; -1 for a conflicted transaction
	addrID   int64
	ntID     int64
	oldConf  int32
	txID     int64
	amount   Amount
	receiver int64
	credited bool
	state    string
	newState string
	up       DepositUpdate
}

// outputKey is a deposit output as booked; reportKey as the backend names it.
type outputKey struct {
	nt  int64
	out int32
}

type reportKey struct {
	txid string
	out  int32
}

// recordDeposits books obs in one transaction (see RecordDeposits).
//
// It first reads, without writing or locking anything, whether booking obs would change the
// ledger, by the same rules as the booking itself; when every output is already booked as
// reported (a rescan going over what it booked before, a poll repeating a notification), the
// transaction commits having only read. Otherwise it books, locking what it changes.
func (l *Ledger) recordDeposits(ctx context.Context, obs []Observation) ([]DepositUpdate, error) {
	var out []DepositUpdate
	err := l.inTx(ctx, l.opts.Retry, func(tx pgx.Tx) error {
		known, err := l.depositAddresses(ctx, tx, obs)
		if err != nil {
			return err
		}
		out, err = l.bookDeposits(ctx, tx, obs, known, false)
		if errors.Is(err, errWouldWrite) {
			out, err = l.bookDeposits(ctx, tx, obs, known, true)
		}
		return err
	})
	if err != nil {
		if len(obs) == 1 {
			return nil, fmt.Errorf("booking deposit %s:%d: %w", obs[0].TxID, obs[0].Output, err)
		}
		return nil, fmt.Errorf("booking %d deposits: %w", len(obs), err)
	}
	return out, nil
}

// customPlan runs a statement unnamed, so PostgreSQL plans it for the values it is given rather
// than reusing a generic plan, which pgx's statement cache would get after five runs. For
// `column = ANY($n)` with an array of hundreds of values a generic plan cannot hash the array, and
// compares every row it reads with every value, a cost that grows with the table. Timed with
// scratch benchmarks (not committed): the addresses of a 500-output batch took 3-4 ms generic
// against 1.2 ms planned for the values; booking 500 new deposits at a time over a table growing
// to 20,000 transactions took 213-236 ms a batch generic against 84-93 ms. The planning costs a
// fraction of a millisecond.
const customPlan = pgx.QueryExecModeCacheDescribe

// addrRow is an address the ledger handed out, and its account.
type addrRow struct {
	id      int64
	account *int64
}

// depositAddresses reads which of the observed addresses are the ledger's.
func (l *Ledger) depositAddresses(ctx context.Context, tx pgx.Tx, obs []Observation) (map[string]addrRow, error) {
	addrs := make([]string, 0, len(obs))
	for _, o := range obs {
		addrs = append(addrs, o.Address)
	}
	known := make(map[string]addrRow, len(obs))
	// Each address is looked up by its key. With `address = ANY($2)`, PostgreSQL costed a
	// thousand index probes above reading the whole table, and from about 100,000 addresses on
	// it did: 9 ms a catch-up on a ledger with 100,000 past deposits, against about 1 ms of
	// probes. LIMIT 1 keeps the lateral lookup from being turned back into a join.
	rows, err := tx.Query(ctx, `SELECT a.address, a.id, a.account_id FROM unnest($2::text[]) AS u(address)
		CROSS JOIN LATERAL (SELECT address, id, account_id FROM addresses WHERE asset_id = $1 AND address = u.address LIMIT 1) a`,
		customPlan, l.assetID, addrs)
	if err != nil {
		return nil, err
	}
	var (
		a  string
		ar addrRow
	)
	if _, err := pgx.ForEachRow(rows, []any{&a, &ar.id, &ar.account}, func() error { known[a] = ar; return nil }); err != nil {
		return nil, err
	}
	return known, nil
}

// transactionsByID reads transactions as transactionSelect does, by id.
func (l *Ledger) transactionsByID(ctx context.Context, tx pgx.Tx, ids []int64) (map[int64]Transaction, error) {
	rows, err := tx.Query(ctx, transactionSelect+` WHERE t.id = ANY($1)`, ids)
	if err != nil {
		return nil, err
	}
	txs, err := l.collectTransactions(rows)
	out := make(map[int64]Transaction, len(txs))
	for _, t := range txs {
		out[t.ID] = t
	}
	return out, err
}

// errWouldWrite: a read-only bookDeposits found that booking would change the ledger.
var errWouldWrite = errors.New("booking would change the ledger")

// bookDeposits books obs, whose addresses the ledger knows as known. With write false it only
// reads and returns errWouldWrite as soon as booking would change anything; the rules that
// decide are the same code either way.
func (l *Ledger) bookDeposits(ctx context.Context, tx pgx.Tx, obs []Observation, known map[string]addrRow, write bool) ([]DepositUpdate, error) {
	bk := make([]booking, len(obs))

	// The last observation of an output and of a transaction wins, as when booked one by one.
	ours := make([]int, 0, len(obs))
	lastOfOutput := make(map[reportKey]int, len(obs))
	lastOfTx := make(map[string]int, len(obs))
	for i, o := range obs {
		ar, ok := known[o.Address]
		if !ok || ar.account == nil {
			bk[i].up.Ignored = true
			continue
		}
		bk[i].addrID, bk[i].receiver = ar.id, *ar.account
		bk[i].conf = min(o.Confirmations, l.opts.MaxTrackedConfirmations)
		if o.Conflicted {
			bk[i].conf = -1
		}
		lastOfOutput[reportKey{o.TxID, o.Output}] = i
		lastOfTx[o.TxID] = i
		ours = append(ours, i)
	}
	if len(ours) == 0 {
		return updates(bk), nil
	}

	// Network transactions, in txid order so concurrent bookings lock them in the same order.
	txids := make([]string, 0, len(lastOfTx))
	for txid := range lastOfTx {
		txids = append(txids, txid)
	}
	slices.Sort(txids)
	confs, hashes, heights := make([]int32, len(txids)), make([]string, len(txids)), make([]int64, len(txids))
	for j, txid := range txids {
		i := lastOfTx[txid]
		confs[j], hashes[j], heights[j] = bk[i].conf, obs[i].BlockHash, obs[i].BlockHeight
	}
	type ntRow struct {
		id      int64
		oldConf int32
	}
	nts := make(map[string]ntRow, len(txids))
	var (
		rows pgx.Rows
		err  error
	)
	if write {
		// The upsert also locks the rows it finds (a no-op update), in txid order.
		rows, err = tx.Query(ctx, `INSERT INTO network_transactions (asset_id, kind, txid, confirmations, block_hash, block_height)
			SELECT $1, 'deposit', u.txid, u.conf, nullif(u.hash, ''), nullif(u.height, 0)
			FROM unnest($2::text[], $3::integer[], $4::text[], $5::bigint[]) AS u(txid, conf, hash, height)
			ON CONFLICT (asset_id, kind, txid) DO UPDATE SET txid = excluded.txid
			RETURNING txid, id, confirmations`, l.assetID, txids, confs, hashes, heights)
	} else {
		rows, err = tx.Query(ctx, `SELECT txid, id, confirmations FROM network_transactions
			WHERE asset_id = $1 AND kind = 'deposit' AND txid = ANY($2)`, customPlan, l.assetID, txids)
	}
	if err != nil {
		return nil, err
	}
	var (
		txid string
		nr   ntRow
	)
	if _, err := pgx.ForEachRow(rows, []any{&txid, &nr.id, &nr.oldConf}, func() error { nts[txid] = nr; return nil }); err != nil {
		return nil, err
	}
	if !write && len(nts) < len(txids) {
		return nil, errWouldWrite
	}
	var chIDs []int64
	var chConfs []int32
	var chHashes []string
	var chHeights []int64
	for j, txid := range txids {
		if nr := nts[txid]; nr.oldConf != confs[j] {
			chIDs, chConfs, chHashes, chHeights = append(chIDs, nr.id), append(chConfs, confs[j]), append(chHashes, hashes[j]), append(chHeights, heights[j])
		}
	}
	if len(chIDs) > 0 && !write {
		return nil, errWouldWrite
	}
	// Each network transaction's confirmations as the ledger has them after this statement.
	confNow := make(map[int64]int32, len(nts))
	for _, nr := range nts {
		confNow[nr.id] = nr.oldConf
	}
	if len(chIDs) > 0 {
		// A conflicted transaction keeps the -1 it was given (see the state check below).
		rows, err := tx.Query(ctx, `UPDATE network_transactions n SET confirmations = u.conf, block_hash = nullif(u.hash, ''),
				block_height = nullif(u.height, 0), updated_at = now()
			FROM unnest($1::bigint[], $2::integer[], $3::text[], $4::bigint[]) AS u(id, conf, hash, height)
			WHERE n.id = u.id AND NOT EXISTS (SELECT 1 FROM transactions t WHERE t.network_transaction_id = u.id AND t.state = 'conflicted')
			RETURNING n.id, n.confirmations`,
			chIDs, chConfs, chHashes, chHeights)
		if err != nil {
			return nil, err
		}
		var (
			id   int64
			conf int32
		)
		if _, err := pgx.ForEachRow(rows, []any{&id, &conf}, func() error { confNow[id] = conf; return nil }); err != nil {
			return nil, err
		}
	}

	// The deposits already booked: the outputs to look for.
	keyNT, keyOut := make([]int64, 0, len(ours)), make([]int32, 0, len(ours))
	for _, i := range ours {
		nr := nts[obs[i].TxID]
		bk[i].ntID, bk[i].oldConf = nr.id, nr.oldConf
		keyNT, keyOut = append(keyNT, nr.id), append(keyOut, obs[i].Output)
	}
	// Each booked output's row id and address id; the rest of the row is in asBooked.
	type txRow struct {
		id     int64
		addrID *int64
	}
	booked := make(map[outputKey]txRow, len(ours))
	var k outputKey
	// The deposits already booked, read in full, and locked in id order to write: they are what
	// the booking returns, with what it changes, so they are not read a second time at the end.
	// Only the transactions table: the address, txid and confirmations that transactionSelect
	// joins in are what depositAddresses and the network transactions above have just read and
	// written, and a deposit is in no broadcast. With the joins, PostgreSQL probed three more
	// indexes per deposit (one of them the open broadcasts', for every row): for a rescan's 500
	// booked deposits 5-7 ms of a second pass's 20 ms in the ledger, against under 1 ms without
	// (auto_explain on the rescan benchmark); the read-back after a write was 5.6 ms of an
	// intake's 1,000 new deposits (pg_stat_statements on the intake benchmark).
	addrOf := make(map[int64]string, len(known))
	for a, ar := range known {
		addrOf[ar.id] = a
	}
	txidOf := make(map[int64]string, len(nts))
	for txid, nr := range nts {
		txidOf[nr.id] = txid
	}
	read := `SELECT t.id, t.kind, t.state, t.sending_account_id, t.receiving_account_id, t.amount, t.output_index,
			t.credited, t.processed_at, coalesce(t.idempotency_key, ''), t.created_at, coalesce(t.reason, ''),
			t.network_transaction_id, t.address_id, t.broadcast_id IS NOT NULL
		FROM transactions t JOIN unnest($1::bigint[], $2::integer[]) AS k(nt, out) ON t.network_transaction_id = k.nt AND t.output_index = k.out
		WHERE t.kind = 'deposit'`
	if write {
		read += ` ORDER BY t.id FOR UPDATE OF t`
	}
	rows, err = tx.Query(ctx, read, keyNT, keyOut)
	if err != nil {
		return nil, err
	}
	asBooked := make(map[int64]Transaction, len(ours))
	// readBack: a row this read cannot fill in alone (a deposit in a broadcast, which is never
	// booked so, would show its broadcast's note); the written rows are then read in full.
	readBack := false
	var (
		t           Transaction
		addrID      *int64
		inBroadcast bool
	)
	if _, err := pgx.ForEachRow(rows, []any{&t.ID, &t.Kind, &t.State, &t.SendingAccountID, &t.ReceivingAccountID, &t.Amount, &t.OutputIndex,
		&t.Credited, &t.ProcessedAt, &t.IdempotencyKey, &t.CreatedAt, &t.Reason, &k.nt, &addrID, &inBroadcast}, func() error {
		if t.ReceivingAccountID == nil || t.OutputIndex == nil {
			return fmt.Errorf("deposit %d has no receiving account or output", t.ID)
		}
		if inBroadcast {
			if !write {
				return errWouldWrite // the booking reads it back in full
			}
			readBack = true
		}
		t.TxID, t.Confirmations, t.Address = txidOf[k.nt], confNow[k.nt], ""
		if addrID != nil {
			t.Address = addrOf[*addrID]
		}
		booked[outputKey{k.nt, *t.OutputIndex}] = txRow{id: t.ID, addrID: addrID}
		asBooked[t.ID] = t
		// Fresh pointers for the next row: the row just read keeps these.
		t, addrID = Transaction{}, nil
		return nil
	}); err != nil {
		return nil, err
	}

	// What each output's state becomes, and what that moves between accounts.
	deltas := map[int64]Amount{}
	var newIdx []int
	var chgIDs []int64
	var chgStates []string
	var chgCredited []bool
	for _, i := range ours {
		o, b := obs[i], &bk[i]
		if lastOfOutput[reportKey{o.TxID, o.Output}] != i {
			continue // an earlier report of an output booked again below; it gets the final result
		}
		key := outputKey{b.ntID, o.Output}
		row, ok := booked[key]
		was := asBooked[row.id]
		switch {
		case !ok:
			b.up.New = true
			b.credited, b.state, b.amount = false, "incoming", o.Amount
		case was.Amount != o.Amount || row.addrID == nil || *row.addrID != b.addrID:
			// An output of a transaction cannot change; a backend saying so is wrong, and the
			// ledger keeps what it booked until a human looks.
			return nil, fmt.Errorf("deposit %s:%d was booked as %s to %s, the backend now reports %s to %s: %w",
				o.TxID, o.Output, was.Amount.Format(l.coin.Decimals), o.Address, o.Amount.Format(l.coin.Decimals), o.Address, ErrInconsistent)
		default:
			b.txID, b.amount, b.receiver, b.credited, b.state = row.id, was.Amount, *was.ReceivingAccountID, was.Credited, was.State
		}
		b.newState = b.state
		if b.state == "conflicted" {
			// Final: a double spend on the best chain is not undone by what a wallet says later.
			continue
		}
		want := b.conf >= l.opts.Confirmations && !o.Conflicted
		switch {
		case want && !b.credited:
			deltas[b.receiver] += b.amount
			b.credited, b.up.Credited, b.newState = true, true, "credited"
		case !want && b.credited:
			deltas[b.receiver] -= b.amount
			b.credited, b.up.Uncredited = false, true
			b.newState = "incoming"
			if b.conf < 0 {
				b.newState = "reverted"
			}
			if o.Conflicted {
				b.newState = "conflicted"
			}
		case o.Conflicted:
			b.newState = "conflicted"
		case !want && b.conf < 0:
			b.newState = "reverted"
		case !want:
			b.newState = "incoming"
		}
		b.up.Changed = b.up.New || b.oldConf != b.conf || b.newState != b.state
		switch {
		case b.up.New:
			newIdx = append(newIdx, i)
		case b.newState != b.state || b.up.Credited || b.up.Uncredited:
			chgIDs, chgStates, chgCredited = append(chgIDs, b.txID), append(chgStates, b.newState), append(chgCredited, b.credited)
		}
	}

	if !write {
		for _, i := range ours {
			if bk[i].up.Changed {
				return nil, errWouldWrite
			}
		}
		if len(newIdx) > 0 || len(chgIDs) > 0 || len(deltas) > 0 {
			return nil, errWouldWrite
		}
	}
	if len(newIdx) > 0 {
		n := len(newIdx)
		states, credited := make([]string, n), make([]bool, n)
		accts, addrIDs, amounts, ntIDs, outs := make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n), make([]int32, n)
		for j, i := range newIdx {
			b := bk[i]
			states[j], credited[j], accts[j], addrIDs[j], amounts[j], ntIDs[j], outs[j] = b.newState, b.credited, b.receiver, b.addrID, int64(b.amount), b.ntID, obs[i].Output
		}
		rows, err := tx.Query(ctx, `INSERT INTO transactions (asset_id, wallet_id, kind, state, credited, receiving_account_id, address_id, amount,
				network_transaction_id, output_index)
			SELECT $1, $2, 'deposit', u.state, u.credited, u.acct, u.addr, u.amount, u.nt, u.out
			FROM unnest($3::text[], $4::boolean[], $5::bigint[], $6::bigint[], $7::bigint[], $8::bigint[], $9::integer[])
				WITH ORDINALITY AS u(state, credited, acct, addr, amount, nt, out, n)
			ORDER BY u.n
			RETURNING network_transaction_id, output_index, id, created_at`, l.assetID, l.walletID, states, credited, accts, addrIDs, amounts, ntIDs, outs)
		if err != nil {
			return nil, err
		}
		type inserted struct {
			id      int64
			created time.Time
		}
		byKey := make(map[outputKey]inserted, len(newIdx))
		var in inserted
		if _, err := pgx.ForEachRow(rows, []any{&k.nt, &k.out, &in.id, &in.created}, func() error { byKey[k] = in; return nil }); err != nil {
			return nil, err
		}
		for _, i := range newIdx {
			b, o := &bk[i], obs[i]
			in, ok := byKey[outputKey{b.ntID, o.Output}]
			if !ok {
				return nil, fmt.Errorf("deposit %s:%d was not booked", o.TxID, o.Output)
			}
			receiver, output := b.receiver, o.Output
			b.txID = in.id
			// As inserted: the columns the insert leaves to their defaults are null, and created_at.
			asBooked[in.id] = Transaction{ID: in.id, Kind: "deposit", State: b.newState, ReceivingAccountID: &receiver,
				Address: o.Address, Amount: b.amount, TxID: o.TxID, OutputIndex: &output, Confirmations: confNow[b.ntID],
				Credited: b.credited, CreatedAt: in.created}
		}
	}
	if len(chgIDs) > 0 {
		if _, err := tx.Exec(ctx, `UPDATE transactions t SET state = u.state, credited = u.credited, updated_at = now()
			FROM unnest($1::bigint[], $2::text[], $3::boolean[]) AS u(id, state, credited) WHERE t.id = u.id`,
			chgIDs, chgStates, chgCredited); err != nil {
			return nil, err
		}
	}
	if err := l.moveDeposits(ctx, tx, deltas); err != nil {
		return nil, err
	}

	// Every booked output as the ledger now has it, and an event for each that changed.
	now := asBooked
	if readBack {
		ids := make([]int64, 0, len(ours))
		for _, i := range ours {
			if bk[i].txID != 0 {
				ids = append(ids, bk[i].txID)
			}
		}
		if now, err = l.transactionsByID(ctx, tx, ids); err != nil {
			return nil, err
		}
	}
	var payloads []any
	for _, i := range ours {
		o := obs[i]
		last := lastOfOutput[reportKey{o.TxID, o.Output}]
		if last != i {
			continue
		}
		if t, ok := now[bk[i].txID]; ok && !readBack {
			// As read or inserted, with the state it was given (the same when nothing changed).
			t.State, t.Credited = bk[i].newState, bk[i].credited
			now[bk[i].txID] = t
		}
		bk[i].up.Transaction = now[bk[i].txID]
		if bk[i].up.Changed {
			payloads = append(payloads, l.txUpdatePayload(bk[i].up.Transaction, bk[i].ntID, bk[i].up))
		}
	}
	for _, i := range ours {
		o := obs[i]
		if last := lastOfOutput[reportKey{o.TxID, o.Output}]; last != i {
			// An earlier report of an output booked again: the same transaction, nothing more.
			bk[i].up = DepositUpdate{Transaction: bk[last].up.Transaction}
		}
	}
	if err := l.writeEvents(ctx, tx, "txupdate", payloads); err != nil {
		return nil, err
	}
	return updates(bk), nil
}

func updates(bk []booking) []DepositUpdate {
	out := make([]DepositUpdate, len(bk))
	for i, b := range bk {
		out[i] = b.up
	}
	return out
}

// moveDeposits credits (or takes back) deposits: each account's sum, and the wallet's total.
// Accounts are locked in id order, so concurrent bookings and transfers do not deadlock.
func (l *Ledger) moveDeposits(ctx context.Context, tx pgx.Tx, deltas map[int64]Amount) error {
	ids := make([]int64, 0, len(deltas))
	for id, d := range deltas {
		if d != 0 {
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	slices.Sort(ids)
	rows, err := tx.Query(ctx, `SELECT id, name, kind, balance FROM accounts WHERE id = ANY($1) AND wallet_id = $2 ORDER BY id FOR UPDATE`, ids, l.walletID)
	if err != nil {
		return err
	}
	accounts, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Account, error) { return scanAccount(r) })
	if err != nil {
		return err
	}
	if len(accounts) != len(ids) {
		return fmt.Errorf("crediting deposits: %d of accounts %v found: %w", len(accounts), ids, ErrNotFound)
	}
	var total Amount
	amounts := make([]int64, len(ids))
	for j, a := range accounts {
		d := deltas[a.ID]
		if _, err := a.Balance.Add(d); err != nil {
			return fmt.Errorf("account %d: %w", a.ID, err)
		}
		if total, err = total.Add(d); err != nil {
			return fmt.Errorf("wallet: %w", err)
		}
		ids[j], amounts[j] = a.ID, int64(d)
	}
	if _, err := tx.Exec(ctx, `UPDATE accounts a SET balance = a.balance + u.delta FROM unnest($1::bigint[], $2::bigint[]) AS u(id, delta) WHERE a.id = u.id`,
		ids, amounts); err != nil {
		return err
	}
	if total == 0 {
		return nil
	}
	return l.adjustWallet(ctx, tx, total)
}

// TxUpdate is the payload of a txupdate event. Amounts are decimal strings.
type TxUpdate struct {
	Asset                string `json:"asset"`
	Coin                 string `json:"coin"`
	Network              string `json:"network"`
	Kind                 string `json:"kind"`
	TransactionID        int64  `json:"transaction_id"`
	NetworkTransactionID int64  `json:"network_transaction_id"`
	TxID                 string `json:"txid"`
	OutputIndex          *int32 `json:"output_index,omitempty"`
	AccountID            *int64 `json:"account_id,omitempty"`
	// FromAccountID is the sending account of an internal transfer (AccountID receives).
	FromAccountID *int64 `json:"from_account_id,omitempty"`
	Address       string `json:"address"`
	Amount        string `json:"amount"`
	Confirmations int32  `json:"confirmations"`
	Credited      bool   `json:"credited"`
	State         string `json:"state"`
	Processed     bool   `json:"processed"`
	Reverted      bool   `json:"reverted,omitempty"`
	// Reason says why a send is in needs_review.
	Reason string `json:"reason,omitempty"`
}

func (l *Ledger) txUpdatePayload(t Transaction, ntID int64, up DepositUpdate) TxUpdate {
	return TxUpdate{
		Asset: l.opts.Asset, Coin: l.coin.Name, Network: l.opts.Network, Kind: t.Kind,
		TransactionID: t.ID, NetworkTransactionID: ntID, TxID: t.TxID, OutputIndex: t.OutputIndex,
		AccountID: t.ReceivingAccountID, Address: t.Address, Amount: t.Amount.Format(l.coin.Decimals),
		Confirmations: t.Confirmations, Credited: t.Credited, State: t.State, Processed: t.ProcessedAt != nil,
		Reverted: up.Uncredited || t.State == "reverted" || t.State == "conflicted", Reason: t.Reason,
	}
}

// writeEvent appends an event to the outbox with one pending delivery per configured target.
func (l *Ledger) writeEvent(ctx context.Context, tx pgx.Tx, name string, payload any) error {
	return l.writeEvents(ctx, tx, name, []any{payload})
}

// writeEvents appends events to the outbox in order, with one pending delivery each per
// configured target, in one statement.
func (l *Ledger) writeEvents(ctx context.Context, tx pgx.Tx, name string, payloads []any) error {
	if len(payloads) == 0 {
		return nil
	}
	args, err := l.eventArgs(name, payloads)
	if err != nil {
		return err
	}
	if _, err = tx.Exec(ctx, `WITH gate AS (SELECT), `+outboxWrite+` SELECT`, args...); err != nil {
		return err
	}
	noteEvents(tx)
	return nil
}

// outboxWrite is the common table expressions that append the events $3 (JSON text, in order)
// named $2 to asset $1's outbox, with the event ids $5, each with a pending delivery per target
// in $4, once per row of a common table expression named gate that the statement defines before
// them. A ledger change and its events can so be one statement, the events written only if the
// change was; PostgreSQL runs data-modifying common table expressions whether or not the
// statement reads them.
const outboxWrite = outboxWriteHead + `unnest($3::text[], $5::uuid[]) WITH ORDINALITY AS u(p, id, n)` + outboxWriteTail

// outboxWriteHead and outboxWriteTail are outboxWrite around where its events come from: a FROM
// item u with the JSON text p, the event id and the order n of each. A statement that makes its
// event's text from values it draws itself (transfer, from the transaction's id) puts its own in
// between.
const (
	outboxWriteHead = `ev AS (INSERT INTO outbox_events (asset_id, name, payload, event_id)
		SELECT $1::bigint, $2::text, u.p::json, u.id FROM gate, `
	outboxWriteTail = ` ORDER BY u.n
		RETURNING id),
	dl AS (INSERT INTO outbox_deliveries (event_id, asset_id, target) SELECT ev.id, $1::bigint, tg.target FROM ev CROSS JOIN unnest($4::text[]) AS tg(target))`
)

// eventArgs encodes events for outboxWrite: its arguments $1 to $5. (Positional, not named:
// pgx rewrites a query with named arguments on every call.)
func (l *Ledger) eventArgs(name string, payloads []any) ([]any, error) {
	bodies := make([]string, len(payloads))
	ids := make([]pgtype.UUID, len(payloads))
	for i, p := range payloads {
		b, err := json.Marshal(p)
		if err != nil {
			return nil, fmt.Errorf("encoding %s event: %w", name, err)
		}
		bodies[i] = string(b)
		if ids[i], err = newEventID(); err != nil {
			return nil, err
		}
	}
	return []any{l.assetID, name, bodies, l.eventTargets(), ids}, nil
}

// newEventID draws the id receivers deduplicate an event on: a UUID of version 7, whose leading
// bits are the time in milliseconds. The column's default, gen_random_uuid(), asked the
// operating system for 16 random bytes per event, and random ids land all over the unique index;
// ids in time order are appended at its end. Booking 1,000 events in one statement, on a table of
// 30,000 to 90,000 events, took a median of 23.3-24.4 ms with the default and 19.2-19.7 ms with
// these ids drawn by the helper (three runs of 18, the ids' drawing and sending included; a
// scratch program, not committed). The default stays for writers that give no id.
//
// It goes to pgx as a pgtype.UUID, which pgx writes as its 16 bytes. To pgx a uuid.UUID is only
// a driver.Valuer: each id was turned into its text, the text failed the binary encoding (an
// error built with fmt, then dropped), and was parsed back into bytes. That took 2.1 ms and 20,000
// allocations for an array of 1,000 ids, against 0.1 ms and 1,000 now, and 2.1 µs against 0.07
// for one id (pgx's ExtendedQueryBuilder.Build; a scratch benchmark, not committed).
func newEventID() (pgtype.UUID, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return pgtype.UUID{}, fmt.Errorf("drawing an event id: %w", err)
	}
	return pgtype.UUID{Bytes: id, Valid: true}, nil
}

// eventTargets is outboxWrite's $4: the configured targets, never nil (a nil slice is NULL,
// which unnest would not read as no targets).
func (l *Ledger) eventTargets() []string {
	if l.opts.EventTargets == nil {
		return []string{}
	}
	return l.opts.EventTargets
}

// Cursor is where catch-up resumes.
type Cursor struct {
	Height int64
	Hash   string
}

// Cursor returns the asset's chain cursor, or ok=false before the first catch-up.
func (l *Ledger) Cursor(ctx context.Context) (c Cursor, ok bool, err error) {
	err = l.pool.QueryRow(ctx, `SELECT block_height, block_hash FROM cursors WHERE asset_id = $1`, l.assetID).Scan(&c.Height, &c.Hash)
	if errors.Is(err, pgx.ErrNoRows) {
		return Cursor{}, false, nil
	}
	return c, err == nil, err
}

// HasReceivingAddresses says whether the asset has handed out any receiving address: without
// one, nothing in the wallet's history can be booked.
func (l *Ledger) HasReceivingAddresses(ctx context.Context) (bool, error) {
	var has bool
	err := l.pool.QueryRow(ctx, `SELECT EXISTS (SELECT FROM addresses WHERE asset_id = $1 AND account_id IS NOT NULL)`, l.assetID).Scan(&has)
	if err != nil {
		return false, fmt.Errorf("looking for receiving addresses: %w", err)
	}
	return has, nil
}

// SetCursor records the last block catch-up fully processed.
func (l *Ledger) SetCursor(ctx context.Context, c Cursor) error {
	return l.inTx(ctx, l.opts.Retry, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO cursors (asset_id, block_height, block_hash) VALUES ($1, $2, $3)
			ON CONFLICT (asset_id) DO UPDATE SET block_height = excluded.block_height, block_hash = excluded.block_hash, updated_at = now()`,
			l.assetID, c.Height, c.Hash)
		return err
	})
}

// OpenDeposits lists the deposit outputs whose confirmations are still followed: below
// maxTrackedConfirmations, including ones that disappeared (they may come back), but not
// conflicted ones (final). The intake asks the backend about each, so a reorganisation is seen
// even by backends that do not report one. The outputs of the transactions in except are left
// out: a caller that has just heard about those has no use for them, and a catch-up that booked
// a thousand mined deposits would otherwise read each back only to skip it.
func (l *Ledger) OpenDeposits(ctx context.Context, except ...string) ([]Observation, error) {
	// The network transactions' own asset and kind are given too (a deposit's always match its
	// own), so the condition on their confirmations is found through network_transactions_followed
	// rather than by reading the asset's whole history. NOT IN a subquery, not <> ALL(array): the
	// server hashes the subquery's rows once, where it would compare each open deposit with every
	// element of a bound array.
	rows, err := l.pool.Query(ctx, `SELECT n.txid, t.output_index, a.address, t.amount, n.confirmations
		FROM transactions t
		JOIN network_transactions n ON n.id = t.network_transaction_id
		JOIN addresses a ON a.id = t.address_id
		WHERE t.asset_id = $1 AND t.kind = 'deposit' AND n.asset_id = $1 AND n.kind = 'deposit'
		  AND n.confirmations < $2 AND t.state <> 'conflicted' AND n.txid NOT IN (SELECT unnest($3::text[]))
		ORDER BY n.id, t.output_index`, l.assetID, l.opts.MaxTrackedConfirmations, except)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Observation, error) {
		var o Observation
		err := r.Scan(&o.TxID, &o.Output, &o.Address, &o.Amount, &o.Confirmations)
		return o, err
	})
}

// creditedDepositsSQL lists the credited deposit outputs of a page of the asset's network
// transactions ($2 the id after which the page starts, $3 its size in network transactions), in
// id order. The page is counted in network transactions, not outputs, so a transaction's
// outputs are never split between pages. The page walks the primary key from $2 on: one pass
// over the table for a whole audit, however many assets share it; an index of its own would cost
// every deposit written for a command run by hand. The credited check repeats the bound: the
// planner merges the two walks, and without it walked the bookings from the first on every page.
const creditedDepositsSQL = `SELECT n.id, n.txid, t.output_index, a.address, t.amount, n.confirmations
	FROM network_transactions n
	JOIN transactions t ON t.network_transaction_id = n.id
	JOIN addresses a ON a.id = t.address_id
	WHERE n.id IN (SELECT p.id FROM network_transactions p
			WHERE p.asset_id = $1 AND p.kind = 'deposit' AND p.id > $2
			  AND EXISTS (SELECT FROM transactions c WHERE c.network_transaction_id = p.id AND c.network_transaction_id > $2 AND c.kind = 'deposit' AND c.credited)
			ORDER BY p.id LIMIT $3)
	  AND t.asset_id = $1 AND t.kind = 'deposit' AND t.credited
	ORDER BY n.id, t.output_index`

// CreditedDeposits lists the asset's credited deposit outputs as the ledger booked them, for a
// check against the chain, a page at a time: the outputs of the next page.Limit network
// transactions with an id above page.After that have any credited, and the id of the last of
// them (page.After when there are none left). A history of millions of deposits is then checked
// in the memory of one page, where the helper it runs beside has a memory limit.
func (l *Ledger) CreditedDeposits(ctx context.Context, page Page) (obs []Observation, last int64, err error) {
	rows, err := l.pool.Query(ctx, creditedDepositsSQL, l.assetID, page.After, page.limit())
	if err != nil {
		return nil, 0, fmt.Errorf("listing credited deposits after network transaction %d: %w", page.After, err)
	}
	last = page.After
	obs, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Observation, error) {
		var o Observation
		err := r.Scan(&last, &o.TxID, &o.Output, &o.Address, &o.Amount, &o.Confirmations)
		return o, err
	})
	if err != nil {
		return nil, 0, fmt.Errorf("listing credited deposits after network transaction %d: %w", page.After, err)
	}
	return obs, last, nil
}
