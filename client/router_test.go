package client

import (
	"fmt"
	"testing"
)

// TestRouterOwners checks the rendezvous ranking: an owner does not depend
// on the order backends joined in, a host moves only when its owner goes,
// and many hosts spread evenly.
func TestRouterOwners(t *testing.T) {
	addrs := []string{"10.0.0.1:50051", "10.0.0.2:50051", "10.0.0.3:50051"}
	forward, backward := newRouter(true), newRouter(true)
	for i := range addrs {
		forward.join(addrs[i])
		backward.join(addrs[len(addrs)-1-i])
	}
	const hosts = 3000
	counts := map[string]int{}
	moved := 0
	for i := range hosts {
		h := &hostQueue{name: fmt.Sprintf("host-%d.example", i)}
		h.hash = hashString(h.name)
		o := forward.owner(h)
		if b := backward.owner(h); b.addr != o.addr {
			t.Fatalf("%s: owner %s, or %s with the backends joined in reverse", h.name, o.addr, b.addr)
		}
		counts[o.addr]++
		// Take out a backend that is not the owner: the owner stays.
		for _, m := range forward.members {
			if m != o {
				m.routable = false
				if got := forward.owner(h); got != o {
					moved++
				}
				m.routable = true
			}
		}
	}
	if moved > 0 {
		t.Errorf("%d hosts moved when a backend that did not own them went", moved)
	}
	for _, a := range addrs {
		if c := counts[a]; c < hosts/3*9/10 || c > hosts/3*11/10 {
			t.Errorf("%s owns %d of %d hosts; want within 10%% of a third: %v", a, c, hosts, counts)
		}
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
		h := &hostQueue{hash: hashString(hostOf(url))}
		probe := newRouter(true)
		probe.join(first.addr)
		if probe.owner(h).addr != first.addr {
			t.Fatal("the only backend does not own the host")
		}
		probe.join("10.0.0.2:50051")
		if probe.owner(h).addr == "10.0.0.2:50051" {
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
