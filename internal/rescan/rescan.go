// Package rescan runs rescans: one pass over the backend's wallet history that books whatever
// notifications missed. A rescan is asked for by a new cryptoassets.io/rescan annotation value on
// the helper's CryptoAsset (Watcher) or from a shell (the `cryptoassets rescan` command); both end
// in intake.Rescan, the same idempotent booking path notifications use.
package rescan

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cryptoassets/cryptoassets-operator/internal/intake"
)

// Metrics are the rescan series.
type Metrics struct {
	started  prometheus.Counter
	finished *prometheus.CounterVec
	duration *prometheus.HistogramVec
	found    prometheus.Counter
	booked   prometheus.Counter
}

// NewMetrics registers the rescan series on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		started: prometheus.NewCounter(prometheus.CounterOpts{Name: "cryptoassets_rescans_started_total",
			Help: "Rescans started."}),
		finished: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cryptoassets_rescans_finished_total",
			Help: "Rescans finished, by result: succeeded, failed (started minus finished are running or were interrupted)."}, []string{"result"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "cryptoassets_rescan_duration_seconds",
			Help: "Duration of finished rescans, by result.", Buckets: prometheus.ExponentialBuckets(0.1, 2, 14)}, []string{"result"}),
		found: prometheus.NewCounter(prometheus.CounterOpts{Name: "cryptoassets_rescan_transactions_found_total",
			Help: "Wallet transactions paying the asset's addresses that rescans went through."}),
		booked: prometheus.NewCounter(prometheus.CounterOpts{Name: "cryptoassets_rescan_transactions_booked_total",
			Help: "Transactions rescans found that the ledger did not know: what notifications had missed."}),
	}
	reg.MustRegister(m.started, m.finished, m.duration, m.found, m.booked)
	return m
}

// Run performs one rescan from fromHeight, calling progress after every batch, and counts it in
// m (which may be nil).
func Run(ctx context.Context, in *intake.Intake, fromHeight int64, m *Metrics, progress func(intake.RescanProgress)) (intake.RescanResult, error) {
	if m != nil {
		m.started.Inc()
	}
	start := time.Now()
	r, err := in.Rescan(ctx, fromHeight, progress)
	if m != nil {
		result := "succeeded"
		if err != nil {
			result = "failed"
		}
		m.finished.WithLabelValues(result).Inc()
		m.duration.WithLabelValues(result).Observe(time.Since(start).Seconds())
		m.found.Add(float64(r.TxFound))
		m.booked.Add(float64(r.TxBooked))
	}
	return r, err
}

// Throttle passes progress on at most once per interval; the final state is always written by
// the caller, so a dropped update is never the last word.
type Throttle struct {
	Every time.Duration
	last  time.Time
}

// Ready says whether an update may go out now, and if so starts a new interval.
func (t *Throttle) Ready(now time.Time) bool {
	if !t.last.IsZero() && now.Sub(t.last) < t.Every {
		return false
	}
	t.last = now
	return true
}
