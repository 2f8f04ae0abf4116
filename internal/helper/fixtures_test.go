package helper

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/cryptoassets/cryptoassets-operator/internal/config"
	"github.com/cryptoassets/cryptoassets-operator/internal/testing/testassets"
)

// credential writes a credential file, as a projected Secret would hold it.
func credential(t *testing.T, name, value string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(value+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// balanceIs checks an account's balance through the API, for eventually.
func balanceIs(t *testing.T, cfg *config.Config, account int64, want string) func() error {
	return func() error {
		var a struct{ Balance string }
		call(t, cfg, "GET", fmt.Sprintf("/v1/accounts/%d", account), testassets.APIToken, nil, nil, &a)
		if a.Balance != want {
			return fmt.Errorf("balance %s, want %s", a.Balance, want)
		}
		return nil
	}
}

// metric reads one series from the helper's /metrics: name, and label pairs to match.
func metric(t *testing.T, cfg *config.Config, name string, labels ...string) (float64, bool) {
	t.Helper()
	resp, err := http.Get("http://" + cfg.Server.MetricsListen + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	f, ok := families[name]
	if !ok {
		return 0, false
	}
next:
	for _, m := range f.Metric {
		for i := 0; i+1 < len(labels); i += 2 {
			found := false
			for _, lp := range m.Label {
				found = found || (lp.GetName() == labels[i] && lp.GetValue() == labels[i+1])
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		}
	}
	return 0, false
}

// metricIs waits for a series to reach want.
func metricIs(t *testing.T, cfg *config.Config, want float64, name string, labels ...string) func() error {
	return func() error {
		got, ok := metric(t, cfg, name, labels...)
		if !ok || got != want {
			return fmt.Errorf("%s%v = %v (present: %v), want %v", name, labels, got, ok, want)
		}
		return nil
	}
}
