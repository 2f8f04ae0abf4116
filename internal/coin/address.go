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
	// PubKeyHash and ScriptHash are the base58check version bytes of P2PKH and P2SH addresses.
	PubKeyHash []byte
	ScriptHash []byte
	// HRP is the bech32 human-readable part of segwit addresses; empty where there is no segwit.
	HRP string
}

func addressParams() map[string]map[string]AddressParams {
	return map[string]map[string]AddressParams{
		"bitcoin": {
			"mainnet": {PubKeyHash: []byte{0x00}, ScriptHash: []byte{0x05}, HRP: "bc"},
			"testnet": {PubKeyHash: []byte{0x6f}, ScriptHash: []byte{0xc4}, HRP: "tb"},
			"regtest": {PubKeyHash: []byte{0x6f}, ScriptHash: []byte{0xc4}, HRP: "bcrt"},
			"simnet":  {PubKeyHash: []byte{0x3f}, ScriptHash: []byte{0x7b}, HRP: "sb"},
		},
		// Litecoin still accepts the old P2SH version bytes it shared with bitcoin (0x05, 0xc4).
		"litecoin": {
			"mainnet": {PubKeyHash: []byte{0x30}, ScriptHash: []byte{0x32, 0x05}, HRP: "ltc"},
			"testnet": {PubKeyHash: []byte{0x6f}, ScriptHash: []byte{0x3a, 0xc4}, HRP: "tltc"},
			"regtest": {PubKeyHash: []byte{0x6f}, ScriptHash: []byte{0x3a, 0xc4}, HRP: "rltc"},
			"simnet":  {PubKeyHash: []byte{0x3f}, ScriptHash: []byte{0x7b}, HRP: "sltc"},
		},
		// Dogecoin has no segwit addresses.
		"dogecoin": {
			"mainnet": {PubKeyHash: []byte{0x1e}, ScriptHash: []byte{0x16}},
			"testnet": {PubKeyHash: []byte{0x71}, ScriptHash: []byte{0xc4}},
			"regtest": {PubKeyHash: []byte{0x6f}, ScriptHash: []byte{0xc4}},
		},
	}
}

// Params returns the address parameters of a coin on a network.
func Params(coinName, network string) (AddressParams, error) {
	if _, err := LookupNetwork(coinName, network); err != nil {
		return AddressParams{}, err
	}
	return addressParams()[coinName][network], nil
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
	if p.HRP != "" && strings.HasPrefix(strings.ToLower(addr), p.HRP+"1") {
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
	for _, v := range append(append([]byte(nil), p.PubKeyHash...), p.ScriptHash...) {
		if version == v {
			return nil
		}
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
