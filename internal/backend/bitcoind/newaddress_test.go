package bitcoind

import (
	"context"
	"crypto/rand"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/btcsuite/btcd/address/v2/base58"
)

// simnetAddress is a valid simnet P2PKH address that starts "Sb1", or one that does not.
func simnetAddress(t *testing.T, startsSb1 bool) string {
	t.Helper()
	h := make([]byte, 20)
	for {
		if _, err := rand.Read(h); err != nil {
			t.Fatal(err)
		}
		if a := base58.CheckEncode(h, 0x3f); strings.HasPrefix(a, "Sb1") == startsSb1 {
			return a
		}
	}
}

// btcwallet v0.15 on simnet may hand out an address starting "Sb1", which it cannot pay, or
// refuse to hand one out at all with the same words; NewAddress draws past both.
func TestNewAddressDrawsPastSb1(t *testing.T) {
	refused, unpayable, good := simnetAddress(t, true), simnetAddress(t, true), simnetAddress(t, false)
	for _, tc := range []struct {
		network string
		want    string
		calls   int
		err     string
	}{
		{"simnet", good, 3, ""},
		// Elsewhere an "Sb1" refusal is not the quirk: it is the answer.
		{"regtest", "", 1, "Invalid address or key"},
	} {
		w := &refusingWallet{refused: refused, refusals: 1, addresses: []string{unpayable, good}}
		srv := httptest.NewServer(w)
		c, err := New(Options{URL: srv.URL, Flavor: Btcwallet, User: "u", Password: "p", Timeout: 10 * time.Second, Coin: "bitcoin", Network: tc.network})
		if err != nil {
			t.Fatal(err)
		}
		addr, err := c.NewAddress(context.Background(), "")
		c.Close()
		srv.Close()
		if addr != tc.want || len(w.calls) != tc.calls || (tc.err == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s: %q after %d calls (%v), want %q after %d", tc.network, addr, len(w.calls), err, tc.want, tc.calls)
		}
	}
}
