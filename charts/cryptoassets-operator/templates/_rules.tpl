{{- /* Generated from config/rbac/role.yaml by hack/sync-chart.sh; do not edit. */ -}}
{{- define "cryptoassets-operator.rules" }}
- apiGroups:
  - ""
  resources:
  - configmaps
  - serviceaccounts
  - services
  verbs:
  - create
  - get
  - list
  - update
  - watch
- apiGroups:
  - ""
  resources:
  - pods
  - secrets
  verbs:
  - get
  - list
  - watch
- apiGroups:
  - ""
  - events.k8s.io
  resources:
  - events
  verbs:
  - create
  - patch
- apiGroups:
  - apps
  resources:
  - deployments
  verbs:
  - create
  - get
  - list
  - update
  - watch
- apiGroups:
  - cryptoassets.io
  resources:
  - cryptoassets
  verbs:
  - get
  - list
  - watch
- apiGroups:
  - cryptoassets.io
  resources:
  - cryptoassets/status
  verbs:
  - get
  - patch
  - update
- apiGroups:
  - rbac.authorization.k8s.io
  resources:
  - rolebindings
  - roles
  verbs:
  - create
  - get
  - list
  - update
  - watch
{{- end }}
