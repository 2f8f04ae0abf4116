package coin

import (
	"strings"
	"testing"
)

func TestLookupNetwork(t *testing.T) {
	for _, tc := range []struct {
		coin, network string
		code          string
		err           string
	}{
		{"bitcoin", "mainnet", "BTC", ""},
		{"bitcoin", "simnet", "BTC", ""},
		{"litecoin", "testnet", "LTC", ""},
		{"dogecoin", "regtest", "DOGE", ""},
		{"dogecoin", "simnet", "", `coin dogecoin has no network "simnet"`},
		{"monero", "mainnet", "", `unknown coin "monero" (known: [bitcoin dogecoin litecoin])`},
	} {
		c, err := LookupNetwork(tc.coin, tc.network)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s/%s: error %v, want %q", tc.coin, tc.network, err, tc.err)
			}
			continue
		}
		if err != nil || c.Code != tc.code || c.Decimals != 8 || c.DefaultConfirmations < 1 {
			t.Errorf("%s/%s: %+v %v", tc.coin, tc.network, c, err)
		}
	}
}
