// Package amount is the money type: a quantity of a coin in its base unit. It is a leaf (it
// imports nothing of the project), so a backend can speak in amounts without depending on the
// ledger.
package amount

import (
	"errors"
	"fmt"
	"math"
	"math/bits"
	"strings"
)

// Amount is a quantity of a coin in its base unit (satoshi for bitcoin). Money is never a float:
// amounts are exact integers in the ledger and decimal strings ("0.00021000") on the wire.
//
// int64 holds 92 billion coins of 8 decimals; no single account or wallet comes near that, and
// arithmetic that would leave the range is an error, never a wrap.
type Amount int64

// ErrOverflow is returned by arithmetic and parsing that would leave Amount's range.
var ErrOverflow = errors.New("amount out of range")

// Add returns a+b or ErrOverflow.
func (a Amount) Add(b Amount) (Amount, error) {
	s := a + b
	if (b > 0 && s < a) || (b < 0 && s > a) {
		return 0, fmt.Errorf("%d + %d: %w", a, b, ErrOverflow)
	}
	return s, nil
}

// Sub returns a-b or ErrOverflow.
func (a Amount) Sub(b Amount) (Amount, error) {
	if b == math.MinInt64 {
		return 0, fmt.Errorf("%d - %d: %w", a, b, ErrOverflow)
	}
	return a.Add(-b)
}

// Parse reads a decimal string with at most `decimals` fractional digits ("1.5", "0.00021000")
// into base units. It refuses exponents, signs other than a leading '-', more fractional digits
// than the coin has (rounding money silently is a bug), and values out of range.
func Parse(s string, decimals int) (Amount, error) {
	orig := s
	if s == "" {
		return 0, errors.New("amount is empty")
	}
	neg := false
	if s[0] == '-' {
		neg, s = true, s[1:]
	}
	whole, frac, hasPoint := strings.Cut(s, ".")
	if whole == "" || (hasPoint && frac == "") {
		return 0, fmt.Errorf("amount %q: want digits like 1.25", orig)
	}
	if len(frac) > decimals {
		return 0, fmt.Errorf("amount %q has more than %d decimal places", orig, decimals)
	}
	digits := whole + frac + strings.Repeat("0", decimals-len(frac))
	var v uint64
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("amount %q: want digits like 1.25", orig)
		}
		hi, lo := bits.Mul64(v, 10)
		if hi != 0 {
			return 0, fmt.Errorf("amount %q: %w", orig, ErrOverflow)
		}
		var carry uint64
		v, carry = bits.Add64(lo, uint64(c-'0'), 0)
		if carry != 0 {
			return 0, fmt.Errorf("amount %q: %w", orig, ErrOverflow)
		}
	}
	if v > math.MaxInt64 {
		return 0, fmt.Errorf("amount %q: %w", orig, ErrOverflow)
	}
	if neg {
		return -Amount(v), nil
	}
	return Amount(v), nil
}

// Format writes the amount with exactly `decimals` fractional digits: Amount(21000).Format(8) is
// "0.00021000".
func (a Amount) Format(decimals int) string {
	neg := a < 0
	u := uint64(a)
	if neg {
		u = uint64(-(a + 1)) + 1 // -MinInt64 does not fit; this does
	}
	s := fmt.Sprintf("%0*d", decimals+1, u)
	out := s[:len(s)-decimals]
	if decimals > 0 {
		out += "." + s[len(s)-decimals:]
	}
	if neg {
		out = "-" + out
	}
	return out
}
