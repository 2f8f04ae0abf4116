package helper

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cryptoassets/cryptoassets-operator/internal/broadcast"
	"github.com/cryptoassets/cryptoassets-operator/internal/intake"
)

// metrics are the helper's Prometheus series, on a registry of the helper's own.
type metrics struct {
	notifications *prometheus.CounterVec
	rejected      *prometheus.CounterVec
	deposits      *prometheus.CounterVec
	catchUps      *prometheus.HistogramVec
	broadcasts    *prometheus.CounterVec
	refusedSends  prometheus.Counter
	events        *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		notifications: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cryptoassets_notifications_total",
			Help: "Wallet notifications received, by source."}, []string{"source"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cryptoassets_notifications_rejected_total",
			Help: "Wallet notifications refused as malformed, by source."}, []string{"source"}),
		deposits: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cryptoassets_deposits_total",
			Help: "Deposit changes booked: booked (new), credited, uncredited (reorg or double spend)."}, []string{"change"}),
		catchUps: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "cryptoassets_catchup_duration_seconds",
			Help: "Duration of catch-up passes, by result.", Buckets: prometheus.ExponentialBuckets(0.01, 2, 12)}, []string{"result"}),
		broadcasts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cryptoassets_broadcast_passes_total",
			Help: "Broadcast passes that did something, by result: sent (one network transaction), reconciled (an interrupted one found in the wallet), waiting (for an interrupted one's record), failed."}, []string{"result"}),
		refusedSends: prometheus.NewCounter(prometheus.CounterOpts{Name: "cryptoassets_sends_refused_total",
			Help: "Sends the backend refused on their own (a dust amount, an address it will not pay), moved to needs_review."}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cryptoassets_event_deliveries_total",
			Help: "Event delivery attempts, by target and result."}, []string{"target", "result"}),
	}
	reg.MustRegister(m.notifications, m.rejected, m.deposits, m.catchUps, m.broadcasts, m.refusedSends, m.events)
	return m
}

func (m *metrics) notification(source string) { m.notifications.WithLabelValues(source).Inc() }

func (m *metrics) rejectedNotification(source string) { m.rejected.WithLabelValues(source).Inc() }

func (m *metrics) catchUp(d time.Duration, r intake.Result, err error) {
	result := "ok"
	if err != nil {
		result = "error"
	}
	m.catchUps.WithLabelValues(result).Observe(d.Seconds())
	m.deposits.WithLabelValues("booked").Add(float64(r.Booked))
	m.deposits.WithLabelValues("credited").Add(float64(r.Credited))
	m.deposits.WithLabelValues("uncredited").Add(float64(r.Uncredited))
}

func (m *metrics) broadcast(r broadcast.Result, err error) {
	m.refusedSends.Add(float64(r.Refused))
	switch {
	case err != nil:
		m.broadcasts.WithLabelValues("failed").Inc()
	case r.Sent:
		m.broadcasts.WithLabelValues("sent").Inc()
	case r.Reconciled:
		m.broadcasts.WithLabelValues("reconciled").Inc()
	case r.Waiting:
		m.broadcasts.WithLabelValues("waiting").Inc()
	}
}

func (m *metrics) eventAttempt(target string, err error) {
	result := "delivered"
	if err != nil {
		result = "failed"
	}
	m.events.WithLabelValues(target, result).Inc()
}

// registerHealthGauges exports what the probes and conditions say as gauges people alert on.
func registerHealthGauges(reg prometheus.Registerer, h *health) {
	for _, g := range []struct{ name, component, help string }{
		{"cryptoassets_backend_up", "backend", "1 when the helper's last contact with its backend succeeded."},
		{"cryptoassets_ledger_up", "ledger", "1 when the helper reaches its ledger database."},
		{"cryptoassets_active_helper", "active", "1 when this replica holds the asset's active-helper lock."},
	} {
		component := g.component
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: g.name, Help: g.help}, func() float64 {
			if st, ok := h.get(component); ok && st.OK {
				return 1
			}
			return 0
		}))
	}
}
