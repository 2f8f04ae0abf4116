#!/usr/bin/env bash
# Builds Kubernetes binaries (kube-apiserver, kube-controller-manager, kube-scheduler, kubelet,
# kube-proxy) from the k8s.io/kubernetes Go module
# (no prebuilt binaries can be downloaded on these machines). The staging modules that kubernetes'
# go.mod replaces with local paths are replaced by their published twins instead. Binaries are cached
# under bin/k8s/<version>/ and rebuilt only when missing.
#
# usage: hack/build-kube.sh [component ...]   (default: all three)
set -euo pipefail

KUBE_VERSION="${KUBE_VERSION:-v1.36.3}"
STAGING_VERSION="v0.${KUBE_VERSION#v1.}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
OUT="${ROOT}/bin/k8s/${KUBE_VERSION}"
WORK="${ROOT}/bin/kube-build/${KUBE_VERSION}"
components=("$@")
[ ${#components[@]} -gt 0 ] || components=(kube-apiserver kube-controller-manager kube-scheduler)

missing=()
for c in "${components[@]}"; do [ -x "${OUT}/${c}" ] || missing+=("$c"); done
[ ${#missing[@]} -gt 0 ] || exit 0

mkdir -p "${OUT}" "${WORK}"
gomod="$(cd "${WORK}" && GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@${KUBE_VERSION}" | sed -n 's/.*"GoMod": "\(.*\)",/\1/p')"
[ -n "${gomod}" ] || { echo "build-kube: could not download k8s.io/kubernetes@${KUBE_VERSION}" >&2; exit 1; }
goversion="$(sed -n 's/^go //p' "${gomod}")"

{
  echo "module cryptoassets.io/kube-build"
  echo
  echo "go ${goversion}"
  echo
  echo "require k8s.io/kubernetes ${KUBE_VERSION}"
  echo
  echo "replace ("
  sed -n '/^replace (/,/^)/p' "${gomod}" | sed -n 's#^\s*\(k8s.io/[a-z0-9-]*\) => ./staging/src/.*#\t\1 => \1 '"${STAGING_VERSION}"'#p'
  echo ")"
} > "${WORK}/go.mod"

# The version ldflags mirror kubernetes' hack/lib/version.sh: without them the binaries call
# themselves v0.0.0 and the compatibility-version machinery refuses to start.
major="1"; minor="$(echo "${KUBE_VERSION#v1.}" | cut -d. -f1)"
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X ${pkg}.gitVersion=${KUBE_VERSION} -X ${pkg}.gitMajor=${major} -X ${pkg}.gitMinor=${minor}"
  ldflags+=" -X ${pkg}.gitTreeState=clean -X ${pkg}.buildDate=1970-01-01T00:00:00Z"
done

for c in "${missing[@]}"; do
  echo "build-kube: building ${c} ${KUBE_VERSION} (first build takes several minutes; cached afterwards in ${OUT})"
  (cd "${WORK}" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags "${ldflags}" -o "${OUT}/${c}.tmp" "k8s.io/kubernetes/cmd/${c}")
  mv "${OUT}/${c}.tmp" "${OUT}/${c}"
done
