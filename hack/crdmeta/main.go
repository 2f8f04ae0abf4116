// Command crdmeta adds the CryptoAsset's metadata.name rule to the generated CRD. controller-gen
// has no marker for metadata, and a rule on the root object can only report its error against
// the root ("<nil>: Invalid value"), so the rule goes where the API server names the field:
// openAPIV3Schema.properties.metadata.properties.name, the one place a CRD may constrain
// metadata.
package main

import (
	"fmt"
	"os"

	"sigs.k8s.io/yaml"

	"github.com/cryptoassets/cryptoassets-operator/api/v1alpha1"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: crdmeta <crd.yaml>")
		os.Exit(2)
	}
	if err := run(os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, "crdmeta:", err)
		os.Exit(1)
	}
}

func run(path string) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var crd map[string]any
	if err := yaml.Unmarshal(raw, &crd); err != nil {
		return fmt.Errorf("reading %s: %w", path, err)
	}
	spec, _ := crd["spec"].(map[string]any)
	versions, _ := spec["versions"].([]any)
	if len(versions) == 0 {
		return fmt.Errorf("%s has no spec.versions", path)
	}
	for _, v := range versions {
		schema, ok := dig(v, "schema", "openAPIV3Schema", "properties", "metadata")
		if !ok {
			return fmt.Errorf("%s: a version without openAPIV3Schema.properties.metadata", path)
		}
		schema["properties"] = map[string]any{"name": map[string]any{
			"type": "string",
			"x-kubernetes-validations": []any{map[string]any{
				"rule":    v1alpha1.NameRule,
				"message": v1alpha1.NameMessage,
			}},
		}}
	}
	out, err := yaml.Marshal(crd)
	if err != nil {
		return err
	}
	return os.WriteFile(path, append([]byte("---\n"), out...), 0o644)
}

// dig walks nested maps by key.
func dig(v any, keys ...string) (map[string]any, bool) {
	m, ok := v.(map[string]any)
	for _, k := range keys {
		if !ok {
			return nil, false
		}
		m, ok = m[k].(map[string]any)
	}
	return m, ok
}
