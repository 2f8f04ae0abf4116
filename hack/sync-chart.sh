#!/usr/bin/env bash
# Copies the generated CRD into the Helm chart's templates, behind the crds.install value and with
# helm.sh/resource-policy: keep so `helm uninstall` never deletes CryptoAssets (and their ledgers' config).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
src="${ROOT}/config/crd/bases/cryptoassets.io_cryptoassets.yaml"
dst="${ROOT}/charts/cryptoassets-operator/templates/crds/cryptoassets.io_cryptoassets.yaml"
mkdir -p "$(dirname "${dst}")"
{
  echo "{{- if .Values.crds.install }}"
  echo "# Generated from config/crd/bases by hack/sync-chart.sh; do not edit."
  awk '
    /^  annotations:$/ && !done {
      print
      print "    {{- if .Values.crds.keep }}"
      print "    helm.sh/resource-policy: keep"
      print "    {{- end }}"
      done = 1; next
    }
    { print }
  ' "${src}" | sed '1{/^---$/d}'
  echo "{{- end }}"
} > "${dst}"
