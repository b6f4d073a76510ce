// Package kubernetes holds fetchd's Kubernetes manifests: a Deployment, a
// ClusterIP and a headless Service, a HorizontalPodAutoscaler, a
// PodDisruptionBudget and a NetworkPolicy, one object per YAML file, listed in
// kustomization.yaml for `kubectl apply -k`.
//
// The package has no Go code of its own. Its tests decode every manifest
// strictly into the k8s.io/api type of its apiVersion and kind, so that a
// misspelled field fails `go test`, and check that the objects agree with each
// other: selectors match the pod labels, probes use the health port
// (-health-listen, which answers NOT_SERVING while fetchd drains), the grace
// period outlasts fetchd's -drain-timeout. It lives in its own module
// (deploy/go.mod) so that k8s.io/api stays out of fetchd's.
package kubernetes
