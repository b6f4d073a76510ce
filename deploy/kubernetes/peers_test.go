package kubernetes_test

import (
	"fmt"
	"os"
	"regexp"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// headlessService is the Service with one DNS record per ready fetchd pod.
const headlessService = "fetchd-headless"

// peersExample matches deployment.yaml's commented-out FETCHD_PEERS entry
// and captures its value.
var peersExample = regexp.MustCompile(`(?m)^\s*#\s*- name: FETCHD_PEERS\n\s*#\s*value: "([^"]*)"`)

// TestPeers: -peers (the host share across replicas, for callers that do
// not use the Go client) is off by default, because the Go client's
// host-affine routing keeps each host's cap by itself and would get only
// cap/N per host with it on; the commented example that turns it on names
// the headless Service and its gRPC port, so that N counts the fetchd
// pods.
func TestPeers(t *testing.T) {
	ms := loadManifests(t)
	_, c := fetchdDeployment(t, ms)
	var headless *corev1.Service
	for _, s := range objectsOf[*corev1.Service](ms) {
		if s.Name == headlessService {
			headless = s
		}
	}
	if headless == nil || headless.Spec.ClusterIP != corev1.ClusterIPNone {
		t.Fatalf("no headless Service %q", headlessService)
	}
	var port int32
	for _, p := range headless.Spec.Ports {
		if p.Name == grpcPortName {
			port = p.Port
		}
	}
	want := fmt.Sprintf("dns:///%s:%d", headless.Name, port)

	if got := setting(c, "peers", ""); got != "" {
		t.Errorf("-peers = %q, want it off by default (the example in deployment.yaml turns it on)", got)
	}
	data, err := os.ReadFile("deployment.yaml")
	if err != nil {
		t.Fatal(err)
	}
	m := peersExample.FindSubmatch(data)
	if m == nil {
		t.Fatalf("deployment.yaml has no commented-out FETCHD_PEERS example")
	}
	if got := string(m[1]); got != want {
		t.Errorf("FETCHD_PEERS example = %q, want %q, the headless Service's gRPC port", got, want)
	}
}
