package walletnotify

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// Handler is what a source calls for every txid it hears of. It looks the transaction up at the
// backend; the source believes nothing by itself.
type Handler func(ctx context.Context, txid string) error

// ParseTxID checks that s is a transaction id (64 hex digits, surrounding space ignored) and
// returns it in lower case.
func ParseTxID(s string) (string, error) {
	txid := strings.TrimSpace(s)
	if txid == "" {
		return "", errors.New("no txid")
	}
	if b, err := hex.DecodeString(txid); err != nil || len(b) != 32 {
		return "", fmt.Errorf("txid must be 64 hex digits, got %q", truncate(txid))
	}
	return strings.ToLower(txid), nil
}
