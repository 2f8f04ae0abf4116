package ledger

import "github.com/cryptoassets/cryptoassets-operator/internal/amount"

// Amount is the ledger's money type, amount.Amount: the ledger's API speaks in it, and callers
// that already use the ledger need not import both.
type Amount = amount.Amount

// ErrOverflow is returned by arithmetic and parsing that would leave Amount's range.
var ErrOverflow = amount.ErrOverflow

// ParseAmount is amount.Parse.
func ParseAmount(s string, decimals int) (Amount, error) { return amount.Parse(s, decimals) }
