package backend

import (
	"errors"
	"reflect"
	"testing"
)

func TestScanInWindows(t *testing.T) {
	tx := func(id string, height int64, conf int32) Transaction {
		return Transaction{TxID: id, BlockHeight: height, Confirmations: conf, Received: []Output{{Address: "addr-" + id}}}
	}
	coinbase := func(id string, height int64, conf int32) Transaction {
		return Transaction{TxID: id, BlockHeight: height, Confirmations: conf}
	}
	type step struct {
		ids         []string
		done, total int64
	}
	for _, tc := range []struct {
		name      string
		txs       []Transaction
		from, tip int64
		w         int
		want      []step
	}{
		{name: "empty history is one batch", from: 0, tip: 4, w: 2,
			want: []step{{nil, 5, 5}}},
		{name: "sorted by height, unconfirmed last", from: 10, tip: 15, w: 2,
			txs:  []Transaction{tx("u", 0, 0), tx("c", 15, 1), tx("a", 10, 6), tx("b", 12, 4), tx("x", 0, -1)},
			want: []step{{[]string{"a", "b"}, 5, 6}, {[]string{"c", "u", "x"}, 6, 6}}},
		{name: "a block is never split", from: 0, tip: 9, w: 2,
			txs:  []Transaction{tx("a", 1, 9), tx("b", 1, 9), tx("c", 1, 9), tx("d", 2, 8), tx("e", 7, 3)},
			want: []step{{[]string{"a", "b", "c"}, 2, 10}, {[]string{"d", "e"}, 10, 10}}},
		{name: "only outputs paying the wallet count", from: 0, tip: 9, w: 2,
			txs:  []Transaction{tx("a", 1, 9), coinbase("g1", 2, 8), coinbase("g2", 3, 7), tx("b", 4, 6), tx("c", 5, 5)},
			want: []step{{[]string{"a", "g1", "g2", "b"}, 5, 10}, {[]string{"c"}, 10, 10}}},
		{name: "a block mined during the scan is not dropped", from: 0, tip: 3, w: 10,
			txs:  []Transaction{tx("late", 4, 1), tx("a", 1, 3)},
			want: []step{{[]string{"a", "late"}, 4, 4}}},
		{name: "one block", from: 7, tip: 7, w: 100, txs: []Transaction{tx("a", 7, 1)},
			want: []step{{[]string{"a"}, 1, 1}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []step
			err := ScanInWindows(tc.txs, tc.from, tc.tip, tc.w, func(b ScanBatch) error {
				if b.Unit != "blocks" {
					t.Errorf("unit %q", b.Unit)
				}
				var ids []string
				for _, t := range b.Transactions {
					ids = append(ids, t.TxID)
				}
				got = append(got, step{ids, b.Done, b.Total})
				return nil
			})
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %+v %v, want %+v", got, err, tc.want)
			}
		})
	}
	stop := errors.New("stop")
	calls := 0
	twoBatches := []Transaction{tx("a", 1, 9), tx("b", 2, 8)}
	err := ScanInWindows(twoBatches, 0, 9, 1, func(ScanBatch) error { calls++; return stop })
	if !errors.Is(err, stop) || calls != 1 {
		t.Fatalf("a visit error must end the scan: %v after %d calls", err, calls)
	}
}
