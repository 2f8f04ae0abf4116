package helper

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cryptoassets/cryptoassets-operator/internal/rescan"
)

// describedNames records the metric names of every collector registered with it.
type describedNames map[string]bool

func (n describedNames) Register(c prometheus.Collector) error {
	ch := make(chan *prometheus.Desc)
	go func() { c.Describe(ch); close(ch) }()
	fq := regexp.MustCompile(`fqName: "([^"]+)"`)
	for d := range ch {
		if m := fq.FindStringSubmatch(d.String()); m != nil {
			n[m[1]] = true
		}
	}
	return nil
}

func (n describedNames) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		_ = n.Register(c)
	}
}

func (n describedNames) Unregister(prometheus.Collector) bool { return true }

// TestDashboardAndAlertsUseExportedMetrics: every cryptoassets_* series the chart's Grafana
// dashboard and alerting rules query is one the helper exports, so a renamed metric cannot
// silently blank a panel or mute an alert.
func TestDashboardAndAlertsUseExportedMetrics(t *testing.T) {
	exported := describedNames{}
	newMetrics(exported)
	registerHealthGauges(exported, newHealth())
	rescan.NewMetrics(exported)
	if len(exported) < 15 {
		t.Fatalf("only %d metric names found: %v", len(exported), exported)
	}
	known := func(name string) bool {
		for _, suffix := range []string{"", "_bucket", "_count", "_sum"} {
			if exported[strings.TrimSuffix(name, suffix)] && strings.HasSuffix(name, suffix) {
				return true
			}
		}
		return false
	}
	chart := filepath.Join("..", "..", "charts", "cryptoassets-operator")
	raw, err := os.ReadFile(filepath.Join(chart, "files", "dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dashboard struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	if err := json.Unmarshal(raw, &dashboard); err != nil {
		t.Fatalf("dashboard.json is not JSON: %v", err)
	}
	series := regexp.MustCompile(`\bcryptoassets_[a-z0-9_]+`)
	var exprs []string
	for _, p := range dashboard.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
	}
	rules, err := os.ReadFile(filepath.Join(chart, "templates", "monitoring.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(rules), "\n") {
		if expr, ok := strings.CutPrefix(strings.TrimSpace(line), "expr:"); ok {
			exprs = append(exprs, expr)
		}
	}
	used := 0
	for _, e := range exprs {
		for _, name := range series.FindAllString(e, -1) {
			used++
			if !known(name) {
				t.Errorf("%s is queried but the helper exports no such metric: %s", name, e)
			}
		}
	}
	if used < 20 {
		t.Errorf("only %d series found in the dashboard and alerts", used)
	}
}
