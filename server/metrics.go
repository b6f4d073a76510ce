package server

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	fetchv1 "github.com/fetchd/fetchd/gen/fetch/v1"
)

// metrics are the fetch metrics of a [Server]. They are always kept (a few
// atomic adds per job) and exported when registered with [WithMetrics].
type metrics struct {
	jobs      []prometheus.Counter     // fetchd_jobs_total by error code; [0] is ok
	duration  *prometheus.HistogramVec // fetchd_fetch_duration_seconds{outcome}
	okDur     prometheus.Observer
	errDur    prometheus.Observer
	inFlight  prometheus.Gauge     // fetchd_fetches_in_flight
	poolWait  prometheus.Histogram // fetchd_pool_wait_seconds
	bytes     prometheus.Counter   // fetchd_fetched_bytes_total
	blocked   prometheus.Counter   // fetchd_egress_blocked_total
	streams   prometheus.Gauge     // fetchd_streams_in_flight
	hostShare prometheus.Gauge     // fetchd_host_share
	jobsVec   *prometheus.CounterVec
}

func newMetrics() *metrics {
	m := &metrics{
		jobsVec: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fetchd_jobs_total",
			Help: "Jobs answered, by outcome: code is OK for a complete HTTP response (any status), else the ErrorCode name.",
		}, []string{"code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "fetchd_fetch_duration_seconds",
			Help:    "Time from a job's start to its last body byte or its failure, by outcome (ok or error).",
			Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 14), // 1ms .. ~60s
		}, []string{"outcome"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "fetchd_fetches_in_flight",
			Help: "Fetches running now, holding a pool slot.",
		}),
		poolWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "fetchd_pool_wait_seconds",
			Help:    "Time a job waited for a slot of its stream's limit and of the worker pool.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10), // 100µs .. ~26s
		}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "fetchd_fetched_bytes_total",
			Help: "Response body bytes returned to callers.",
		}),
		blocked: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "fetchd_egress_blocked_total",
			Help: "Jobs refused by the egress policy.",
		}),
		streams: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "fetchd_streams_in_flight",
			Help: "Fetch and FetchBatch calls being served.",
		}),
		hostShare: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "fetchd_host_share",
			Help: "Replicas that share each host's -host-concurrency and -host-rate (-peers): this one allows max(1, cap/share) in flight and rate/share per host.",
		}),
	}
	m.hostShare.Set(1)
	m.okDur = m.duration.WithLabelValues("ok")
	m.errDur = m.duration.WithLabelValues("error")
	// Resolve every label once, so that counting a job is one atomic add,
	// and every code shows up in /metrics from the start.
	n := 0
	for v := range fetchv1.ErrorCode_name {
		n = max(n, int(v)+1)
	}
	m.jobs = make([]prometheus.Counter, n)
	for v, name := range fetchv1.ErrorCode_name {
		if v == 0 {
			name = "OK"
		}
		m.jobs[v] = m.jobsVec.WithLabelValues(name)
	}
	return m
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.jobsVec, m.duration, m.inFlight, m.poolWait, m.bytes, m.blocked, m.streams, m.hostShare}
}

// result records a job's result.
func (m *metrics) result(r *fetchv1.FetchResponse) {
	code := r.GetError().GetCode()
	if int(code) < len(m.jobs) {
		m.jobs[code].Inc()
	}
	if code == fetchv1.ErrorCode_ERROR_CODE_BLOCKED {
		m.blocked.Inc()
	}
	m.bytes.Add(float64(max(uint64(len(r.GetBody())), r.GetBodyLength()))) // streamed and discarded bodies too
}

// fetched records a fetch that ran, how long it took and how it ended.
func (m *metrics) fetched(d time.Duration, failed bool) {
	if failed {
		m.errDur.Observe(d.Seconds())
	} else {
		m.okDur.Observe(d.Seconds())
	}
}
