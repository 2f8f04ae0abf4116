package amount

import (
	"errors"
	"math"
	"testing"
)

func TestParseAndFormatAmount(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Amount
		out  string
	}{
		{"0.00021000", 21000, "0.00021000"},
		{"1", 100_000_000, "1.00000000"},
		{"1.5", 150_000_000, "1.50000000"},
		{"0", 0, "0.00000000"},
		{"-0.1", -10_000_000, "-0.10000000"},
		{"92233720368.54775807", math.MaxInt64, "92233720368.54775807"},
		{"-92233720368.54775807", -math.MaxInt64, "-92233720368.54775807"},
	} {
		got, err := Parse(tc.in, 8)
		if err != nil || got != tc.want {
			t.Errorf("Parse(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
			continue
		}
		if s := got.Format(8); s != tc.out {
			t.Errorf("Format(%d) = %q, want %q", got, s, tc.out)
		}
	}
	if s := Amount(math.MinInt64).Format(8); s != "-92233720368.54775808" {
		t.Errorf("MinInt64 formats as %q", s)
	}
	for _, bad := range []string{"", ".", "1.", ".5", "1e8", "0.000000001", "1,5", "+1", "--1", "0x10", " 1", "1.2.3", "92233720368.54775808", "99999999999999999999999"} {
		if v, err := Parse(bad, 8); err == nil {
			t.Errorf("Parse(%q) = %d, want an error", bad, v)
		}
	}
	if _, err := Parse("92233720368.54775808", 8); !errors.Is(err, ErrOverflow) {
		t.Errorf("overflow not reported as ErrOverflow: %v", err)
	}
}

func TestAmountArithmetic(t *testing.T) {
	if _, err := Amount(math.MaxInt64).Add(1); !errors.Is(err, ErrOverflow) {
		t.Errorf("MaxInt64+1: %v", err)
	}
	if _, err := Amount(math.MinInt64).Add(-1); !errors.Is(err, ErrOverflow) {
		t.Errorf("MinInt64-1: %v", err)
	}
	if _, err := Amount(0).Sub(math.MinInt64); !errors.Is(err, ErrOverflow) {
		t.Errorf("0-MinInt64: %v", err)
	}
	if v, err := Amount(5).Sub(7); err != nil || v != -2 {
		t.Errorf("5-7 = %d, %v", v, err)
	}
}
