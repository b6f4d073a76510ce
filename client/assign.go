package client

import (
	"cmp"
	"hash/fnv"
	"math"
	"net/url"
	"slices"
	"strings"
)

// This file is the router's assignment of hosts to backends: rendezvous
// hashing with bounded loads.

// owner returns h's backend, assigning it one if it has none.
func (r *router) owner(h *hostQueue) *member {
	if h.owner == nil {
		r.assign(h)
	}
	return h.owner
}

// assign gives h the backend that ranks first for it by rendezvous hashing
// among those that may take jobs and own fewer than their bound of the
// call's hosts: (1 + loadSlack) times an even share, rounded up
// (consistent hashing with bounded loads). With many hosts a host almost
// always gets its first choice, the same in every call and client that
// sees the same backends; the bound keeps an unlucky draw from piling a
// third more of the hosts on one backend.
func (r *router) assign(h *hostQueue) {
	live := 0
	for _, m := range r.members {
		if m.routable && !m.removed {
			live++
		}
	}
	if live == 0 {
		return
	}
	bound := int(math.Ceil((1 + loadSlack) * float64(len(r.hosts)) / float64(live)))
	var best, first *member
	var bestScore, firstScore uint64
	for _, m := range r.members {
		if !m.routable || m.removed {
			continue
		}
		s := mix(h.hash ^ m.hash)
		if first == nil || s > firstScore {
			first, firstScore = m, s
		}
		if m.hosts < bound && (best == nil || s > bestScore) {
			best, bestScore = m, s
		}
	}
	if best == nil {
		best = first
	}
	h.owner = best
	best.hosts++
}

// loadSlack is how far above an even share of a call's hosts a backend
// may own: 5%, so that three replicas never run below 1/1.05 = 0.95 of
// their joint pool for want of hosts when the hosts are many.
const loadSlack = 0.05

// unassign takes h's backend from it.
func (h *hostQueue) unassign() {
	if h.owner != nil {
		h.owner.hosts--
		h.owner = nil
	}
}

// rebalance assigns every host anew and rebuilds the ready lists, after
// the backends changed. The hosts that were on their first choice among
// the backends now live are assigned first, so that they stay; then the
// others (those of a backend that went, or whose first choice just
// joined), each group in the order of their hashes, the same in every
// call. A host whose backend changes moves once its jobs in flight are
// answered.
func (r *router) rebalance() {
	r.clearReady()
	type entry struct {
		h    *hostQueue
		stay bool // on its first choice
	}
	hosts := make([]entry, 0, len(r.hosts))
	for _, h := range r.hosts {
		hosts = append(hosts, entry{h, h.owner != nil && h.owner == r.firstChoice(h)})
		h.unassign()
	}
	slices.SortFunc(hosts, func(a, b entry) int {
		if a.stay != b.stay {
			if a.stay {
				return -1
			}
			return 1
		}
		return cmp.Compare(a.h.hash, b.h.hash)
	})
	for _, e := range hosts {
		r.assign(e.h)
		r.kick(e.h)
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
