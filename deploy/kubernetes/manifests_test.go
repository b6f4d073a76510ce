package kubernetes_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// kustomizationFile lists the manifests for `kubectl apply -k`; it is not a
// Kubernetes object.
const kustomizationFile = "kustomization.yaml"

// typeKey is an object's apiVersion and kind.
type typeKey struct{ apiVersion, kind string }

// kinds maps every apiVersion and kind this folder may hold to a new value of
// its Go type. Any other kind fails the tests.
var kinds = map[typeKey]func() any{
	{"apps/v1", "Deployment"}:                     func() any { return new(appsv1.Deployment) },
	{"v1", "Service"}:                             func() any { return new(corev1.Service) },
	{"autoscaling/v2", "HorizontalPodAutoscaler"}: func() any { return new(autoscalingv2.HorizontalPodAutoscaler) },
	{"policy/v1", "PodDisruptionBudget"}:          func() any { return new(policyv1.PodDisruptionBudget) },
	{"networking.k8s.io/v1", "NetworkPolicy"}:     func() any { return new(networkingv1.NetworkPolicy) },
}

// manifest is one decoded file of this folder.
type manifest struct {
	file string
	obj  any // a pointer to one of the types in kinds
}

// docSeparator matches a YAML document separator line.
var docSeparator = regexp.MustCompile(`(?m)^---(\s|$)`)

// documents counts the YAML documents in data that hold more than comments.
func documents(data []byte) int {
	n := 0
	for _, doc := range docSeparator.Split(string(data), -1) {
		for line := range strings.Lines(doc) {
			if l := strings.TrimSpace(line); l != "" && !strings.HasPrefix(l, "#") {
				n++
				break
			}
		}
	}
	return n
}

// decodeStrict decodes YAML into obj the way kube-apiserver's strict field
// validation does: a duplicate key, an unknown field, or a field spelled in
// another case is an error.
func decodeStrict(data []byte, obj any) error {
	j, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		return err
	}
	strictErrs, err := kjson.UnmarshalStrict(j, obj)
	if err != nil {
		return err
	}
	return errors.Join(strictErrs...)
}

// decode decodes a manifest holding one object into the Go type of its
// apiVersion and kind.
func decode(data []byte) (any, error) {
	if n := documents(data); n != 1 {
		return nil, fmt.Errorf("%d YAML documents, want 1", n)
	}
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal(data, &tm); err != nil {
		return nil, err
	}
	newObj, ok := kinds[typeKey{tm.APIVersion, tm.Kind}]
	if !ok {
		return nil, fmt.Errorf("unknown apiVersion %q kind %q", tm.APIVersion, tm.Kind)
	}
	obj := newObj()
	if err := decodeStrict(data, obj); err != nil {
		return nil, fmt.Errorf("%s %s: %w", tm.APIVersion, tm.Kind, err)
	}
	return obj, nil
}

// manifestFiles returns the names of the YAML files of this folder, less
// kustomization.yaml.
func manifestFiles(tb testing.TB) []string {
	tb.Helper()
	var files []string
	for _, pattern := range []string{"*.yaml", "*.yml"} {
		m, err := filepath.Glob(pattern)
		if err != nil {
			tb.Fatal(err)
		}
		files = append(files, m...)
	}
	files = slices.DeleteFunc(files, func(f string) bool { return f == kustomizationFile })
	if len(files) == 0 {
		tb.Fatal("no manifests in this folder")
	}
	slices.Sort(files)
	return files
}

// loadManifests decodes every manifest of this folder.
func loadManifests(tb testing.TB) []manifest {
	tb.Helper()
	var ms []manifest
	for _, f := range manifestFiles(tb) {
		data, err := os.ReadFile(f)
		if err != nil {
			tb.Fatal(err)
		}
		obj, err := decode(data)
		if err != nil {
			tb.Fatalf("decode(%s): %v", f, err)
		}
		ms = append(ms, manifest{file: f, obj: obj})
	}
	return ms
}

// objectsOf returns the objects of type T among ms.
func objectsOf[T any](ms []manifest) []T {
	var out []T
	for _, m := range ms {
		if o, ok := m.obj.(T); ok {
			out = append(out, o)
		}
	}
	return out
}

