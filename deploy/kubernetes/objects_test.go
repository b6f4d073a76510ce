package kubernetes_test

import (
	"fmt"
	"maps"
	"net/netip"
	"reflect"
	"slices"
	"testing"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// TestReferencesMatchDeployment checks that every Service, HPA, PDB and
// NetworkPolicy selects the fetchd pods or targets the fetchd Deployment, in
// the Deployment's namespace.
func TestReferencesMatchDeployment(t *testing.T) {
	ms := loadManifests(t)
	d, c := fetchdDeployment(t, ms)
	podLabels := labels.Set(d.Spec.Template.Labels)
	matches := func(ls *metav1.LabelSelector) error {
		sel, err := metav1.LabelSelectorAsSelector(ls)
		if err != nil {
			return err
		}
		if sel.Empty() || !sel.Matches(podLabels) {
			return fmt.Errorf("selector %q does not select pod labels %v", sel, podLabels)
		}
		return nil
	}
	var tests []reference
	for _, s := range objectsOf[*corev1.Service](ms) {
		tests = append(tests, reference{"Service/" + s.Name, s.ObjectMeta, func() error {
			if err := matches(&metav1.LabelSelector{MatchLabels: s.Spec.Selector}); err != nil {
				return err
			}
			for _, p := range s.Spec.Ports {
				if !targetsContainer(p, c) {
					return fmt.Errorf("port %s targetPort %s is not a port of container %s", p.Name, p.TargetPort.String(), c.Name)
				}
			}
			return nil
		}})
	}
	for _, h := range objectsOf[*autoscalingv2.HorizontalPodAutoscaler](ms) {
		tests = append(tests, reference{"HorizontalPodAutoscaler/" + h.Name, h.ObjectMeta, func() error {
			if got, want := h.Spec.ScaleTargetRef, (autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: d.Name}); got != want {
				return fmt.Errorf("scaleTargetRef = %+v, want %+v", got, want)
			}
			return nil
		}})
	}
	for _, p := range objectsOf[*policyv1.PodDisruptionBudget](ms) {
		tests = append(tests, reference{"PodDisruptionBudget/" + p.Name, p.ObjectMeta, func() error { return matches(p.Spec.Selector) }})
	}
	for _, np := range objectsOf[*networkingv1.NetworkPolicy](ms) {
		tests = append(tests, reference{"NetworkPolicy/" + np.Name, np.ObjectMeta, func() error { return matches(&np.Spec.PodSelector) }})
	}
	if len(tests) == 0 {
		t.Fatal("no object refers to the Deployment")
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.meta.Namespace != d.Namespace {
				t.Errorf("namespace = %q, want the Deployment's %q", tt.meta.Namespace, d.Namespace)
			}
			if err := tt.check(); err != nil {
				t.Error(err)
			}
		})
	}
}

// reference is an object that must select the fetchd pods or target the
// fetchd Deployment: check says whether it does.
type reference struct {
	name  string
	meta  metav1.ObjectMeta
	check func() error
}

// targetsContainer reports whether a Service port reaches a port of c.
func targetsContainer(p corev1.ServicePort, c *corev1.Container) bool {
	for _, cp := range c.Ports {
		switch {
		case p.TargetPort.Type == intstr.String && p.TargetPort.StrVal == cp.Name,
			p.TargetPort.Type == intstr.Int && p.TargetPort.IntVal == cp.ContainerPort,
			p.TargetPort.Type == intstr.Int && p.TargetPort.IntVal == 0 && p.Port == cp.ContainerPort:
			return true
		}
	}
	return false
}

func TestServices(t *testing.T) {
	ms := loadManifests(t)
	services := map[string]*corev1.Service{}
	for _, s := range objectsOf[*corev1.Service](ms) {
		services[s.Name] = s
	}
	tests := []struct {
		name      string
		headless  bool
		wantPorts map[string]int32 // by port name
	}{
		{"fetchd", false, map[string]int32{"grpc": 50051, "metrics": 9090}},
		{"fetchd-headless", true, map[string]int32{"grpc": 50051}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := services[tt.name]
			if s == nil {
				t.Fatalf("no Service %q", tt.name)
			}
			if s.Spec.Type != "" && s.Spec.Type != corev1.ServiceTypeClusterIP {
				t.Errorf("type = %s, want ClusterIP", s.Spec.Type)
			}
			if got := s.Spec.ClusterIP == corev1.ClusterIPNone; got != tt.headless {
				t.Errorf("clusterIP = %q, headless %v, want headless %v", s.Spec.ClusterIP, got, tt.headless)
			}
			got := map[string]int32{}
			for _, p := range s.Spec.Ports {
				got[p.Name] = p.Port
				if p.Name == grpcPortName && (p.AppProtocol == nil || *p.AppProtocol != "grpc") {
					t.Errorf("port grpc appProtocol = %s, want grpc", show(p.AppProtocol))
				}
			}
			if !maps.Equal(got, tt.wantPorts) {
				t.Errorf("ports = %v, want %v", got, tt.wantPorts)
			}
		})
	}
}

