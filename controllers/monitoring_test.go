package controllers_test

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
)

// TestAlertsAndDashboardUseOperatorMetrics: the controller-runtime series the chart's alerts and
// dashboard query are ones the running operator exports (with its controller's name).
func TestAlertsAndDashboardUseOperatorMetrics(t *testing.T) {
	// The controller's series appear with its first reconcile.
	ns := newNamespace(t)
	create(t, sampleSecret(ns), sampleAsset(ns, "btc"))
	eventually(t, waitTime, func() error {
		if reconciles(t) == 0 {
			return fmt.Errorf("no reconcile yet")
		}
		return nil
	})
	families, err := ctrlmetrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	exported := map[string]bool{}
	for _, f := range families {
		for _, m := range f.Metric {
			for _, l := range m.Label {
				if l.GetName() == "controller" && l.GetValue() == "cryptoasset" {
					exported[f.GetName()] = true
				}
			}
		}
	}
	chart := filepath.Join("..", "charts", "cryptoassets-operator")
	series := regexp.MustCompile(`\bcontroller_runtime_[a-z0-9_]+`)
	found := 0
	for _, f := range []string{filepath.Join(chart, "files", "dashboard.json"), filepath.Join(chart, "templates", "monitoring.yaml")} {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range series.FindAllString(string(raw), -1) {
			found++
			if !exported[name] {
				t.Errorf("%s queries %s, which the operator does not export for controller cryptoasset (it exports %v)", filepath.Base(f), name, exported)
			}
		}
	}
	if found == 0 {
		t.Error("neither the dashboard nor the alerts query the operator")
	}
}
