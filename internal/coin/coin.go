// Package coin is the registry of coins the helper serves: their codes, units and defaults.
// Adding a bitcoind-compatible coin means adding an entry here.
package coin

import (
	"fmt"
	"sort"
)

// Coin describes one coin.
type Coin struct {
	// Name is the registry key, as written in a CryptoAsset: bitcoin.
	Name string
	// Code is the ticker: BTC.
	Code string
	// Decimals is the number of base units per coin as a power of ten (8: 1 BTC = 10^8 satoshi).
	Decimals int
	// DefaultConfirmations is the credit threshold when the CryptoAsset does not set one.
	DefaultConfirmations int32
	// Networks the coin exists on.
	Networks []string
}

// registry is built by a function, not held in a package variable, so nothing can mutate it.
func registry() map[string]Coin {
	return map[string]Coin{
		// Three confirmations is what cryptoassets.core credited bitcoin deposits at; keep it so
		// existing users see the same behaviour.
		"bitcoin":  {Name: "bitcoin", Code: "BTC", Decimals: 8, DefaultConfirmations: 3, Networks: []string{"mainnet", "testnet", "regtest", "simnet"}},
		"litecoin": {Name: "litecoin", Code: "LTC", Decimals: 8, DefaultConfirmations: 6, Networks: []string{"mainnet", "testnet", "regtest", "simnet"}},
		"dogecoin": {Name: "dogecoin", Code: "DOGE", Decimals: 8, DefaultConfirmations: 6, Networks: []string{"mainnet", "testnet", "regtest"}},
	}
}

// Lookup returns the coin called name.
func Lookup(name string) (Coin, error) {
	c, ok := registry()[name]
	if !ok {
		return Coin{}, fmt.Errorf("unknown coin %q (known: %v)", name, Names())
	}
	return c, nil
}

// LookupNetwork returns the coin called name after checking it exists on network.
func LookupNetwork(name, network string) (Coin, error) {
	c, err := Lookup(name)
	if err != nil {
		return Coin{}, err
	}
	for _, n := range c.Networks {
		if n == network {
			return c, nil
		}
	}
	return Coin{}, fmt.Errorf("coin %s has no network %q (it has %v)", name, network, c.Networks)
}

// Names lists the registered coins in alphabetical order.
func Names() []string {
	var names []string
	for n := range registry() {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
