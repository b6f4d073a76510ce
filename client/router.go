package client

import (
	"slices"
	"sync"
)

// router decides which backend sends each job of a call, and when.
//
// With host affinity (the default) every job of a host goes to one backend,
// the host's owner: the live backend that ranks first for the host by
// rendezvous hashing ([router.rebalance]). Every client that sees the same
// backends picks the same owner, so fetchd's per-host cap, rate and pause,
// which each replica keeps for itself, hold across replicas, for one call
// and for callers running at once. A host stays with
// the backend that has its jobs in flight: when its owner changes (a
// backend fails, drains, joins or leaves), its next job waits until those
// are answered (or resubmitted), then goes to the new owner, so that a host
// is never fetched from two backends at once by a call. Each backend takes
// at most hostCredit jobs of one host at a time (twice the host cap it
// announces): what it can start soon. The rest wait here, in per-host
// queues, free to move to another backend, and a busy host does not hold
// up a backend's other hosts.
//
// Without affinity (spread) jobs wait in one queue and each backend takes
// the next when it has fewer than credit in flight (twice the pool it
// announces), skipping the jobs of hosts it holds hostCredit of (twice its
// host cap), so that faster or idler backends take more and none hoards
// jobs the others could start.
//
// No send waits for another backend: each backend's sender takes its own
// jobs, and a job waits only for its own backend.
type router struct {
	affinity bool

	mu        sync.Mutex // guards the fields below, and those of every member, hostQueue and routedJob
	members   []*member
	hosts     map[string]*hostQueue // affinity: hosts with jobs queued or in flight
	shared    fifo                  // spread: jobs queued for any backend
	jobs      map[uint64]*routedJob // jobs queued or in flight, by index
	queued    int                   // jobs queued, not sent
	inputDone bool                  // the call's input is exhausted
}

// member is one backend of a call, as the router sees it.
type member struct {
	addr string
	hash uint64
	wake chan struct{} // room for one: the router has news for its sender

	dropped bool // given up by the call; guarded by call.mu

	// Guarded by router.mu.
	routable   bool           // may take jobs: its stream is open, or being opened for the first time
	removed    bool           // given up, or gone from the target's resolution: takes no more jobs
	inflight   int            // jobs sent to it and not answered
	credit     int            // spread: most jobs in flight; 0 means no limit
	hostCredit int            // most jobs of one host in flight; 0 means no limit
	byHost     map[string]int // spread: jobs in flight per host
	ready      []*hostQueue
}

// hostQueue is one host's jobs in a call with affinity.
type hostQueue struct {
	name     string
	hash     uint64
	owner    *member // the backend it goes to; nil until assigned
	at       *member // where its jobs in flight are (or were last)
	inflight int
	queue    fifo
	inReady  bool // in at's ready list
}

// routedJob is where a job of the call is.
type routedJob struct {
	host       *hostQueue // affinity only
	spreadHost string     // spread only: its URL's host
	sentTo     *member    // nil while queued
}

func newRouter(affinity bool) *router {
	return &router{affinity: affinity, hosts: map[string]*hostQueue{}, jobs: map[uint64]*routedJob{}}
}

// join adds a backend to the call.
func (r *router) join(addr string) *member {
	m := &member{addr: addr, hash: hashString(addr), wake: make(chan struct{}, 1), routable: true, byHost: map[string]int{}}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.members = append(r.members, m)
	r.rebalance()
	return m
}

// add queues job idx, for url's host.
func (r *router) add(idx uint64, rawURL string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	j := &routedJob{}
	r.jobs[idx] = j
	r.queued++
	if !r.affinity {
		j.spreadHost = hostOf(rawURL)
		r.shared.push(idx)
		r.wakeAll()
		return
	}
	name := hostOf(rawURL)
	h := r.hosts[name]
	if h == nil {
		h = &hostQueue{name: name, hash: hashString(name)}
		r.hosts[name] = h
	}
	j.host = h
	h.queue.push(idx)
	r.kick(h)
}

// finishInput notes that no new job will come.
func (r *router) finishInput() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.inputDone = true
	r.wakeAll()
}

// next returns the next job for m to send, if any; otherwise done reports
// whether m will have none on this stream: the input is exhausted and
// nothing is queued, or m was removed.
func (r *router) next(m *member) (idx uint64, ok, done bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if m.removed {
		return 0, false, true
	}
	if !m.routable {
		return 0, false, false
	}
	if r.affinity {
		idx, ok = r.nextHost(m)
	} else if m.credit == 0 || m.inflight < m.credit {
		idx, ok = r.nextSpread(m)
	}
	if ok {
		j := r.jobs[idx]
		j.sentTo = m
		m.inflight++
		if !r.affinity {
			m.byHost[j.spreadHost]++
		}
		r.queued--
		if r.queued == 0 && r.inputDone {
			r.wakeAll() // the other senders may half-close
		}
		return idx, true, false
	}
	return 0, false, r.inputDone && r.queued == 0
}

