#!/usr/bin/env bash
# Installs what the project's build, tests and dev stack need on a fresh machine, and nothing that
# is already there. Debian packages through apt; Go tools with `go install` into bin/; Kubernetes
# control-plane binaries built from Go modules (hack/build-kube.sh). Everything is cached under bin/.
#
# usage: hack/setup-tools.sh test|dev|node|all
#   test: envtest's API server; dev: adds a kwok cluster's binaries; node (= all): adds a real node
#   (containerd, runc, CNI plugins, iptables, kubelet, kube-proxy) for pods that really run.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="${ROOT}/bin"
mode="${1:-test}"

CONTROLLER_TOOLS_VERSION="${CONTROLLER_TOOLS_VERSION:-v0.23.0}"
HELM_VERSION="${HELM_VERSION:-v3.22.0}"
KWOK_VERSION="${KWOK_VERSION:-v0.8.0}"
KUBE_VERSION="${KUBE_VERSION:-v1.36.3}"
BTCD_VERSION="${BTCD_VERSION:-v0.26.2}"
BTCWALLET_VERSION="${BTCWALLET_VERSION:-v0.15.1}"
PROMETHEUS_VERSION="${PROMETHEUS_VERSION:-v0.316.0}"
PROMETHEUS_OPERATOR_VERSION="${PROMETHEUS_OPERATOR_VERSION:-v0.85.0}"

log() { echo "setup: $*" >&2; }

apt_updated=""
apt_install() { # apt_install BINARY PACKAGE
  command -v "$1" >/dev/null 2>&1 && return 0
  [ -x "/usr/bin/$1" ] && return 0
  if [ "$(id -u)" != 0 ]; then
    log "$1 is missing; install the Debian package $2 (needs root)"; exit 1
  fi
  if [ -z "${apt_updated}" ]; then
    log "apt-get update"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    apt_updated=1
  fi
  log "installing Debian package $2"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$2" >/dev/null
}

go_install() { # go_install NAME MODULE@VERSION
  local name="$1" pkg="$2" stamp="${BIN}/.$1.version"
  if [ -x "${BIN}/${name}" ] && [ "$(cat "${stamp}" 2>/dev/null)" = "${pkg}" ]; then return 0; fi
  log "go install ${pkg}"
  GOBIN="${BIN}" GOFLAGS=-mod=mod go install "${pkg}"
  echo "${pkg}" > "${stamp}"
}

# The envtest asset directory holds links to the binaries envtest starts (KUBEBUILDER_ASSETS).
envtest_assets() {
  local dir="${BIN}/envtest"
  mkdir -p "${dir}"
  ln -sf "${BIN}/k8s/${KUBE_VERSION}/kube-apiserver" "${dir}/kube-apiserver"
  ln -sf "$(command -v etcd || echo /usr/bin/etcd)" "${dir}/etcd"
  ln -sf "$(command -v kubectl)" "${dir}/kubectl"
}

mkdir -p "${BIN}"
apt_install etcd etcd-server
# Litecoin Core (regtest) is the Bitcoin Core-family node the bitcoind backend is tested against.
apt_install litecoind litecoind
# The Redis walletnotify source is tested against a real redis-server (and redis-cli, which
# bitcoind's `walletnotify=redis-cli publish ...` runs). The tests start their own server.
apt_install redis-server redis-server
# The walletnotify hook is tested with curl, as bitcoind's `walletnotify=curl --data ...` runs it.
apt_install curl curl
# The ledger tests start their own PostgreSQL from the server binaries.
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && [ -z "${PG_BIN:-}" ]; then
  apt_install /usr/lib/postgresql/15/bin/initdb postgresql-15
fi
command -v kubectl >/dev/null 2>&1 || { log "kubectl is missing"; exit 1; }
go_install controller-gen "sigs.k8s.io/controller-tools/cmd/controller-gen@${CONTROLLER_TOOLS_VERSION}"
go_install helm "helm.sh/helm/v3/cmd/helm@${HELM_VERSION}"
# A real bitcoind-compatible node and wallet for the backend tests (simnet).
go_install btcd "github.com/btcsuite/btcd@${BTCD_VERSION}"
go_install btcctl "github.com/btcsuite/btcd/cmd/btcctl@${BTCD_VERSION}"
go_install btcwallet "github.com/btcsuite/btcwallet@${BTCWALLET_VERSION}"
# promtool runs the chart's alerting-rule tests (`promtool test rules`).
go_install promtool "github.com/prometheus/prometheus/cmd/promtool@${PROMETHEUS_VERSION}"
# The Prometheus Operator's CRDs, from its published module, so the chart's ServiceMonitor,
# PodMonitor and PrometheusRule are judged by the real schemas in the test API server.
prometheus_operator_crds() {
  local dir="${BIN}/crds/prometheus-operator" stamp="${BIN}/crds/prometheus-operator/.version" src
  [ "$(cat "${stamp}" 2>/dev/null)" = "${PROMETHEUS_OPERATOR_VERSION}" ] && return 0
  log "go mod download github.com/prometheus-operator/prometheus-operator@${PROMETHEUS_OPERATOR_VERSION} (its CRDs)"
  src="$(cd "${ROOT}" && go mod download -json "github.com/prometheus-operator/prometheus-operator@${PROMETHEUS_OPERATOR_VERSION}" |
    sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
  [ -n "${src}" ] || { log "could not download the Prometheus Operator module"; exit 1; }
  mkdir -p "${dir}"
  for kind in servicemonitors podmonitors prometheusrules; do
    cp "${src}/example/prometheus-operator-crd/monitoring.coreos.com_${kind}.yaml" "${dir}/"
  done
  chmod u+w "${dir}"/*.yaml
  echo "${PROMETHEUS_OPERATOR_VERSION}" > "${stamp}"
}
prometheus_operator_crds
case "${mode}" in
  test)
    KUBE_VERSION="${KUBE_VERSION}" "${ROOT}/hack/build-kube.sh" kube-apiserver ;;
  dev|node|all)
    KUBE_VERSION="${KUBE_VERSION}" "${ROOT}/hack/build-kube.sh" kube-apiserver kube-controller-manager kube-scheduler
    go_install kwok "sigs.k8s.io/kwok/cmd/kwok@${KWOK_VERSION}"
    go_install kwokctl "sigs.k8s.io/kwok/cmd/kwokctl@${KWOK_VERSION}"
    if [ "${mode}" != dev ]; then
      # A real node (internal/testing/devstack/node): containerd and runc run the pods, the CNI plugins
      # wire them to a bridge, kube-proxy programs iptables for ClusterIPs.
      apt_install containerd containerd
      apt_install runc runc
      apt_install /usr/lib/cni/bridge containernetworking-plugins
      apt_install iptables iptables
      apt_install conntrack conntrack
      apt_install ip iproute2
      KUBE_VERSION="${KUBE_VERSION}" "${ROOT}/hack/build-kube.sh" kubelet kube-proxy
    fi ;;
  *) log "unknown mode ${mode} (test, dev, node or all)"; exit 2 ;;
esac
envtest_assets
