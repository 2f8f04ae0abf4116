#!/usr/bin/env bash
# Regenerates deepcopy code, CRD, RBAC and the chart's CRD copy and fails if anything differs from
# what is committed, so a changed API type can never ship with a stale CRD.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "${ROOT}"
files=(api/v1alpha1/zz_generated.deepcopy.go config/crd/bases config/rbac/role.yaml charts/cryptoassets-operator/templates/crds charts/cryptoassets-operator/templates/_rules.tpl)
tmp="$(mktemp -d)"; trap 'rm -rf "${tmp}"' EXIT
for f in "${files[@]}"; do mkdir -p "${tmp}/$(dirname "$f")"; cp -r "$f" "${tmp}/$f"; done
make -s generate manifests >/dev/null
status=0
for f in "${files[@]}"; do
  if ! diff -r "${tmp}/$f" "$f" >/dev/null; then
    echo "verify-generated: $f is out of date; run 'make generate manifests' and commit the result" >&2
    diff -r "${tmp}/$f" "$f" | head -20 >&2 || true
    status=1
  fi
done
exit "${status}"