func TestHorizontalPodAutoscaler(t *testing.T) {
	ms := loadManifests(t)
	d, _ := fetchdDeployment(t, ms)
	hpas := objectsOf[*autoscalingv2.HorizontalPodAutoscaler](ms)
	if len(hpas) != 1 {
		t.Fatalf("%d HorizontalPodAutoscalers, want 1", len(hpas))
	}
	h := hpas[0]
	if h.Spec.MinReplicas == nil || *h.Spec.MinReplicas != 3 || h.Spec.MaxReplicas != 20 {
		t.Errorf("minReplicas, maxReplicas = %s, %d, want 3, 20", show(h.Spec.MinReplicas), h.Spec.MaxReplicas)
	}
	if r := d.Spec.Replicas; r == nil || h.Spec.MinReplicas == nil || *r < *h.Spec.MinReplicas || *r > h.Spec.MaxReplicas {
		t.Errorf("Deployment replicas %s outside the HPA's range", show(r))
	}
	var cpu *int32
	for _, m := range h.Spec.Metrics {
		if m.Type == autoscalingv2.ResourceMetricSourceType && m.Resource != nil && m.Resource.Name == corev1.ResourceCPU &&
			m.Resource.Target.Type == autoscalingv2.UtilizationMetricType {
			cpu = m.Resource.Target.AverageUtilization
		}
	}
	if cpu == nil || *cpu != 70 {
		t.Errorf("CPU averageUtilization = %s, want 70", show(cpu))
	}
	if b := h.Spec.Behavior; b == nil || b.ScaleDown == nil || b.ScaleDown.StabilizationWindowSeconds == nil || *b.ScaleDown.StabilizationWindowSeconds <= 0 {
		t.Errorf("behavior.scaleDown.stabilizationWindowSeconds not set")
	}
}

func TestPodDisruptionBudget(t *testing.T) {
	pdbs := objectsOf[*policyv1.PodDisruptionBudget](loadManifests(t))
	if len(pdbs) != 1 {
		t.Fatalf("%d PodDisruptionBudgets, want 1", len(pdbs))
	}
	if got, want := pdbs[0].Spec.MaxUnavailable, intstr.FromInt32(1); got == nil || *got != want {
		t.Errorf("maxUnavailable = %s, want %s", show(got), want.String())
	}
}

// internalRanges are the destinations that fetchd pods must never reach,
// whatever fetchd's own egress policy says.
var internalRanges = []string{
	"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "100.64.0.0/10", "127.0.0.0/8",
	"::1/128", "fc00::/7", "fe80::/10",
}

func TestNetworkPolicy(t *testing.T) {
	ms := loadManifests(t)
	_, c := fetchdDeployment(t, ms)
	nps := objectsOf[*networkingv1.NetworkPolicy](ms)
	if len(nps) != 1 {
		t.Fatalf("%d NetworkPolicies, want 1", len(nps))
	}
	spec := nps[0].Spec
	if !slices.Contains(spec.PolicyTypes, networkingv1.PolicyTypeIngress) || !slices.Contains(spec.PolicyTypes, networkingv1.PolicyTypeEgress) {
		t.Errorf("policyTypes = %v, want Ingress and Egress", spec.PolicyTypes)
	}

	t.Run("ingress", func(t *testing.T) {
		tests := []struct {
			name string
			port string // container port name
			peer networkingv1.NetworkPolicyPeer
		}{
			{"gRPC from fetchd clients in any namespace", grpcPortName, networkingv1.NetworkPolicyPeer{
				NamespaceSelector: &metav1.LabelSelector{},
				PodSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"fetchd-client": "true"}},
			}},
			{"metrics from the monitoring namespace", metricsPort, networkingv1.NetworkPolicyPeer{
				NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": "monitoring"}},
			}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				port := containerPort(c, tt.port)
				var peers []networkingv1.NetworkPolicyPeer
				for _, r := range spec.Ingress {
					for _, p := range r.Ports {
						if p.Port != nil && p.Port.IntVal == port {
							peers = r.From
						}
					}
				}
				if want := []networkingv1.NetworkPolicyPeer{tt.peer}; !reflect.DeepEqual(peers, want) {
					t.Errorf("ingress to port %d from %v, want %v", port, peers, want)
				}
			})
		}
		for _, r := range spec.Ingress {
			if len(r.Ports) == 0 || len(r.From) == 0 {
				t.Errorf("ingress rule %+v opens every port or every source", r)
			}
		}
	})

	t.Run("egress", func(t *testing.T) {
		allowed := map[string]bool{"UDP/53": true, "TCP/53": true, "TCP/80": true, "TCP/443": true}
		for _, r := range spec.Egress {
			if len(r.Ports) == 0 || len(r.To) == 0 {
				t.Errorf("egress rule %+v opens every port or every destination", r)
			}
			for _, p := range r.Ports {
				proto := corev1.ProtocolTCP
				if p.Protocol != nil {
					proto = *p.Protocol
				}
				if key := fmt.Sprintf("%s/%s", proto, p.Port); p.Port == nil || p.EndPort != nil || !allowed[key] {
					t.Errorf("egress port %s, want only %v", key, allowed)
				}
			}
			for _, peer := range r.To {
				if peer.IPBlock != nil {
					if err := excludesInternal(peer.IPBlock); err != nil {
						t.Error(err)
					}
				}
			}
		}
	})
}

// excludesInternal checks that an ipBlock reaches none of internalRanges.
func excludesInternal(b *networkingv1.IPBlock) error {
	cidr, err := netip.ParsePrefix(b.CIDR)
	if err != nil {
		return err
	}
	for _, s := range internalRanges {
		r := netip.MustParsePrefix(s)
		if !cidr.Overlaps(r) {
			continue
		}
		covered := false
		for _, e := range b.Except {
			ep, err := netip.ParsePrefix(e)
			if err != nil {
				return err
			}
			if ep.Bits() <= r.Bits() && ep.Contains(r.Addr()) {
				covered = true
			}
		}
		if !covered {
			return fmt.Errorf("ipBlock %s reaches %s: add it to except", b.CIDR, r)
		}
	}
	return nil
}
