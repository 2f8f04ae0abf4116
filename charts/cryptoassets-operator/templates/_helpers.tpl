{{- define "cryptoassets-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- /*
fullname names every object of the release. The release name alone when it already holds the
chart's name ("cryptoassets-operator"), the chart's name when the release name is its start
("cryptoassets" gives "cryptoassets-operator", not "cryptoassets-cryptoassets-operator"),
otherwise release-chart; fullnameOverride wins over all of them.
*/ -}}
{{- define "cryptoassets-operator.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "cryptoassets-operator.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else if hasPrefix .Release.Name $name -}}
{{- $name -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "cryptoassets-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "cryptoassets-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "cryptoassets-operator.labels" -}}
{{ include "cryptoassets-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "cryptoassets-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "cryptoassets-operator.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "cryptoassets-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- /*
kubeVersionCheck refuses a cluster older than the CRD's CEL rules need. Chart.yaml has no
kubeVersion, because `helm template` without a cluster assumes an old version and would refuse
to render; the check runs only against a real cluster (lookup answers nothing without one).
*/ -}}
{{- define "cryptoassets-operator.kubeVersionCheck" -}}
{{- if lookup "v1" "Namespace" "" "kube-system" -}}
{{- if semverCompare "<1.30.0-0" .Capabilities.KubeVersion.Version -}}
{{- fail (printf "cryptoassets-operator needs Kubernetes 1.30 or newer (CEL validation rules in the CRD); this cluster is %s" .Capabilities.KubeVersion.Version) -}}
{{- end -}}
{{- end -}}
{{- end -}}
