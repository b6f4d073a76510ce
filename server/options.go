package server

import (
	"context"
	"crypto/x509"
	"log/slog"
	"net/netip"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/fetchd/fetchd/server/internal/egress"
	"github.com/fetchd/fetchd/server/internal/fetcher"
)

// Option sets one field of the [Config] that [New] builds. Each is a thin
// wrapper of its field, documented there with its default; unlike the
// field, an option ignores a value out of its range, and [New] cuts a
// default timeout over the maximum to the maximum.
type Option func(*Config)

// WithConcurrency sets [Config.Concurrency]. Values below 1 are ignored.
func WithConcurrency(n int) Option {
	return func(c *Config) {
		if n > 0 {
			c.Concurrency = n
		}
	}
}

// WithStreamWindow sets [Config.StreamWindow]; 0 means the default.
// Negative values are ignored.
func WithStreamWindow(n int) Option {
	return func(c *Config) {
		if n >= 0 {
			c.StreamWindow = n
		}
	}
}

// WithStreamQueue sets [Config.StreamQueue]; 0 means the default.
// Negative values are ignored.
func WithStreamQueue(n int) Option {
	return func(c *Config) {
		if n >= 0 {
			c.StreamQueue = n
		}
	}
}

// WithHostConcurrency sets [Config.HostConcurrency]; 0 means no cap.
// Negative values are ignored.
func WithHostConcurrency(n int) Option {
	return func(c *Config) {
		if n >= 0 {
			c.HostConcurrency = offIfZero(n)
		}
	}
}

// WithHostRate sets [Config.HostRate]; 0 means no limit. Negative values
// are ignored.
func WithHostRate(perSecond float64) Option {
	return func(c *Config) {
		if perSecond >= 0 {
			c.HostRate = perSecond
		}
	}
}

// WithDedup sets [Config.DisableDedup] to !on.
func WithDedup(on bool) Option {
	return func(c *Config) { c.DisableDedup = !on }
}

// WithDedupAcrossCallers sets [Config.DedupAcrossCallers].
func WithDedupAcrossCallers(on bool) Option {
	return func(c *Config) { c.DedupAcrossCallers = on }
}

// WithCaller sets [Config.Caller]; nil means the default, [PeerCaller].
func WithCaller(caller func(ctx context.Context) string) Option {
	return func(c *Config) { c.Caller = caller }
}

// WithRetryAttempts sets [Config.RetryAttempts] to def, at most max, and
// [Config.MaxRetryAttempts] to max. Values below 1 are ignored.
func WithRetryAttempts(def, max int) Option {
	return func(c *Config) {
		if max >= 1 {
			c.MaxRetryAttempts = max
		}
		if def >= 1 {
			c.RetryAttempts = min(def, orDefault(c.MaxRetryAttempts, DefaultMaxRetryAttempts))
		}
	}
}

// WithRetryBackoff sets [Config.RetryBackoff] to base and
// [Config.MaxRetryBackoff] to max. A base below 1ns, or a max below the
// base, is ignored.
func WithRetryBackoff(base, max time.Duration) Option {
	return func(c *Config) {
		if base > 0 {
			c.RetryBackoff = base
		}
		if max >= orDefault(c.RetryBackoff, DefaultRetryBackoff) {
			c.MaxRetryBackoff = max
		}
	}
}

// WithMaxRetryAfter sets [Config.MaxRetryAfter]; 0 waits for no
// Retry-After. Negative values are ignored.
func WithMaxRetryAfter(d time.Duration) Option {
	return func(c *Config) {
		if d >= 0 {
			c.MaxRetryAfter = offIfZero(d)
		}
	}
}

// WithMaxBodyBytes sets [Config.MaxBodyBytes]. Values below 1 are ignored.
func WithMaxBodyBytes(n int64) Option {
	return func(c *Config) {
		if n > 0 {
			c.MaxBodyBytes = n
		}
	}
}

// WithMaxDiscardBytes sets [Config.MaxDiscardBytes]. Values below 1 are
// ignored.
func WithMaxDiscardBytes(n int64) Option {
	return func(c *Config) {
		if n > 0 {
			c.MaxDiscardBytes = n
		}
	}
}

// WithMaxStreamBodyBytes sets [Config.MaxStreamBodyBytes]. Values below 1
// are ignored.
func WithMaxStreamBodyBytes(n int64) Option {
	return func(c *Config) {
		if n > 0 {
			c.MaxStreamBodyBytes = n
		}
	}
}

// WithBodyMemory sets [Config.BodyMemory]. Values below 1 are ignored.
func WithBodyMemory(n int64) Option {
	return func(c *Config) {
		if n > 0 {
			c.BodyMemory = n
		}
	}
}

// WithJobMemory sets [Config.JobMemory]. Values below 1 are ignored.
func WithJobMemory(n int64) Option {
	return func(c *Config) {
		if n > 0 {
			c.JobMemory = n
		}
	}
}

// WithDefaultTimeout sets [Config.DefaultTimeout]. Values below 1ns are
// ignored; [New] clamps it to the maximum timeout.
func WithDefaultTimeout(d time.Duration) Option {
	return func(c *Config) {
		if d > 0 {
			c.DefaultTimeout = d
		}
	}
}

