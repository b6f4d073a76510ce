package fetcher

import (
	"cmp"
	"context"
	"net"
	"net/url"
	"slices"
	"strings"

	fetchv1 "github.com/fetchd/fetchd/gen/fetch/v1"
	"github.com/fetchd/fetchd/server/internal/egress"
)

// HiddenRefusal is the message of every ERROR_CODE_BLOCKED result with
// [Config.HideAddresses]: a refused destination and a host name that does
// not resolve read the same.
const HiddenRefusal = "egress: destination refused: blocked by policy, or its host name does not resolve (fetchd's log has the details)"

// hiddenAddress stands in a message for an address cut out of it.
const hiddenAddress = "[address hidden]"

// callerError returns the result error of e for the caller of job: e
// itself, or with [Config.HideAddresses] e without the addresses it names,
// in which case the whole of e is logged at debug level.
func (f *Fetcher) callerError(ctx context.Context, job *Job, e *Error) *fetchv1.Error {
	full := e.Proto()
	if !f.hide {
		return full
	}
	hidden := &fetchv1.Error{Code: e.Code, Message: hideAddresses(e.Err, job.URL)}
	switch e.Code {
	case fetchv1.ErrorCode_ERROR_CODE_BLOCKED, fetchv1.ErrorCode_ERROR_CODE_DNS_FAILURE:
		// Whether a name resolves, to what and why that is refused, is
		// what an internal name would tell: one answer for all of them.
		hidden = &fetchv1.Error{Code: fetchv1.ErrorCode_ERROR_CODE_BLOCKED, Message: HiddenRefusal}
	}
	if hidden.GetCode() != full.GetCode() || hidden.GetMessage() != full.GetMessage() {
		f.log.DebugContext(ctx, "job error hidden from its caller (-hide-addresses)",
			"url", job.URL.Redacted(), "code", full.GetCode().String(), "error", full.GetMessage(),
			"caller_code", hidden.GetCode().String())
	}
	return hidden
}

// hideAddresses returns the message of err with the addresses of the
// connections and DNS servers in its tree cut out: those of [net.OpError]
// (both ends), [net.DNSError] and [egress.BlockedError]. The host of u, a
// literal address the caller gave, is left as it is.
func hideAddresses(err error, u *url.URL) string {
	var addrs []string
	add := func(s string) {
		if s == "" {
			return
		}
		addrs = append(addrs, s)
		if host, _, err := net.SplitHostPort(s); err == nil {
			addrs = append(addrs, host)
		}
	}
	walkErrors(err, func(e error) {
		switch x := e.(type) {
		case *net.OpError:
			if x.Source != nil {
				add(x.Source.String())
			}
			if x.Addr != nil {
				add(x.Addr.String())
			}
		case *net.DNSError:
			add(x.Server)
		case *egress.BlockedError:
			if x.Addr.IsValid() {
				add(x.Addr.String())
			}
		}
	})
	own := u.Hostname()
	// The longest first: an address with its port before the address.
	slices.SortFunc(addrs, func(a, b string) int { return cmp.Compare(len(b), len(a)) })
	msg := err.Error()
	for _, a := range addrs {
		if a != own && a != net.JoinHostPort(own, u.Port()) {
			msg = strings.ReplaceAll(msg, a, hiddenAddress)
		}
	}
	return msg
}

// walkErrors calls fn for err and every error in its tree.
func walkErrors(err error, fn func(error)) {
	if err == nil {
		return
	}
	fn(err)
	switch x := err.(type) {
	case interface{ Unwrap() error }:
		walkErrors(x.Unwrap(), fn)
	case interface{ Unwrap() []error }:
		for _, e := range x.Unwrap() {
			walkErrors(e, fn)
		}
	}
}
