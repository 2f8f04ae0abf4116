package coin

import (
	"errors"
	"fmt"
	"strings"

	"github.com/btcsuite/btcd/address/v2/base58"
	"github.com/btcsuite/btcd/address/v2/bech32"
)

// AddressParams are what a network's addresses are made of. btcutil's own DecodeAddress is not
// used: it recognises bech32 prefixes through a global registry (adding litecoin would mean
// mutating it) and accepts raw public keys, which are not addresses anyone should pay.
type AddressParams struct {
	// PubKeyHash and ScriptHash are the base58check version bytes of P2PKH and P2SH addresses,
	// as strings so that a network's parameters are constants: looking them up allocates nothing.
	PubKeyHash string
	ScriptHash string
	// HRP is the bech32 human-readable part of segwit addresses; empty where there is no segwit.
	HRP string
}

// addressParams returns the address parameters of a coin's network, and false for a pair the
// registry does not have. The table is an array walked in place, not a map built on each call
// (the registry's way of keeping a table immutable): ValidateAddress runs on every output of
// every payment, and building the map took 41 allocations and 2.5 µs an address, more than the
// address's own checks (BenchmarkValidateAddress).
func addressParams(coinName, network string) (AddressParams, bool) {
	for _, e := range [...]struct {
		coin, network string
		params        AddressParams
	}{
		{"bitcoin", "mainnet", AddressParams{PubKeyHash: "\x00", ScriptHash: "\x05", HRP: "bc"}},
		{"bitcoin", "testnet", AddressParams{PubKeyHash: "\x6f", ScriptHash: "\xc4", HRP: "tb"}},
		{"bitcoin", "regtest", AddressParams{PubKeyHash: "\x6f", ScriptHash: "\xc4", HRP: "bcrt"}},
		{"bitcoin", "simnet", AddressParams{PubKeyHash: "\x3f", ScriptHash: "\x7b", HRP: "sb"}},
		// Litecoin still accepts the old P2SH version bytes it shared with bitcoin (0x05, 0xc4).
		{"litecoin", "mainnet", AddressParams{PubKeyHash: "\x30", ScriptHash: "\x32\x05", HRP: "ltc"}},
		{"litecoin", "testnet", AddressParams{PubKeyHash: "\x6f", ScriptHash: "\x3a\xc4", HRP: "tltc"}},
		{"litecoin", "regtest", AddressParams{PubKeyHash: "\x6f", ScriptHash: "\x3a\xc4", HRP: "rltc"}},
		{"litecoin", "simnet", AddressParams{PubKeyHash: "\x3f", ScriptHash: "\x7b", HRP: "sltc"}},
		// Dogecoin has no segwit addresses.
		{"dogecoin", "mainnet", AddressParams{PubKeyHash: "\x1e", ScriptHash: "\x16"}},
		{"dogecoin", "testnet", AddressParams{PubKeyHash: "\x71", ScriptHash: "\xc4"}},
		{"dogecoin", "regtest", AddressParams{PubKeyHash: "\x6f", ScriptHash: "\xc4"}},
	} {
		if e.coin == coinName && e.network == network {
			return e.params, true
		}
	}
	return AddressParams{}, false
}

// Params returns the address parameters of a coin on a network.
func Params(coinName, network string) (AddressParams, error) {
	if p, ok := addressParams(coinName, network); ok {
		return p, nil
	}
	// The registry's error names what is wrong: the coin, or its network.
	if _, err := LookupNetwork(coinName, network); err != nil {
		return AddressParams{}, err
	}
	return AddressParams{}, fmt.Errorf("coin %s on %s has no address parameters", coinName, network)
}

// ValidateAddress checks that addr is a well-formed P2PKH, P2SH or segwit address of the coin on
// the network, with a valid checksum.
func ValidateAddress(coinName, network, addr string) error {
	p, err := Params(coinName, network)
	if err != nil {
		return err
	}
	if addr == "" || len(addr) > 90 {
		return fmt.Errorf("address must be 1-90 characters, got %d", len(addr))
	}
	if p.HRP != "" && len(addr) > len(p.HRP) && strings.EqualFold(addr[:len(p.HRP)+1], p.HRP+"1") {
		// A base58 address can start with the same letters ("Sb1..." on simnet): only when it is
		// not a valid base58 address of the network is the segwit error the one to report.
		segwitErr := validateSegwit(p.HRP, addr)
		if segwitErr == nil || validateBase58(coinName, network, p, addr) != nil {
			return segwitErr
		}
		return nil
	}
	return validateBase58(coinName, network, p, addr)
}

func validateBase58(coinName, network string, p AddressParams, addr string) error {
	payload, version, err := base58.CheckDecode(addr)
	if err != nil {
		if errors.Is(err, base58.ErrChecksum) {
			return fmt.Errorf("address %q has a bad checksum (mistyped?)", addr)
		}
		return fmt.Errorf("address %q is not a %s %s address", addr, coinName, network)
	}
	if len(payload) != 20 {
		return fmt.Errorf("address %q has a %d-byte payload, want 20", addr, len(payload))
	}
	if strings.IndexByte(p.PubKeyHash, version) >= 0 || strings.IndexByte(p.ScriptHash, version) >= 0 {
		return nil
	}
	return fmt.Errorf("address %q (version byte 0x%02x) is not a %s %s address", addr, version, coinName, network)
}

// validateSegwit follows BIP 173 and BIP 350: witness v0 programs are 20 or 32 bytes in bech32,
// later versions use bech32m.
func validateSegwit(hrp, addr string) error {
	gotHRP, data, enc, err := bech32.DecodeGeneric(addr)
	if err != nil {
		return fmt.Errorf("address %q: %v", addr, err)
	}
	if gotHRP != hrp || len(data) < 1 {
		return fmt.Errorf("address %q is not a segwit address for %q", addr, hrp)
	}
	witnessVersion := data[0]
	program, err := bech32.ConvertBits(data[1:], 5, 8, false)
	if err != nil {
		return fmt.Errorf("address %q: %v", addr, err)
	}
	switch {
	case witnessVersion > 16:
		return fmt.Errorf("address %q: witness version %d does not exist", addr, witnessVersion)
	case len(program) < 2 || len(program) > 40:
		return fmt.Errorf("address %q: witness program of %d bytes", addr, len(program))
	case witnessVersion == 0 && len(program) != 20 && len(program) != 32:
		return fmt.Errorf("address %q: a version 0 witness program is 20 or 32 bytes, not %d", addr, len(program))
	case witnessVersion == 0 && enc != bech32.Version0:
		return fmt.Errorf("address %q: version 0 addresses use bech32, not bech32m", addr)
	case witnessVersion != 0 && enc != bech32.VersionM:
		return fmt.Errorf("address %q: version %d addresses use bech32m", addr, witnessVersion)
	}
	return nil
}

// EncodeAddress makes the address paying a 20-byte key hash on a network: P2WPKH (segwit v0)
// where the network has segwit, else P2PKH. The null simulator and tests use it; the helper
// itself only ever takes addresses from its backend.
func EncodeAddress(coinName, network string, keyHash []byte) (string, error) {
	p, err := Params(coinName, network)
	if err != nil {
		return "", err
	}
	if len(keyHash) != 20 {
		return "", fmt.Errorf("a key hash is 20 bytes, got %d", len(keyHash))
	}
	if p.HRP != "" {
		conv, err := bech32.ConvertBits(keyHash, 8, 5, true)
		if err != nil {
			return "", err
		}
		return bech32.Encode(p.HRP, append([]byte{0}, conv...))
	}
	return base58.CheckEncode(keyHash, p.PubKeyHash[0]), nil
}
