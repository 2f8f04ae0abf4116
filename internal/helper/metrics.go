package helper

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cryptoassets/cryptoassets-operator/internal/broadcast"
	"github.com/cryptoassets/cryptoassets-operator/internal/intake"
	"github.com/cryptoassets/cryptoassets-operator/internal/ledger"
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
	lastCatchUp   prometheus.Gauge
	ledger        *ledgerGauges
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
		lastCatchUp: prometheus.NewGauge(prometheus.GaugeOpts{Name: "cryptoassets_catchup_last_success_timestamp_seconds",
			Help: "Unix time of the last catch-up that succeeded."}),
		ledger: newLedgerGauges(),
	}
	reg.MustRegister(m.notifications, m.rejected, m.deposits, m.catchUps, m.broadcasts, m.refusedSends, m.events, m.lastCatchUp, m.ledger)
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
	if err == nil {
		m.lastCatchUp.SetToCurrentTime()
	}
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

// ledgerGauges are read from the active helper's ledger when Prometheus scrapes, so they are as
// fresh as the scrape and cost nothing between scrapes. A standby (no ledger) reports none of
// them: only the active helper speaks for the asset, and cryptoassets_active_helper says which.
type ledgerGauges struct {
	mu     sync.Mutex
	ledger *ledger.Ledger
	now    func() time.Time

	pending, oldestPending, needsReview, undelivered, oldestUndelivered, givenUp, tip, balance *prometheus.Desc
}

func newLedgerGauges() *ledgerGauges {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, nil)
	}
	return &ledgerGauges{now: time.Now,
		pending:           d("cryptoassets_sends_pending", "Sends queued or being broadcast."),
		oldestPending:     d("cryptoassets_sends_oldest_pending_age_seconds", "Age of the oldest send queued or being broadcast; 0 when none is."),
		needsReview:       d("cryptoassets_sends_needs_review", "Sends in needs_review: refused by the backend on their own, or double-spent."),
		undelivered:       d("cryptoassets_outbox_undelivered_events", "Events push delivery still retries, by target.", "target"),
		oldestUndelivered: d("cryptoassets_outbox_oldest_undelivered_age_seconds", "Age of the oldest event push delivery still retries, by target; 0 when none is.", "target"),
		givenUp:           d("cryptoassets_outbox_given_up_events", "Events push delivery gave up on (still pullable from GET /v1/events), by target.", "target"),
		tip:               d("cryptoassets_chain_tip_height", "Chain height the last catch-up reached."),
		// Base units (satoshi) are exact in a float64 up to 2^53, far beyond any wallet.
		balance: d("cryptoassets_wallet_balance_base_units", "The ledger's balance of the asset's wallet, in the coin's base units (satoshi for bitcoin)."),
	}
}

// serve makes l the ledger the gauges read until the returned release is called.
func (g *ledgerGauges) serve(l *ledger.Ledger) (release func()) {
	g.mu.Lock()
	g.ledger = l
	g.mu.Unlock()
	return func() {
		g.mu.Lock()
		g.ledger = nil
		g.mu.Unlock()
	}
}

func (g *ledgerGauges) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{g.pending, g.oldestPending, g.needsReview, g.undelivered, g.oldestUndelivered, g.givenUp, g.tip, g.balance} {
		ch <- d
	}
}

// scrapeTimeout bounds the ledger queries of one scrape; a slow database makes the gauges
// missing from that scrape (and cryptoassets_ledger_up says why), never a hung scrape.
const scrapeTimeout = 3 * time.Second

func (g *ledgerGauges) Collect(ch chan<- prometheus.Metric) {
	g.mu.Lock()
	l := g.ledger
	g.mu.Unlock()
	if l == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	s, err := l.Stats(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(g.pending, err)
		return
	}
	age := func(t *time.Time) float64 {
		if t == nil {
			return 0
		}
		return max(0, g.now().Sub(*t).Seconds())
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	gauge(g.pending, float64(s.PendingSends))
	gauge(g.oldestPending, age(s.OldestPending))
	gauge(g.needsReview, float64(s.NeedsReview))
	gauge(g.balance, float64(s.WalletBalance))
	for target, o := range s.Outbox {
		gauge(g.undelivered, float64(o.Undelivered), target)
		gauge(g.oldestUndelivered, age(o.OldestCreated), target)
		gauge(g.givenUp, float64(o.GivenUp), target)
	}
	if s.TipHeight >= 0 {
		gauge(g.tip, float64(s.TipHeight))
	}
}