// nextSpread takes the first job of the shared queue whose host m holds
// fewer than its host credit of: a backend takes no more of one host than
// it can start soon, so that the others get the rest.
func (r *router) nextSpread(m *member) (uint64, bool) {
	for i, idx := range r.shared.q {
		if m.hostCredit == 0 || m.byHost[r.jobs[idx].spreadHost] < m.hostCredit {
			r.shared.removeAt(i)
			return idx, true
		}
	}
	return 0, false
}

// nextHost pops a job from the first host of m's ready list that m may
// send, moving that host to the list's end if it has more (round robin).
func (r *router) nextHost(m *member) (uint64, bool) {
	if !r.pruneReady(m) {
		return 0, false
	}
	h := m.ready[0]
	m.ready = m.ready[1:]
	idx, _ := h.queue.pop()
	h.at = m
	h.inflight++
	if !r.sendable(h, m) {
		h.inReady = false
	} else {
		m.ready = append(m.ready, h)
	}
	return idx, true
}

// pruneReady drops from the head of m's ready list the hosts m may no
// longer send (they belong elsewhere now, or must wait), putting each
// where it belongs, and reports whether one that m may send is left at
// the head.
func (r *router) pruneReady(m *member) bool {
	for len(m.ready) > 0 && !r.sendable(m.ready[0], m) {
		h := m.ready[0]
		m.ready = m.ready[1:]
		h.inReady = false
		r.kick(h)
	}
	return len(m.ready) > 0
}

// sendable reports whether m may send h's next job now.
func (r *router) sendable(h *hostQueue, m *member) bool {
	return m.routable && !m.removed && h.queue.len() > 0 &&
		(m.hostCredit == 0 || h.inflight < m.hostCredit) &&
		(h.inflight == 0 || h.at == m) && r.owner(h) == m
}

// kick puts h in its owner's ready list if the owner may send its next
// job now. A host whose jobs in flight are at another backend than its
// owner waits for them.
func (r *router) kick(h *hostQueue) {
	if h.inReady || h.queue.len() == 0 {
		return
	}
	o := r.owner(h)
	if o == nil || !r.sendable(h, o) {
		return
	}
	h.inReady = true
	o.ready = append(o.ready, h)
	o.signal()
}

// answered notes that job idx, sent, has its result.
func (r *router) answered(idx uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	j := r.jobs[idx]
	if j == nil || j.sentTo == nil {
		return
	}
	delete(r.jobs, idx)
	r.unsend(j)
	r.settle(j)
}

// unsend takes j off its backend's counts of jobs in flight.
func (r *router) unsend(j *routedJob) {
	m := j.sentTo
	m.inflight--
	if !r.affinity {
		if m.byHost[j.spreadHost]--; m.byHost[j.spreadHost] <= 0 {
			delete(m.byHost, j.spreadHost)
		}
	}
}

// resend queues job idx again, first in its queue: it was sent, and the
// stream broke before its result came.
func (r *router) resend(idx uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	j := r.jobs[idx]
	if j == nil || j.sentTo == nil {
		return
	}
	r.unsend(j)
	j.sentTo = nil
	r.queued++
	if !r.affinity {
		r.shared.pushFront(idx)
		r.wakeAll()
		return
	}
	j.host.queue.pushFront(idx)
	r.settle(j)
}

// settle updates j's host, or the spread senders, after one of j's
// backend's jobs in flight was answered or taken back.
func (r *router) settle(j *routedJob) {
	h := j.host
	if h == nil {
		r.wakeAll()
		return
	}
	h.inflight--
	if h.inflight == 0 && h.queue.len() == 0 {
		delete(r.hosts, h.name)
		return
	}
	r.kick(h)
}

// setRoutable marks m as taking jobs or not (its stream broke), and moves
// the hosts whose owner that changes.
func (r *router) setRoutable(m *member, on bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if m.routable == on {
		return
	}
	m.routable = on
	r.rebalance()
}

// remove takes m out of the call for good: its stream half-closes and its
// hosts move.
func (r *router) remove(m *member) {
	r.mu.Lock()
	defer r.mu.Unlock()
	m.removed = true
	r.rebalance() // which also empties m's ready list
	// Its sender and its jobs in flight still know it; the router no
	// longer does, so that a long call's churn leaves nothing behind.
	r.members = slices.DeleteFunc(r.members, func(x *member) bool { return x == m })
}

// setCredit sets what m takes at once, from what its fetchd announced.
func (r *router) setCredit(m *member, credit, hostCredit int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	m.credit, m.hostCredit = credit, hostCredit
	r.relist()
}

// hasWork reports whether m has jobs to send, or was removed.
func (r *router) hasWork(m *member) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if m.removed {
		return true
	}
	if !r.affinity {
		return r.shared.len() > 0
	}
	return r.pruneReady(m)
}

func (r *router) wakeAll() {
	for _, m := range r.members {
		m.signal()
	}
}

func (m *member) signal() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// isRemoved reports whether r removed m from the call.
func (r *router) isRemoved(m *member) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return m.removed
}
