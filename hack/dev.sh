#!/usr/bin/env bash
# The local development stack behind `make dev`: a control plane from kwokctl's binary runtime
# (etcd from Debian, kube-apiserver, kube-controller-manager and kube-scheduler built from the
# k8s.io/kubernetes module, one simulated node), the CRD, the operator running on this machine,
# and the bitcoind sample. Pods are simulated by kwok: the helper Deployment rolls out and reports
# Available, but no helper process runs yet.
#
# Ctrl-C stops everything. DEV_SMOKE=1 checks the stack end to end (Ready, rotation, garbage
# collection) and exits; it is what `make dev-smoke` runs.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="${ROOT}/bin"
KUBE_VERSION="${KUBE_VERSION:-v1.36.3}"
K8S="${BIN}/k8s/${KUBE_VERSION}"
STATE="${ROOT}/.dev"
CLUSTER="${DEV_CLUSTER:-cryptoassets-dev}"
export KWOK_WORKDIR="${STATE}/kwok"
export KUBECONFIG="${STATE}/kubeconfig"
OPERATOR_LOG="${STATE}/operator.log"
NS="${DEV_NAMESPACE:-default}"

say() { printf '\033[1mdev:\033[0m %s\n' "$*" >&2; }
kwokctl() { "${BIN}/kwokctl" --name "${CLUSTER}" "$@"; }

operator_pid=""
cleanup() {
  trap - EXIT INT TERM
  say "stopping"
  if [ -n "${operator_pid}" ]; then kill "${operator_pid}" 2>/dev/null || true; wait "${operator_pid}" 2>/dev/null || true; fi
  kwokctl delete cluster >/dev/null 2>&1 || true
  say "stopped; nothing is left running (logs stay in ${STATE})"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for b in "${K8S}/kube-apiserver" "${K8S}/kube-controller-manager" "${K8S}/kube-scheduler" "${BIN}/kwok" "${BIN}/kwokctl" "${BIN}/cryptoassets"; do
  [ -x "$b" ] || { say "missing $b; run 'make dev' (it installs and builds everything first)"; exit 1; }
done
mkdir -p "${STATE}"

say "starting a local control plane (kwokctl, binary runtime)"
kwokctl delete cluster >/dev/null 2>&1 || true
kwokctl create cluster --runtime binary \
  --etcd-binary "$(command -v etcd || echo /usr/bin/etcd)" \
  --kube-apiserver-binary "${K8S}/kube-apiserver" \
  --kube-controller-manager-binary "${K8S}/kube-controller-manager" \
  --kube-scheduler-binary "${K8S}/kube-scheduler" \
  --kwok-controller-binary "${BIN}/kwok" \
  --kubeconfig "${KUBECONFIG}" --wait 120s >"${STATE}/kwokctl.log" 2>&1 \
  || { say "cluster did not start; see ${STATE}/kwokctl.log"; tail -20 "${STATE}/kwokctl.log" >&2; exit 1; }
kwokctl scale node --replicas 1 >>"${STATE}/kwokctl.log" 2>&1

say "installing the CryptoAsset CRD"
kubectl apply --server-side -f "${ROOT}/config/crd/bases" >/dev/null
kubectl wait --for condition=Established crd/cryptoassets.cryptoassets.io --timeout 60s >/dev/null

say "starting the operator (log: ${OPERATOR_LOG})"
"${BIN}/cryptoassets" operator --kubeconfig "${KUBECONFIG}" \
  --helper-image "cryptoassets-operator:dev" \
  --metrics-bind-address 127.0.0.1:0 --health-probe-bind-address 127.0.0.1:0 \
  >"${OPERATOR_LOG}" 2>&1 &
operator_pid=$!

say "applying config/samples/bitcoind.yaml"
kubectl apply -n "${NS}" -f "${ROOT}/config/samples/bitcoind.yaml" >/dev/null
if ! kubectl wait -n "${NS}" --for condition=Ready cryptoasset/btc --timeout 120s >/dev/null; then
  say "the CryptoAsset did not become Ready"; kubectl describe -n "${NS}" cryptoasset btc >&2; tail -20 "${OPERATOR_LOG}" >&2; exit 1
fi
kubectl get -n "${NS}" cryptoassets,deployments,services,configmaps -l 'app.kubernetes.io/instance in (btc)' 2>/dev/null || true
kubectl get -n "${NS}" cryptoasset btc -o wide

if [ "${DEV_SMOKE:-}" = 1 ]; then
  hash() { kubectl get -n "${NS}" deploy btc-helper -o jsonpath='{.spec.template.metadata.annotations.cryptoassets\.io/config-hash}'; }
  before="$(hash)"
  say "smoke: rotating the RPC password"
  kubectl patch -n "${NS}" secret btc-credentials --type merge -p '{"stringData":{"rpc-password":"rotated"}}' >/dev/null
  for _ in $(seq 1 100); do [ "$(hash)" != "${before}" ] && break; sleep 0.2; done
  [ "$(hash)" != "${before}" ] || { say "smoke: the pod template hash did not change"; exit 1; }
  kubectl wait -n "${NS}" --for condition=Ready cryptoasset/btc --timeout 120s >/dev/null
  say "smoke: deleting the CryptoAsset; the garbage collector removes its objects (it discovers the new type within ~30s)"
  kubectl delete -n "${NS}" cryptoasset btc --wait=true >/dev/null
  for _ in $(seq 1 120); do
    left="$(kubectl get -n "${NS}" deploy,svc,cm,sa,role,rolebinding -l app.kubernetes.io/instance=btc -o name 2>/dev/null)"
    [ -z "${left}" ] && break; sleep 1
  done
  [ -z "${left}" ] || { say "smoke: objects left after deletion: ${left}"; exit 1; }
  say "smoke: passed (Ready, Secret rotation rolled the helper, children garbage collected)"
  exit 0
fi

cat >&2 <<EOF

  The stack is up. In another terminal:

    export KUBECONFIG=${KUBECONFIG}
    kubectl get cryptoassets -o wide                  # Ready, reasons
    kubectl explain cryptoasset.spec.backend          # what a CryptoAsset can say
    kubectl describe cryptoasset btc                  # conditions and events
    kubectl annotate cryptoasset btc cryptoassets.io/rescan="\$(date +%s)" --overwrite
    kubectl get deploy btc-helper -o yaml             # the helper as the operator rendered it

  Operator log: ${OPERATOR_LOG}
  Ctrl-C stops everything.
EOF
wait "${operator_pid}"
