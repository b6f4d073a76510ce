package client

import (
	"fmt"
	"testing"
)

// owners adds one job for each of hosts to r and returns the backend each
// host went to.
func owners(r *router, hosts []string) map[string]string {
	out := map[string]string{}
	for i, h := range hosts {
		r.add(uint64(i), "http://"+h+"/")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, h := range hosts {
		out[h] = r.hosts[h].owner.addr
	}
	return out
}

// TestRouterOwners checks the host assignment: it depends neither on the
// order backends joined in nor on the call's other hosts and their order
// (two calls at once send a host to the same backend); many hosts spread
// evenly; and when a backend goes, its hosts move and no other does.
func TestRouterOwners(t *testing.T) {
	addrs := []string{"10.0.0.1:50051", "10.0.0.2:50051", "10.0.0.3:50051"}
	for _, n := range []int{10, 3000} {
		t.Run(fmt.Sprint(n, " hosts"), func(t *testing.T) {
			var hosts []string
			for i := range n {
				hosts = append(hosts, fmt.Sprintf("host-%d.example", i))
			}
			forward, backward := newRouter(true), newRouter(true)
			var members []*member
			for i := range addrs {
				members = append(members, forward.join(addrs[i]))
				backward.join(addrs[len(addrs)-1-i])
			}
			got := owners(forward, hosts)
			// The other call has the hosts in reverse order, and only
			// every other one of them.
			var others []string
			for i := len(hosts) - 1; i >= 0; i -= 2 {
				others = append(others, hosts[i])
			}
			other := owners(backward, others)
			counts := map[string]int{}
			for _, h := range hosts {
				if o, ok := other[h]; ok && got[h] != o {
					t.Fatalf("%s: owner %s in one call, %s in another", h, got[h], o)
				}
				if got[h] != Owner(addrs, h) {
					t.Fatalf("%s: owner %s, not its first choice %s", h, got[h], Owner(addrs, h))
				}
				counts[got[h]]++
			}
			if n >= 1000 {
				for _, a := range addrs {
					if c := counts[a]; c < n/3*9/10 || c > n/3*11/10 {
						t.Errorf("%s owns %d of %d hosts; want within 10%% of a third: %v", a, c, n, counts)
					}
				}
			}
			// The third backend goes: its hosts move, no other does.
			forward.setRoutable(members[2], false)
			forward.mu.Lock()
			for _, h := range hosts {
				now := forward.hosts[h].owner.addr
				if now == addrs[2] {
					t.Errorf("%s still on the backend that went", h)
				}
				if got[h] != addrs[2] && now != got[h] {
					t.Errorf("%s moved from %s to %s when another backend went", h, got[h], now)
				}
			}
			forward.mu.Unlock()
			t.Logf("owners %v", counts)
		})
	}
}

// TestRouterHostMovesAfterItsJobs joins a backend that becomes a busy
// host's owner: the host's next jobs wait until its job in flight at the
// old backend is answered, then go to the new one, so that the host is
// never at two backends at once.
func TestRouterHostMovesAfterItsJobs(t *testing.T) {
	r := newRouter(true)
	first := r.join("10.0.0.1:50051")
	// A host that the second backend will own.
	var url string
	for i := 0; ; i++ {
		url = fmt.Sprintf("http://host-%d.example/", i)
		if Owner([]string{first.addr, "10.0.0.2:50051"}, hostOf(url)) == "10.0.0.2:50051" {
			break
		}
	}
	r.add(0, url)
	r.add(1, url)
	if idx, ok, _ := r.next(first); !ok || idx != 0 {
		t.Fatalf("first backend: next = %d, %v; want job 0", idx, ok)
	}
	second := r.join("10.0.0.2:50051")
	if _, ok, _ := r.next(first); ok {
		t.Error("the old backend got the host's next job after the host moved")
	}
	if _, ok, _ := r.next(second); ok {
		t.Error("the new backend got the host's next job while job 0 was in flight at the old one")
	}
	r.answered(0)
	if idx, ok, _ := r.next(second); !ok || idx != 1 {
		t.Errorf("new backend after job 0 was answered: next = %d, %v; want job 1", idx, ok)
	}
}

// TestRouterHostCredit holds a backend to its host credit, and resends a
// job first.
func TestRouterHostCredit(t *testing.T) {
	r := newRouter(true)
	m := r.join("10.0.0.1:50051")
	r.setCredit(m, 0, 2)
	for i := range 5 {
		r.add(uint64(i), "http://a.example/")
	}
	r.add(5, "http://b.example/")
	var sent []uint64
	for {
		idx, ok, _ := r.next(m)
		if !ok {
			break
		}
		sent = append(sent, idx)
	}
	if fmt.Sprint(sent) != "[0 5 1]" { // round robin over the hosts
		t.Errorf("sent %v with 2 per host; want [0 5 1]", sent)
	}
	r.resend(1)
	if idx, ok, _ := r.next(m); !ok || idx != 1 {
		t.Errorf("after resending 1: next = %d, %v; want 1 again, first", idx, ok)
	}
	r.finishInput()
	for _, i := range []uint64{0, 1, 5} {
		r.answered(i)
	}
	for _, want := range []uint64{2, 3, 4} {
		idx, ok, _ := r.next(m)
		if !ok || idx != want {
			t.Fatalf("after the host's credit freed: next = %d, %v; want %d", idx, ok, want)
		}
		r.answered(idx)
	}
	if _, _, done := r.next(m); !done {
		t.Error("nothing queued and the input done, but next does not say done")
	}
}