func TestManifestsDecodeStrictly(t *testing.T) {
	for _, f := range manifestFiles(t) {
		t.Run(f, func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := decode(data); err != nil {
				t.Errorf("decode(%s) = %v, want no error", f, err)
			}
		})
	}
}

func TestKustomizationListsEveryManifest(t *testing.T) {
	data, err := os.ReadFile(kustomizationFile)
	if err != nil {
		t.Fatal(err)
	}
	// Only the fields read here: kustomize has many more, so this decode is
	// not strict.
	var k struct {
		APIVersion string   `json:"apiVersion"`
		Kind       string   `json:"kind"`
		Resources  []string `json:"resources"`
	}
	if err := yaml.Unmarshal(data, &k); err != nil {
		t.Fatalf("decode(%s): %v", kustomizationFile, err)
	}
	if k.APIVersion != "kustomize.config.k8s.io/v1beta1" || k.Kind != "Kustomization" {
		t.Errorf("%s is %s %s, want kustomize.config.k8s.io/v1beta1 Kustomization", kustomizationFile, k.APIVersion, k.Kind)
	}
	files := manifestFiles(t)
	for _, f := range files {
		if !slices.Contains(k.Resources, f) {
			t.Errorf("%s does not list %s", kustomizationFile, f)
		}
	}
	seen := map[string]bool{}
	for _, r := range k.Resources {
		if seen[r] {
			t.Errorf("%s lists %s twice", kustomizationFile, r)
		}
		seen[r] = true
		if !slices.Contains(files, r) {
			t.Errorf("%s lists %s, which is not a manifest of this folder", kustomizationFile, r)
		}
	}
}

// TestDecodeRejects shows that decode catches the mistakes the API server
// would reject or, worse, silently drop.
func TestDecodeRejects(t *testing.T) {
	const deployment = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: fetchd
spec:
  %s
  selector:
    matchLabels:
      app.kubernetes.io/name: fetchd
  template:
    metadata:
      labels:
        app.kubernetes.io/name: fetchd
    spec:
      containers:
        - name: fetchd
          %s
`
	tests := []struct {
		name     string
		manifest string
		wantErr  string // "" for no error
	}{
		{"valid", fmt.Sprintf(deployment, "replicas: 3", "image: fetchd:latest"), ""},
		{"misspelled field", fmt.Sprintf(deployment, "replicass: 3", "image: fetchd:latest"), `unknown field "spec.replicass"`},
		{"field in the wrong case", fmt.Sprintf(deployment, "Replicas: 3", "image: fetchd:latest"), `unknown field "spec.Replicas"`},
		{"misspelled nested field", fmt.Sprintf(deployment, "replicas: 3", "imagee: fetchd:latest"), `unknown field "spec.template.spec.containers[0].imagee"`},
		{"duplicate field", fmt.Sprintf(deployment, "replicas: 3\n  replicas: 4", "image: fetchd:latest"), `"replicas" already set`},
		{"wrong type", fmt.Sprintf(deployment, "replicas: three", "image: fetchd:latest"), "cannot unmarshal string"},
		{"bad quantity", fmt.Sprintf(deployment, "replicas: 3", "resources: {limits: {cpu: 2 cores}}"), "quantities must match"},
		{"unknown kind", "apiVersion: apps/v1\nkind: Deploymnet\nmetadata: {name: fetchd}\n", `unknown apiVersion "apps/v1" kind "Deploymnet"`},
		{"retired apiVersion", "apiVersion: policy/v1beta1\nkind: PodDisruptionBudget\nmetadata: {name: fetchd}\n", `unknown apiVersion "policy/v1beta1"`},
		{"two objects in one file", "apiVersion: v1\nkind: Service\n---\napiVersion: v1\nkind: Service\n", "2 YAML documents, want 1"},
		{"no object", "# nothing here\n", "0 YAML documents, want 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := decode([]byte(tt.manifest))
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("decode() = %v, want no error", err)
			case tt.wantErr != "" && err == nil:
				t.Errorf("decode() = nil, want an error containing %q", tt.wantErr)
			case tt.wantErr != "" && !strings.Contains(err.Error(), tt.wantErr):
				t.Errorf("decode() = %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
}
