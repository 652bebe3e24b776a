package delivery

import "github.com/prometheus/client_golang/prometheus"

// Metrics count the worker's attempts by destination kind; serve shows
// them on the API's /metrics. The lag is read from the database there
// (auditlog_delivery_lag_events), wherever the worker runs.
type Metrics struct {
	deliveries, failures, events *prometheus.CounterVec
}

// NewMetrics makes the worker's counters.
func NewMetrics() *Metrics {
	counter := func(name, help string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, []string{"kind"})
	}
	return &Metrics{
		deliveries: counter("auditlog_deliveries_total", "Delivery attempts that succeeded, by destination kind."),
		failures:   counter("auditlog_delivery_failures_total", "Delivery attempts that failed (an error, or an answer other than 2xx), by destination kind."),
		events:     counter("auditlog_delivered_events_total", "Events delivered, by destination kind."),
	}
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	m.deliveries.Describe(ch)
	m.failures.Describe(ch)
	m.events.Describe(ch)
}

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	m.deliveries.Collect(ch)
	m.failures.Collect(ch)
	m.events.Collect(ch)
}

// observe counts an attempt of n events.
func (m *Metrics) observe(kind string, n int, err error) {
	if m == nil {
		return
	}
	if err != nil {
		m.failures.WithLabelValues(kind).Inc()
		return
	}
	m.deliveries.WithLabelValues(kind).Inc()
	m.events.WithLabelValues(kind).Add(float64(n))
}
