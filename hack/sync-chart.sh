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

# The operator's RBAC rules, generated from the reconciler's markers, as a template the chart's
# ClusterRole or per-namespace Roles include.
rules="${ROOT}/charts/cryptoassets-operator/templates/_rules.tpl"
{
  echo '{{- /* Generated from config/rbac/role.yaml by hack/sync-chart.sh; do not edit. */ -}}'
  echo '{{- define "cryptoassets-operator.rules" }}'
  sed -n '/^rules:$/,$p' "${ROOT}/config/rbac/role.yaml" | sed '1d'
  echo '{{- end }}'
} > "${rules}"
