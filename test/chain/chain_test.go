// Package chain tests the ledger against the chain's truth on two btcd simnet nodes: the node
// with the wallet, and a peer that mines a competing branch while the network is split. When the
// network joins again the longer branch wins, and the ledger must follow the chain, not the
// wallet's word about it.
package chain

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/cryptoassets/cryptoassets-operator/internal/backend/bitcoind"
	"github.com/cryptoassets/cryptoassets-operator/internal/broadcast"
	"github.com/cryptoassets/cryptoassets-operator/internal/coin"
	"github.com/cryptoassets/cryptoassets-operator/internal/intake"
	"github.com/cryptoassets/cryptoassets-operator/internal/ledger"
	"github.com/cryptoassets/cryptoassets-operator/internal/ledger/ledgertest"
	"github.com/cryptoassets/cryptoassets-operator/internal/testing/btctest"
	"github.com/cryptoassets/cryptoassets-operator/internal/testing/pgtest"
	"github.com/cryptoassets/cryptoassets-operator/internal/testing/testassets"
	"github.com/cryptoassets/cryptoassets-operator/internal/testing/wallettest"
)

var (
	pg   *pgtest.Server
	node *btctest.Node
)

func TestMain(m *testing.M) {
	os.Exit(testassets.Main(m, testassets.Postgres(&pg), testassets.Bitcoin(&node)))
}

type fixture struct {
	t       *testing.T
	pool    *pgxpool.Pool
	ledger  *ledger.Ledger
	backend *bitcoind.Client
	intake  *intake.Intake
	bc      *broadcast.Broadcaster
	peer    *btctest.Peer
	account int64
	addr    string
}

// confirmations is the asset's threshold: 1, so a one-block reorganisation takes back a credit.
const confirmations = 1

