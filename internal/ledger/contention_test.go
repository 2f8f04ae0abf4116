package ledger

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// A big broadcast is recorded while the API queues sends and deposits are booked: the record
// must go through without giving up, since the wallet has already paid when it runs.
func TestBigBroadcastRecordsUnderConcurrentWrites(t *testing.T) {
	ctx := context.Background()
	pool := newPool(t)
	l := open(t, pool, "app")
	// The writers beside the record give up quickly, so contention shows in their count; the
	// record itself must go through. (Under SERIALIZABLE with this policy it failed in two of
	// three runs.)
	l.opts.Retry = RetryPolicy{Attempts: 3, Base: 2 * time.Millisecond, Max: 20 * time.Millisecond}
	alice, _ := l.CreateAccount(ctx, "alice")
	bob, _ := l.CreateAccount(ctx, "bob")
	for _, a := range []struct {
		id   int64
		addr string
	}{{alice.ID, "addr-alice"}, {bob.ID, "addr-bob"}} {
		if _, err := l.AddReceivingAddress(ctx, a.id, a.addr, ""); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := l.RecordDeposit(ctx, Observation{TxID: "fund", Output: 0, Address: "addr-alice", Amount: 1e12, Confirmations: 3}); err != nil {
		t.Fatal(err)
	}
	if _, err := l.RecordDeposit(ctx, Observation{TxID: "fund", Output: 1, Address: "addr-bob", Amount: 1e12, Confirmations: 3}); err != nil {
		t.Fatal(err)
	}
	const sends = 300
	for i := range sends {
		if _, err := l.SendExternal(ctx, alice.ID, fmt.Sprintf("addr-payee-%d", i%40), 1000, "", true); err != nil {
			t.Fatal(err)
		}
	}
	bc, err := l.OpenBroadcast(ctx)
	if err != nil || len(bc.Sends) != sends {
		t.Fatalf("opening: %+v %v", bc, err)
	}

	// Meanwhile: sends queued by bob, deposits booked to him, until the record is done.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var others, otherErrs atomic.Int64
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				var err error
				if i%2 == 0 {
					_, err = l.SendExternal(ctx, bob.ID, "addr-later", 500, "", true)
				} else {
					_, err = l.RecordDeposit(ctx, Observation{TxID: fmt.Sprintf("dep-%d-%d", w, i), Output: 0, Address: "addr-bob", Amount: 700})
				}
				others.Add(1)
				if err != nil {
					otherErrs.Add(1)
				}
			}
		}()
	}
	for range 20 {
		// Let the writers get going before the record starts.
		if others.Load() > 20 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	err = l.MarkBroadcasted(ctx, bc.ID, "big-broadcast")
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatalf("recording a broadcast of %d sends beside %d other writes: %v", sends, others.Load(), err)
	}
	t.Logf("recorded %d sends beside %d concurrent writes (%d of them failed on contention)", sends, others.Load(), otherErrs.Load())
	var broadcasted int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM transactions WHERE broadcast_id = $1 AND state = 'broadcasted'`, bc.ID).Scan(&broadcasted); err != nil || broadcasted != sends {
		t.Fatalf("%d sends broadcasted, want %d (%v)", broadcasted, sends, err)
	}
	mustCheck(t, pool)
}