// WithMaxTimeout sets [Config.MaxTimeout]. Values below 1ns are ignored.
func WithMaxTimeout(d time.Duration) Option {
	return func(c *Config) {
		if d > 0 {
			c.MaxTimeout = d
		}
	}
}

// WithMaxRedirects sets [Config.MaxRedirects]; 0 follows none. Negative
// values are ignored.
func WithMaxRedirects(n int) Option {
	return func(c *Config) {
		if n >= 0 {
			c.MaxRedirects = offIfZero(n)
		}
	}
}

// WithMaxResponseHeaderBytes sets [Config.MaxResponseHeaderBytes]. Values
// below 1 are ignored.
func WithMaxResponseHeaderBytes(n int64) Option {
	return func(c *Config) {
		if n > 0 {
			c.MaxResponseHeaderBytes = n
		}
	}
}

// WithIdleReadTimeout sets [Config.IdleReadTimeout]; 0 turns it off.
// Negative values are ignored.
func WithIdleReadTimeout(d time.Duration) Option {
	return func(c *Config) {
		if d >= 0 {
			c.IdleReadTimeout = offIfZero(d)
		}
	}
}

// WithAllowCIDRs adds to [Config.AllowCIDRs].
func WithAllowCIDRs(prefixes ...netip.Prefix) Option {
	return func(c *Config) { c.AllowCIDRs = append(c.AllowCIDRs, prefixes...) }
}

// WithDenyCIDRs adds to [Config.DenyCIDRs].
func WithDenyCIDRs(prefixes ...netip.Prefix) Option {
	return func(c *Config) { c.DenyCIDRs = append(c.DenyCIDRs, prefixes...) }
}

// WithAllowPrivate sets [Config.AllowPrivate].
func WithAllowPrivate(on bool) Option {
	return func(c *Config) { c.AllowPrivate = on }
}

// WithAllowPorts adds to [Config.AllowPorts].
func WithAllowPorts(ports ...uint16) Option {
	return func(c *Config) { c.AllowPorts = append(c.AllowPorts, ports...) }
}

// WithAllowHosts adds to [Config.AllowHosts]. Patterns must come from
// [ParseHostPatterns].
func WithAllowHosts(patterns ...string) Option {
	return func(c *Config) { c.AllowHosts = append(c.AllowHosts, patterns...) }
}

// WithDenyHosts adds to [Config.DenyHosts]. Patterns must come from
// [ParseHostPatterns].
func WithDenyHosts(patterns ...string) Option {
	return func(c *Config) { c.DenyHosts = append(c.DenyHosts, patterns...) }
}

// WithHideAddresses sets [Config.HideAddresses].
func WithHideAddresses(on bool) Option {
	return func(c *Config) { c.HideAddresses = on }
}

// WithLeanHTTP sets [Config.NetHTTP] to !on.
func WithLeanHTTP(on bool) Option {
	return func(c *Config) { c.NetHTTP = !on }
}

// WithUpstreamRootCAs sets [Config.UpstreamRootCAs].
func WithUpstreamRootCAs(pool *x509.CertPool) Option {
	return func(c *Config) { c.UpstreamRootCAs = pool }
}

// WithUserAgent sets [Config.UserAgent]. Empty values are ignored.
func WithUserAgent(ua string) Option {
	return func(c *Config) {
		if ua != "" {
			c.UserAgent = ua
		}
	}
}

// WithMetrics sets [Config.Metrics]. [New] panics, as
// [prometheus.Registerer.MustRegister] does, if the metrics are registered
// already.
func WithMetrics(reg prometheus.Registerer) Option {
	return func(c *Config) { c.Metrics = reg }
}

// WithTracerProvider sets [Config.TracerProvider].
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(c *Config) { c.TracerProvider = tp }
}

// WithLogger sets [Config.Logger].
func WithLogger(l *slog.Logger) Option {
	return func(c *Config) { c.Logger = l }
}

// offIfZero maps an option's 0, which turns a setting off, to the
// [Config] field's off: a negative value.
func offIfZero[T int | time.Duration](v T) T {
	if v == 0 {
		return -1
	}
	return v
}

// ParseCIDRs parses address ranges for [Config.AllowCIDRs] and
// [Config.DenyCIDRs]: each element holds one or more CIDRs separated by
// commas or spaces; a bare address is a single-address range.
func ParseCIDRs(list ...string) ([]netip.Prefix, error) { return egress.ParseCIDRs(list...) }

// ParseHostPatterns validates and normalises host name patterns for
// [Config.AllowHosts] and [Config.DenyHosts]: each element holds one or
// more separated by commas or spaces.
func ParseHostPatterns(list ...string) ([]string, error) { return egress.ParseHostPatterns(list...) }

// LoadRootCAs returns the system roots plus the certificates in a PEM
// file, for [Config.UpstreamRootCAs].
func LoadRootCAs(pemFile string) (*x509.CertPool, error) { return fetcher.LoadRootCAs(pemFile) }
