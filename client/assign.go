package client

import (
	"hash/fnv"
	"net/url"
	"strings"
)

// This file is the router's assignment of hosts to backends: rendezvous
// hashing.

// owner returns h's backend, assigning it one if it has none.
func (r *router) owner(h *hostQueue) *member {
	if h.owner == nil || !h.owner.routable || h.owner.removed {
		h.owner = r.firstChoice(h)
	}
	return h.owner
}

// rebalance gives every host the backend that ranks first for it among
// those now taking jobs, and rebuilds the ready lists, after the backends
// changed: only the hosts of a backend that went, or whose first choice
// just came, change. A host whose backend changes moves once its jobs in
// flight are answered.
//
// The assignment is a function of the host and the backends alone, not of
// the order jobs came in or of the other hosts, so that every call and
// every client that sees the same backends sends a host to the same one,
// and callers running at the same time stay polite together. A bound on
// each backend's share (consistent hashing with bounded loads) would even
// out a call over few hosts, but would make the owner depend on the
// call's other hosts: two calls could then send one host to two replicas.
func (r *router) rebalance() {
	r.clearReady()
	for _, h := range r.hosts {
		h.owner = r.firstChoice(h)
		r.kick(h)
	}
	r.wakeAll()
}

// relist rebuilds the ready lists, the hosts' backends unchanged, after a
// backend's credits changed.
func (r *router) relist() {
	r.clearReady()
	for _, h := range r.hosts {
		r.kick(h)
	}
	r.wakeAll()
}

func (r *router) clearReady() {
	for _, m := range r.members {
		for _, h := range m.ready {
			h.inReady = false
		}
		m.ready = m.ready[:0]
	}
}

// firstChoice returns the backend that ranks first for h among those that
// may take jobs, or nil.
func (r *router) firstChoice(h *hostQueue) *member {
	var best *member
	var bestScore uint64
	for _, m := range r.members {
		if !m.routable || m.removed {
			continue
		}
		if s := mix(h.hash ^ m.hash); best == nil || s > bestScore {
			best, bestScore = m, s
		}
	}
	return best
}

// hostOf returns the host a job's URL names, as fetchd keys its per-host
// limits: the host name, lower case, without the port.
func hostOf(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return ""
	}
	return strings.ToLower(u.Hostname())
}

// hashString is FNV-1a, stable across processes: every client ranks the
// backends of a host alike.
func hashString(s string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(s))
	return mix(h.Sum64())
}

// mix is SplitMix64's finalizer: it spreads every input bit over the
// output, as rendezvous hashing needs.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// fifo is a queue of job indexes.
type fifo struct{ q []uint64 }

func (f *fifo) len() int           { return len(f.q) }
func (f *fifo) push(idx uint64)    { f.q = append(f.q, idx) }
func (f *fifo) pushFront(i uint64) { f.q = append([]uint64{i}, f.q...) }

func (f *fifo) removeAt(i int) { f.q = append(f.q[:i], f.q[i+1:]...) }

func (f *fifo) pop() (uint64, bool) {
	if len(f.q) == 0 {
		return 0, false
	}
	idx := f.q[0]
	f.q = f.q[1:]
	if len(f.q) == 0 {
		f.q = nil
	}
	return idx, true
}
