// Package deploy holds no code: its tests check the deployment artifacts
// against the programs they deploy. They parse the Kubernetes manifests and
// KEDA ScaledObjects in k8s/, the Grafana dashboard in grafana/, and, at the
// repository root, docker-compose.yml, Dockerfile.tee and .dockerignore, and
// compare what they find (environment variables, flags, ports, consumer and
// stream names, metric names) with the Go sources of prover-api,
// prover-worker and proverctl, so a rename on either side fails here.
//
// None of this needs a Docker engine or a cluster; what those would check
// (an image builds, a manifest is accepted) is listed in docs/DEPLOYMENT.md
// as not verifiable on a machine without them.
package deploy
