package coin

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/btcsuite/btcd/address/v2/base58"
	"github.com/btcsuite/btcd/address/v2/bech32"
)

func hash20() []byte { return bytes.Repeat([]byte{0xab}, 20) }

func segwit(t *testing.T, hrp string, version byte, program []byte) string {
	t.Helper()
	conv, err := bech32.ConvertBits(program, 8, 5, true)
	if err != nil {
		t.Fatal(err)
	}
	data := append([]byte{version}, conv...)
	var s string
	if version == 0 {
		s, err = bech32.Encode(hrp, data)
	} else {
		s, err = bech32.EncodeM(hrp, data)
	}
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestValidateAddress(t *testing.T) {
	valid := []struct{ coin, network, addr string }{
		// Published addresses: the genesis coinbase, BIP 173 and BIP 350 vectors.
		{"bitcoin", "mainnet", "1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa"},
		{"bitcoin", "mainnet", "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4"},
		{"bitcoin", "mainnet", "BC1QW508D6QEJXTDG4Y5R3ZARVARY0C5XW7KV8F3T4"},
		{"bitcoin", "mainnet", "bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqzk5jj0"},
		{"bitcoin", "testnet", "tb1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3q0sl5k7"},
		{"bitcoin", "mainnet", base58.CheckEncode(hash20(), 0x05)},
		{"bitcoin", "testnet", base58.CheckEncode(hash20(), 0x6f)},
		{"bitcoin", "regtest", base58.CheckEncode(hash20(), 0xc4)},
		{"bitcoin", "simnet", base58.CheckEncode(hash20(), 0x3f)},
		{"litecoin", "mainnet", base58.CheckEncode(hash20(), 0x30)},
		{"litecoin", "mainnet", base58.CheckEncode(hash20(), 0x32)},
		{"litecoin", "testnet", base58.CheckEncode(hash20(), 0x3a)},
		{"dogecoin", "mainnet", base58.CheckEncode(hash20(), 0x1e)},
		{"dogecoin", "testnet", base58.CheckEncode(hash20(), 0x71)},
	}
	for _, tc := range valid {
		if err := ValidateAddress(tc.coin, tc.network, tc.addr); err != nil {
			t.Errorf("%s %s %s: %v", tc.coin, tc.network, tc.addr, err)
		}
	}
	// Segwit addresses built here, for the networks without published vectors.
	for _, tc := range []struct{ coin, network, hrp string }{
		{"bitcoin", "regtest", "bcrt"}, {"bitcoin", "simnet", "sb"}, {"litecoin", "mainnet", "ltc"}, {"litecoin", "regtest", "rltc"},
	} {
		addr := segwit(t, tc.hrp, 0, hash20())
		if err := ValidateAddress(tc.coin, tc.network, addr); err != nil {
			t.Errorf("%s %s %s: %v", tc.coin, tc.network, addr, err)
		}
	}

	genesis := "1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa"
	invalid := []struct{ coin, network, addr, want string }{
		{"bitcoin", "mainnet", "", "1-90 characters"},
		{"bitcoin", "mainnet", genesis[:len(genesis)-1] + "b", "bad checksum"},
		{"bitcoin", "testnet", genesis, "is not a bitcoin testnet address"},
		{"litecoin", "mainnet", genesis, "is not a litecoin mainnet address"},
		{"dogecoin", "mainnet", "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4", "not a dogecoin mainnet address"},
		{"bitcoin", "testnet", "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4", "not a bitcoin testnet address"},
		{"bitcoin", "mainnet", "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t5", "checksum"},
		{"bitcoin", "mainnet", "bc1qW508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4", "not all lowercase or all uppercase"},
		{"bitcoin", "mainnet", base58.CheckEncode(hash20()[:19], 0x00), "19-byte payload"},
		{"bitcoin", "mainnet", "0x52908400098527886E0F7030069857D2E4169EE7", "not a bitcoin mainnet address"},
		{"bitcoin", "mainnet", "0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798", "not a bitcoin mainnet address"},
		{"monero", "mainnet", genesis, "unknown coin"},
		{"dogecoin", "simnet", genesis, "no network"},
	}
	for _, tc := range invalid {
		err := ValidateAddress(tc.coin, tc.network, tc.addr)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s %s %q: error %v, want %q", tc.coin, tc.network, tc.addr, err, tc.want)
		}
	}
	// Encodings BIP 350 forbids: v0 in bech32m, v1 in bech32, bad program lengths.
	for name, addr := range map[string]string{
		"v0 in bech32m": func() string {
			s, _ := bech32.EncodeM("bc", append([]byte{0}, must(bech32.ConvertBits(hash20(), 8, 5, true))...))
			return s
		}(),
		"v1 in bech32": func() string {
			s, _ := bech32.Encode("bc", append([]byte{1}, must(bech32.ConvertBits(hash20(), 8, 5, true))...))
			return s
		}(),
		"v0 of 25 bytes": segwit(t, "bc", 0, bytes.Repeat([]byte{1}, 25)),
	} {
		if err := ValidateAddress("bitcoin", "mainnet", addr); err == nil {
			t.Errorf("%s (%s) accepted", name, addr)
		}
	}
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

// TestBase58AddressThatLooksLikeBech32 covers base58 addresses whose first letters spell the
// network's bech32 prefix: simnet P2PKH addresses start with "S", and some with "Sb1".
func TestBase58AddressThatLooksLikeBech32(t *testing.T) {
	h := make([]byte, 20)
	for i := 0; ; i++ {
		h[0], h[1], h[2] = byte(i), byte(i>>8), byte(i>>16)
		addr := base58.CheckEncode(h, 0x3f)
		if !strings.HasPrefix(strings.ToLower(addr), "sb1") {
			continue
		}
		if err := ValidateAddress("bitcoin", "simnet", addr); err != nil {
			t.Fatalf("%s: %v", addr, err)
		}
		// The same letters that are neither valid base58 nor valid bech32 are still refused.
		last := "z"
		if strings.HasSuffix(addr, "z") {
			last = "y"
		}
		broken := addr[:len(addr)-1] + last
		if err := ValidateAddress("bitcoin", "simnet", broken); err == nil {
			t.Errorf("%s (checksum broken) accepted", broken)
		}
		return
	}
}

// Every network of every registered coin has address parameters, and a pair the registry does
// not have is refused with the registry's own reason.
func TestParamsCoverTheRegistry(t *testing.T) {
	for _, name := range Names() {
		c, err := Lookup(name)
		if err != nil {
			t.Fatal(err)
		}
		for _, network := range c.Networks {
			p, err := Params(name, network)
			if err != nil || len(p.PubKeyHash) == 0 || len(p.ScriptHash) == 0 {
				t.Errorf("%s %s: %+v %v", name, network, p, err)
			}
		}
	}
	for _, tc := range []struct{ coin, network, err string }{
		{"dogecoin", "simnet", `coin dogecoin has no network "simnet"`},
		{"monero", "mainnet", `unknown coin "monero"`},
	} {
		if _, err := Params(tc.coin, tc.network); err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s %s: error %v, want %q", tc.coin, tc.network, err, tc.err)
		}
	}
}

// BenchmarkValidateAddress checks an address as a payment's every output is checked, next to
// the part no check can skip, base58check decoding (a hash of the payload), in the same run.
// The ratio is what the rest costs: the network's parameters and the version and length checks.
func BenchmarkValidateAddress(b *testing.B) {
	addr := base58.CheckEncode(hash20(), 0x3f)
	start := time.Now()
	for range b.N {
		if _, _, err := base58.CheckDecode(addr); err != nil {
			b.Fatal(err)
		}
	}
	decode := time.Since(start)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if err := ValidateAddress("bitcoin", "simnet", addr); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(decode.Nanoseconds())/float64(b.N), "decode-ns/op")
	b.ReportMetric(float64(b.Elapsed())/float64(decode), "ratio")
}
