package bitcoind

import (
	"testing"

	"github.com/cryptoassets/cryptoassets-operator/internal/backend/backendtest"
	"github.com/cryptoassets/cryptoassets-operator/internal/ledger"
)

func TestContractBtcwallet(t *testing.T) {
	backendtest.Run(t, backendtest.Harness{
		Backend: newClient(t), Coin: "bitcoin", Network: "simnet", Amount: 1_234_567,
		Pay: func(t *testing.T, addr string, amount ledger.Amount) string {
			return node.MustPay(t, addr, int64(amount))
		},
		Mine:     func(t *testing.T, n int) { node.MustMine(t, uint32(n)) },
		External: func(t *testing.T) string { return backendtest.ExternalAddress(t, "bitcoin", "simnet") },
	})
}

func TestContractLitecoinCore(t *testing.T) {
	backendtest.Run(t, backendtest.Harness{
		Backend: coreClient(t), Coin: "litecoin", Network: "regtest", Amount: 1_234_567,
		Pay: func(t *testing.T, addr string, amount ledger.Amount) string {
			txid, err := core.Pay(addr, amount.Format(8))
			if err != nil {
				t.Fatal(err)
			}
			return txid
		},
		Mine: func(t *testing.T, n int) {
			if err := core.Mine(n); err != nil {
				t.Fatal(err)
			}
			// The wallet takes blocks from a queue; wait until it has them.
			if _, err := core.Node.RawRequest("syncwithvalidationinterfacequeue", nil); err != nil {
				t.Fatal(err)
			}
		},
		External: func(t *testing.T) string { return backendtest.ExternalAddress(t, "litecoin", "regtest") },
	})
}