func setup(t *testing.T) *fixture {
	t.Helper()
	ctx := context.Background()
	_, pool := ledgertest.DB(t, pg)
	l, err := ledger.Open(ctx, pool, ledger.Options{
		Asset: "btc", Coin: "bitcoin", Network: "simnet", Confirmations: confirmations, MaxTrackedConfirmations: 10,
		ValidateAddress: func(a string) error { return coin.ValidateAddress("bitcoin", "simnet", a) },
		EventTargets:    []string{"app"},
	})
	if err != nil {
		t.Fatal(err)
	}
	b := wallettest.Backend(t, node, "")
	peer, err := node.StartPeer()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(peer.Stop)
	f := &fixture{t: t, pool: pool, ledger: l, backend: b, intake: intake.New(l, b, testr.New(t)),
		bc: broadcast.New(l, b, time.Minute, testr.New(t)), peer: peer}
	acct, err := l.CreateAccount(ctx, "shop")
	if err != nil {
		t.Fatal(err)
	}
	f.account = acct.ID
	addr, err := b.NewAddress(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.AddReceivingAddress(ctx, acct.ID, addr, ""); err != nil {
		t.Fatal(err)
	}
	f.addr = addr
	f.poll()
	return f
}

// poll is one catch-up, what the helper runs every poll interval. Its error is logged, not fatal:
// a listing the wallet refuses must not stop the re-check of what the ledger follows.
func (f *fixture) poll() {
	f.t.Helper()
	if r, err := f.intake.CatchUp(context.Background()); err != nil {
		f.t.Logf("catch-up: %+v: %v", r, err)
	}
}

type deposit struct {
	State         string
	Credited      bool
	Confirmations int32
}

func (f *fixture) deposit(txid string) deposit {
	f.t.Helper()
	var d deposit
	err := f.pool.QueryRow(context.Background(), `SELECT t.state, t.credited, n.confirmations FROM transactions t
		JOIN network_transactions n ON n.id = t.network_transaction_id WHERE t.kind = 'deposit' AND n.txid = $1`, txid).
		Scan(&d.State, &d.Credited, &d.Confirmations)
	if err != nil {
		f.t.Fatalf("deposit %s: %v", txid, err)
	}
	return d
}

func (f *fixture) balance() ledger.Amount {
	f.t.Helper()
	a, err := f.ledger.Account(context.Background(), f.account)
	if err != nil {
		f.t.Fatal(err)
	}
	return a.Balance
}

// lastEvent is the newest txupdate event about txid.
func (f *fixture) lastEvent(txid string) ledger.TxUpdate {
	f.t.Helper()
	var payload []byte
	err := f.pool.QueryRow(context.Background(), `SELECT payload FROM outbox_events WHERE name = 'txupdate' AND payload->>'txid' = $1
		ORDER BY id DESC LIMIT 1`, txid).Scan(&payload)
	if err != nil {
		f.t.Fatalf("txupdate event for %s: %v", txid, err)
	}
	var ev ledger.TxUpdate
	if err := json.Unmarshal(payload, &ev); err != nil {
		f.t.Fatal(err)
	}
	return ev
}

func (f *fixture) check() {
	f.t.Helper()
	v, err := ledger.Check(context.Background(), f.pool)
	if err != nil || len(v) > 0 {
		f.t.Fatalf("ledger check: %v %v", v, err)
	}
}

// reorg splits the network, lets ours mine `depth` blocks over a fresh deposit while the peer
// mines depth+1 without it, and joins the network again. It returns the deposit's txid and the
// time the join finished (the node on the peer's branch, the wallet synced to it).
func (f *fixture) reorg(depth uint32, amount int64, beforeJoin func(txid string)) (string, time.Time) {
	f.t.Helper()
	if err := f.peer.Disconnect(); err != nil {
		f.t.Fatal(err)
	}
	txid := node.MustPay(f.t, f.addr, amount)
	node.MustMine(f.t, depth)
	f.poll()
	if d := f.deposit(txid); !d.Credited || d.Confirmations != int32(depth) {
		f.t.Fatalf("before the reorganisation: %+v, want credited with %d confirmations", d, depth)
	}
	if beforeJoin != nil {
		beforeJoin(txid)
	}
	f.peerWins(depth + 1)
	return txid, time.Now()
}

// peerWins mines blocks on the peer's branch and joins the network again: when the peer's
// branch is the longer one, the node reorganises onto it.
func (f *fixture) peerWins(blocks uint32) {
	f.t.Helper()
	if _, err := f.peer.Mine(blocks); err != nil {
		f.t.Fatal(err)
	}
	if err := f.peer.Connect(); err != nil {
		f.t.Fatal(err)
	}
}

func TestReorganisations(t *testing.T) {
	f := setup(t)
	var want ledger.Amount
	for _, depth := range []uint32{1, 2, 6} {
		t.Run(fmt.Sprintf("%d-block reorg of a credited deposit", depth), func(t *testing.T) {
			f.t = t
			amount := int64(10_000_000 * depth)
			txid, joined := f.reorg(depth, amount, nil)
			f.poll()
			took := time.Since(joined)
			if d := f.deposit(txid); d.Credited || d.Confirmations != 0 || d.State != "incoming" {
				t.Fatalf("one poll after the reorganisation: %+v, want incoming, not credited, 0 confirmations", d)
			}
			if f.balance() != want {
				t.Fatalf("balance %d, want %d", f.balance(), want)
			}
			if ev := f.lastEvent(txid); ev.Credited || !ev.Reverted || ev.Confirmations != 0 {
				t.Fatalf("event after the reorganisation: %+v", ev)
			}
			t.Logf("reorg depth %d: deposit taken back %v after the join (one poll)", depth, took.Round(time.Millisecond))

			// Back in the mempool, it is mined again on the winning branch and credited again.
			node.MustMine(t, 1)
			mined := time.Now()
			f.poll()
			if d := f.deposit(txid); !d.Credited || d.Confirmations != 1 || d.State != "credited" {
				t.Fatalf("re-mined: %+v, want credited with 1 confirmation", d)
			}
			want += ledger.Amount(amount)
			if f.balance() != want {
				t.Fatalf("balance %d, want %d", f.balance(), want)
			}
			if ev := f.lastEvent(txid); !ev.Credited || ev.Confirmations != 1 {
				t.Fatalf("event after re-mining: %+v", ev)
			}
			t.Logf("reorg depth %d: credited again %v after the block that re-mined it", depth, time.Since(mined).Round(time.Millisecond))
			f.check()
		})
	}
}

func TestDoubleSpend(t *testing.T) {
	f := setup(t)
	var spent string
	txid, joined := f.reorg(2, 200_000_000, func(txid string) {
		var err error
		if spent, err = f.peer.DoubleSpend(txid); err != nil {
			t.Fatal(err)
		}
	})
	f.poll()
	took := time.Since(joined)
	if d := f.deposit(txid); d.Credited || d.State != "conflicted" {
		t.Fatalf("after a double spend %s two blocks deep: %+v, want conflicted, not credited", spent, d)
	}
	if f.balance() != 0 {
		t.Fatalf("balance %d after the double spend", f.balance())
	}
	if ev := f.lastEvent(txid); ev.Credited || !ev.Reverted || ev.State != "conflicted" {
		t.Fatalf("event: %+v", ev)
	}
	t.Logf("double spend 2 deep: deposit conflicted %v after the join (one poll)", took.Round(time.Millisecond))

	// Never credited again, however deep the conflict gets.
	node.MustMine(t, 3)
	f.poll()
	if d := f.deposit(txid); d.Credited || d.State != "conflicted" {
		t.Fatalf("3 blocks later: %+v", d)
	}

	// An ordinary deposit after it is credited within one poll.
	next := node.MustPay(t, f.addr, 30_000_000)
	node.MustMine(t, 1)
	mined := time.Now()
	f.poll()
	if d := f.deposit(next); !d.Credited {
		t.Fatalf("an ordinary deposit after the double spend: %+v", d)
	}
	t.Logf("ordinary deposit after the double spend credited %v after its block (one poll)", time.Since(mined).Round(time.Millisecond))
	if f.balance() != 30_000_000 {
		t.Fatalf("balance %d, want 0.3", f.balance())
	}
	f.check()
}

type send struct {
	ID            int64
	State         string
	Confirmations int32
	TxID          string
}

func (f *fixture) send(id int64) send {
	f.t.Helper()
	s := send{ID: id}
	err := f.pool.QueryRow(context.Background(), `SELECT t.state, coalesce(n.confirmations, 0), coalesce(n.txid, '') FROM transactions t
		LEFT JOIN network_transactions n ON n.id = t.network_transaction_id WHERE t.id = $1`, id).Scan(&s.State, &s.Confirmations, &s.TxID)
	if err != nil {
		f.t.Fatalf("send %d: %v", id, err)
	}
	return s
}

// pass is one broadcaster period: send what is queued, follow what was sent.
func (f *fixture) pass() {
	f.t.Helper()
	if _, err := f.bc.Pass(context.Background()); err != nil {
		f.t.Fatalf("broadcast pass: %v", err)
	}
}

// fund credits the shop with a deposit mined on the joined network.
func (f *fixture) fund(amount int64) {
	f.t.Helper()
	txid := node.MustPay(f.t, f.addr, amount)
	node.MustMine(f.t, 1)
	f.poll()
	if d := f.deposit(txid); !d.Credited {
		f.t.Fatalf("funding deposit: %+v", d)
	}
}

// queue puts a send to a fresh address of the node's wallet (not the ledger's) in the queue.
func (f *fixture) queue(amount int64) (int64, string) {
	f.t.Helper()
	payee, err := node.NewAddress()
	if err != nil {
		f.t.Fatal(err)
	}
	s, err := f.ledger.SendExternal(context.Background(), f.account, payee.EncodeAddress(), ledger.Amount(amount), "", true)
	if err != nil {
		f.t.Fatal(err)
	}
	return s.ID, payee.EncodeAddress()
}

func (f *fixture) paymentsTo(addr string) int {
	f.t.Helper()
	n, err := node.PaymentsTo(addr)
	if err != nil {
		f.t.Fatal(err)
	}
	return n
}

// sentOnOurBranch splits the network, then queues a send, broadcasts it and mines it on our
// branch only: confirmed there, unknown to the peer.
func (f *fixture) sentOnOurBranch(amount int64) (int64, string, send) {
	f.t.Helper()
	id, payee := f.queue(amount)
	if err := f.peer.Disconnect(); err != nil {
		f.t.Fatal(err)
	}
	f.pass()
	node.MustMine(f.t, 1)
	f.pass()
	s := f.send(id)
	if s.State != "confirmed" || s.Confirmations != 1 {
		f.t.Fatalf("sent and mined: %+v", s)
	}
	return id, payee, s
}

func TestOurBroadcasts(t *testing.T) {
	f := setup(t)
	f.fund(500_000_000)

	t.Run("a reorg that removes our broadcast", func(t *testing.T) {
		f.t = t
		id, payee, _ := f.sentOnOurBranch(100_000_000)
		f.peerWins(2)
		joined := time.Now()
		f.pass()
		s := f.send(id)
		if s.State != "broadcasted" || s.Confirmations != 0 {
			t.Fatalf("after the reorganisation: %+v, want broadcasted with 0 confirmations", s)
		}
		if ev := f.lastEvent(s.TxID); ev.State != "broadcasted" || ev.Confirmations != 0 {
			t.Fatalf("event: %+v", ev)
		}
		t.Logf("broadcast reorganised out: send back to broadcasted %v after the join (one pass)", time.Since(joined).Round(time.Millisecond))
		node.MustMine(t, 1)
		f.pass()
		if s := f.send(id); s.State != "confirmed" || s.Confirmations != 1 {
			t.Fatalf("re-mined: %+v", s)
		}
		if n := f.paymentsTo(payee); n != 1 {
			t.Fatalf("%d payments to the payee, want 1", n)
		}
		f.check()
	})

	t.Run("a double spend of our broadcast", func(t *testing.T) {
		f.t = t
		id, payee, s := f.sentOnOurBranch(50_000_000)
		if _, err := f.peer.DoubleSpend(s.TxID); err != nil {
			t.Fatal(err)
		}
		f.peerWins(2)
		joined := time.Now()
		f.pass()
		if s := f.send(id); s.State != "needs_review" || s.Confirmations != -1 {
			t.Fatalf("after the double spend: %+v, want needs_review", s)
		}
		if ev := f.lastEvent(s.TxID); ev.State != "needs_review" {
			t.Fatalf("event: %+v", ev)
		}
		t.Logf("broadcast double-spent: send in needs_review %v after the join (one pass)", time.Since(joined).Round(time.Millisecond))
		// Not paid again on its own, however many periods pass.
		node.MustMine(t, 2)
		for range 3 {
			f.pass()
		}
		if s := f.send(id); s.State != "needs_review" {
			t.Fatalf("later: %+v", s)
		}
		if n := f.paymentsTo(payee); n > 1 {
			t.Fatalf("%d payments to the payee: paid again", n)
		}
		f.check()
	})
}

func TestLedgerCheckAgainstTheChain(t *testing.T) {
	ctx := context.Background()
	f := setup(t)
	// Credited, then reorganised away with no catch-up since: the ledger alone sees nothing wrong,
	// the chain does.
	txid, _ := f.reorg(2, 80_000_000, nil)
	f.check()
	v, err := f.intake.Audit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(v) != 1 || !strings.Contains(v[0].Detail, txid) || !strings.Contains(v[0].Detail, "0 confirmations on the best chain") {
		t.Fatalf("audit after an unseen reorganisation: %v", v)
	}
	// One catch-up takes the credit back; the audit is then clean.
	f.poll()
	if v, err := f.intake.Audit(ctx); err != nil || len(v) != 0 {
		t.Fatalf("audit after the catch-up: %v %v", v, err)
	}
}

// TestRescansAcrossAReorganisation: deposits in five blocks are credited by a rescan, and left
// as they are by a second one from the same backend (which reads the chain from where the first
// left off). After a reorganisation takes their blocks off the chain, a rescan takes them back;
// once they are mined again, a rescan credits them again.
func TestRescansAcrossAReorganisation(t *testing.T) {
	f := setup(t)
	ctx := context.Background()
	rescan := func() {
		t.Helper()
		if r, err := f.intake.Rescan(ctx, 0, nil); err != nil {
			t.Fatalf("rescan: %+v %v", r, err)
		}
	}
	expect := func(when string, credited bool, balance ledger.Amount, txids []string) {
		t.Helper()
		for _, txid := range txids {
			if d := f.deposit(txid); d.Credited != credited || (!credited && (d.State != "incoming" || d.Confirmations != 0)) {
				t.Fatalf("%s: deposit %s %+v, want credited %v", when, txid, d, credited)
			}
		}
		if f.balance() != balance {
			t.Fatalf("%s: balance %d, want %d", when, f.balance(), balance)
		}
	}
	if err := f.peer.Disconnect(); err != nil {
		t.Fatal(err)
	}
	var txids []string
	for i := range 5 {
		txids = append(txids, node.MustPay(t, f.addr, int64(10_000_000*(i+1))))
		node.MustMine(t, 1)
	}
	rescan()
	expect("rescanned", true, 150_000_000, txids)
	rescan() // from the remembered chain
	expect("rescanned again", true, 150_000_000, txids)

	f.peerWins(6)
	rescan()
	expect("after the reorganisation", false, 0, txids)

	node.MustMine(t, 1)
	rescan()
	expect("mined again", true, 150_000_000, txids)
	f.check()
}
