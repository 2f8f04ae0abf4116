package v1alpha1

// The names the operator, the helper, the renderers and the dev tooling agree on: labels,
// annotations and condition types. They are spelled here only; a cache selector that must match
// what the renderer writes can then never drift from it.

// Annotations users and the helper set on a CryptoAsset.
const (
	// RescanAnnotation holds a token (any string, usually a timestamp). Every new value asks the
	// helper for one rescan of the backend: kubectl annotate ca btc cryptoassets.io/rescan=$(date +%s) --overwrite
	RescanAnnotation = "cryptoassets.io/rescan"
	// RescanFromHeightAnnotation optionally sets the block height the next rescan starts from.
	RescanFromHeightAnnotation = "cryptoassets.io/rescan-from-height"
	// ConfigHashAnnotation is set on the helper pod template; a new value rolls the helper.
	ConfigHashAnnotation = "cryptoassets.io/config-hash"
)

// Labels on every object the operator creates for a CryptoAsset, and their fixed values.
const (
	// LabelName and LabelInstance select the helper pod; a Deployment's selector is immutable,
	// so neither ever changes.
	LabelName      = "app.kubernetes.io/name"
	LabelInstance  = "app.kubernetes.io/instance"
	LabelComponent = "app.kubernetes.io/component"
	// LabelManagedBy marks what the operator owns; its caches hold only objects with it.
	LabelManagedBy = "app.kubernetes.io/managed-by"
	LabelPartOf    = "app.kubernetes.io/part-of"
	LabelCoin      = "cryptoassets.io/coin"

	HelperAppName   = "cryptoassets-helper"
	HelperComponent = "helper"
	ManagedBy       = "cryptoassets-operator"
	PartOf          = "cryptoassets"
)

// RenderedHashAnnotation is set on each child the operator applies: the hash of what it rendered,
// so an unchanged child is not written again.
const RenderedHashAnnotation = "cryptoassets.io/rendered-hash"

// Condition types of a CryptoAsset.
const (
	// ConditionReady is true when the helper Deployment is available with the current config.
	ConditionReady = "Ready"
	// ConditionProgressing is true while the helper rolls out a new config.
	ConditionProgressing = "Progressing"
	// ConditionDegraded is true when the operator cannot bring the asset to its declared state.
	ConditionDegraded = "Degraded"
	// ConditionBackendReachable is written by the active helper: whether its last contact with
	// the backend (node or API service) succeeded. A helper keeps accepting and queueing sends
	// while it is False; they go out when the backend is back.
	ConditionBackendReachable = "BackendReachable"
	// ConditionLedgerReachable is written by the active helper: whether it reaches its ledger
	// database.
	ConditionLedgerReachable = "LedgerReachable"
)

// The CryptoAsset's name becomes the helper's Service name, <name>-helper, and a Service name is
// a DNS label of at most 63 characters. hack/crdmeta writes this rule into the CRD at
// metadata.name, where the API server's refusal names the field.
const (
	NameRule    = `self.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$') && size(self) <= 56`
	NameMessage = "must be a DNS label of at most 56 characters starting with a letter, because the helper's Service is called <name>-helper and a Service name is a DNS label of at most 63"
)
