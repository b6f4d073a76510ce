package kubernetes_test

import (
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

const (
	deploymentName = "fetchd"
	containerName  = "fetchd"
	grpcPortName   = "grpc"
	metricsPort    = "metrics"
	healthPortName = "health"
)

// fetchd's defaults for the flags the manifests rely on (cmd/fetchd/config.go).
const (
	defaultListen       = "localhost:50051"
	defaultDrainTimeout = 30 * time.Second
)

// Kubernetes defaults for fields the manifests may leave out.
const (
	defaultGracePeriod      = 30 // seconds
	defaultPeriodSeconds    = 10
	defaultFailureThreshold = 3
)

// fetchdDeployment returns the fetchd Deployment and its fetchd container.
func fetchdDeployment(tb testing.TB, ms []manifest) (*appsv1.Deployment, *corev1.Container) {
	tb.Helper()
	var d *appsv1.Deployment
	for _, o := range objectsOf[*appsv1.Deployment](ms) {
		if o.Name == deploymentName {
			d = o
		}
	}
	if d == nil {
		tb.Fatalf("no Deployment %q", deploymentName)
	}
	for i, c := range d.Spec.Template.Spec.Containers {
		if c.Name == containerName {
			return d, &d.Spec.Template.Spec.Containers[i]
		}
	}
	tb.Fatalf("Deployment %q has no container %q", deploymentName, containerName)
	return nil, nil
}

// containerPort returns the port of c named name, or 0.
func containerPort(c *corev1.Container, name string) int32 {
	for _, p := range c.Ports {
		if p.Name == name {
			return p.ContainerPort
		}
	}
	return 0
}

// setting returns the value fetchd sees for a flag: from the container's args
// (-name=value, --name=value or -name value), else from its FETCHD_ variable,
// else def.
func setting(c *corev1.Container, name, def string) string {
	val, found := def, false
	for i, a := range c.Args {
		a = strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-")
		switch {
		case strings.HasPrefix(a, name+"="):
			val, found = strings.TrimPrefix(a, name+"="), true
		case a == name && i+1 < len(c.Args):
			val, found = c.Args[i+1], true
		}
	}
	if found {
		return val
	}
	env := "FETCHD_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
	for _, e := range c.Env {
		if e.Name == env {
			return e.Value
		}
	}
	return def
}

// drainTimeout is the container's -drain-timeout.
func drainTimeout(tb testing.TB, c *corev1.Container) time.Duration {
	tb.Helper()
	d, err := time.ParseDuration(setting(c, "drain-timeout", defaultDrainTimeout.String()))
	if err != nil {
		tb.Fatalf("-drain-timeout: %v", err)
	}
	return d
}

// listenPort checks that a listen address is reachable from outside the pod
// and returns its port.
func listenPort(addr string) (int32, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, err
	}
	if host != "" && host != "0.0.0.0" && host != "::" {
		return 0, fmt.Errorf("%q listens on %q only, which the kubelet and other pods cannot reach", addr, host)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	return int32(p), err
}

func TestDeployment(t *testing.T) {
	ms := loadManifests(t)
	d, c := fetchdDeployment(t, ms)
	pod := &d.Spec.Template.Spec
	podLabels := labels.Set(d.Spec.Template.Labels)

	tests := []struct {
		name  string
		check func(t *testing.T)
	}{
		{"selector matches the pod labels", func(t *testing.T) {
			if podLabels["app.kubernetes.io/name"] != "fetchd" {
				t.Errorf("pod label app.kubernetes.io/name = %q, want fetchd", podLabels["app.kubernetes.io/name"])
			}
			sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
			if err != nil || sel.Empty() || !sel.Matches(podLabels) {
				t.Errorf("selector %v (%v) does not match pod labels %v", d.Spec.Selector, err, podLabels)
			}
		}},
		{"replicas", func(t *testing.T) {
			if d.Spec.Replicas == nil || *d.Spec.Replicas != 3 {
				t.Errorf("replicas = %s, want 3", show(d.Spec.Replicas))
			}
		}},
		{"listen addresses match the container ports", func(t *testing.T) {
			for _, tt := range []struct{ flag, def, port string }{
				{"listen", defaultListen, grpcPortName},
				{"metrics-listen", "", metricsPort},
				{"health-listen", "", healthPortName},
			} {
				want := containerPort(c, tt.port)
				if want == 0 {
					t.Errorf("no container port named %q", tt.port)
					continue
				}
				got, err := listenPort(setting(c, tt.flag, tt.def))
				if err != nil || got != want {
					t.Errorf("-%s port = %d (%v), want container port %s %d", tt.flag, got, err, tt.port, want)
				}
			}
		}},
		{"probes are gRPC health checks on the health port", func(t *testing.T) {
			// A draining fetchd closes its grpc port at once (GOAWAY, new
			// connections refused); only -health-listen answers, with
			// NOT_SERVING, until it exits.
			healthPort := containerPort(c, healthPortName)
			if healthPort == 0 {
				t.Fatalf("no container port named %q", healthPortName)
			}
			probes := []struct {
				name     string
				probe    *corev1.Probe
				optional bool
			}{
				{"livenessProbe", c.LivenessProbe, false},
				{"readinessProbe", c.ReadinessProbe, false},
				{"startupProbe", c.StartupProbe, true},
			}
			for _, p := range probes {
				switch {
				case p.probe == nil && p.optional:
				case p.probe == nil:
					t.Errorf("%s missing", p.name)
				case p.probe.GRPC == nil:
					t.Errorf("%s is not a gRPC probe: %+v", p.name, p.probe.ProbeHandler)
				case p.probe.GRPC.Port != healthPort:
					t.Errorf("%s port = %d, want health port %d", p.name, p.probe.GRPC.Port, healthPort)
				}
			}
			if p := c.ReadinessProbe; p != nil && p.GRPC != nil && p.GRPC.Service != nil && *p.GRPC.Service != "" {
				t.Errorf("readinessProbe service = %q, want \"\" (the whole server)", *p.GRPC.Service)
			}
		}},
		{"liveness outlasts the drain", func(t *testing.T) {
			// A draining fetchd answers NOT_SERVING on its health port;
			// liveness must not restart it before the drain ends.
			p := c.LivenessProbe
			if p == nil {
				t.Skip("no livenessProbe")
			}
			period, threshold := cmp0(p.PeriodSeconds, defaultPeriodSeconds), cmp0(p.FailureThreshold, defaultFailureThreshold)
			if window, drain := time.Duration(period*threshold)*time.Second, drainTimeout(t, c); window < drain {
				t.Errorf("livenessProbe fails after %v, want at least -drain-timeout %v", window, drain)
			}
		}},
		{"grace period exceeds the drain timeout", func(t *testing.T) {
			grace := int64(defaultGracePeriod)
			if pod.TerminationGracePeriodSeconds != nil {
				grace = *pod.TerminationGracePeriodSeconds
			}
			need := drainTimeout(t, c)
			if l := c.Lifecycle; l != nil && l.PreStop != nil && l.PreStop.Sleep != nil {
				need += time.Duration(l.PreStop.Sleep.Seconds) * time.Second
			}
			if time.Duration(grace)*time.Second <= need {
				t.Errorf("terminationGracePeriodSeconds = %d, want more than -drain-timeout plus preStop (%v)", grace, need)
			}
		}},
		{"security context", func(t *testing.T) {
			psc, sc := pod.SecurityContext, c.SecurityContext
			if psc == nil {
				psc = &corev1.PodSecurityContext{}
			}
			if sc == nil {
				sc = &corev1.SecurityContext{}
			}
			// A container's setting wins over its pod's.
			nonRoot := first(sc.RunAsNonRoot, psc.RunAsNonRoot)
			user := first(sc.RunAsUser, psc.RunAsUser)
			group := first(sc.RunAsGroup, psc.RunAsGroup)
			seccomp := first(sc.SeccompProfile, psc.SeccompProfile)
			if nonRoot == nil || !*nonRoot {
				t.Errorf("runAsNonRoot = %s, want true", show(nonRoot))
			}
			if user == nil || *user != 65532 || group == nil || *group != 65532 {
				t.Errorf("runAsUser, runAsGroup = %s, %s, want 65532, 65532", show(user), show(group))
			}
			if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
				t.Errorf("readOnlyRootFilesystem = %s, want true", show(sc.ReadOnlyRootFilesystem))
			}
			if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
				t.Errorf("allowPrivilegeEscalation = %s, want false", show(sc.AllowPrivilegeEscalation))
			}
			if sc.Privileged != nil && *sc.Privileged {
				t.Errorf("privileged = true, want false")
			}
			if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) > 0 {
				t.Errorf("capabilities = %v, want drop ALL and add none", sc.Capabilities)
			}
			if seccomp == nil || seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault {
				t.Errorf("seccompProfile = %v, want RuntimeDefault", seccomp)
			}
		}},
		{"resources", func(t *testing.T) {
			for _, name := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
				req, okReq := c.Resources.Requests[name]
				lim, okLim := c.Resources.Limits[name]
				if !okReq || !okLim {
					t.Errorf("%s request, limit = %v, %v, want both set", name, req.String(), lim.String())
				} else if req.Cmp(lim) > 0 {
					t.Errorf("%s request %v is over its limit %v", name, req.String(), lim.String())
				}
			}
		}},
		{"no service account token", func(t *testing.T) {
			if a := pod.AutomountServiceAccountToken; a == nil || *a {
				t.Errorf("automountServiceAccountToken = %s, want false", show(a))
			}
		}},
		{"spread across nodes", func(t *testing.T) {
			const node = "kubernetes.io/hostname"
			matches := func(ls *metav1.LabelSelector) bool {
				sel, err := metav1.LabelSelectorAsSelector(ls)
				return err == nil && !sel.Empty() && sel.Matches(podLabels)
			}
			for _, tsc := range pod.TopologySpreadConstraints {
				if tsc.TopologyKey == node && matches(tsc.LabelSelector) {
					return
				}
			}
			if a := pod.Affinity; a != nil && a.PodAntiAffinity != nil {
				for _, w := range a.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution {
					if w.PodAffinityTerm.TopologyKey == node && matches(w.PodAffinityTerm.LabelSelector) {
						return
					}
				}
				for _, term := range a.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution {
					if term.TopologyKey == node && matches(term.LabelSelector) {
						return
					}
				}
			}
			t.Errorf("no topologySpreadConstraint or podAntiAffinity on %s selects the fetchd pods", node)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, tt.check)
	}
}

// first returns a if it is set, else b.
func first[T any](a, b *T) *T {
	if a != nil {
		return a
	}
	return b
}

// show formats an optional field.
func show[T any](p *T) string {
	if p == nil {
		return "unset"
	}
	return fmt.Sprint(*p)
}

// cmp0 returns v, or def when v is zero (unset).
func cmp0(v, def int32) int32 {
	if v == 0 {
		return def
	}
	return v
}
