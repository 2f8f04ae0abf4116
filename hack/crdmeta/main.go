// Command crdmeta finishes the generated CRD in two ways controller-gen cannot:
//
//   - It adds the CryptoAsset's metadata.name rule. controller-gen has no marker for metadata,
//     and a rule on the root object can only report its error against the root ("<nil>: Invalid
//     value"), so the rule goes where the API server names the field:
//     openAPIV3Schema.properties.metadata.properties.name, the one place a CRD may constrain
//     metadata.
//   - It unwraps descriptions. controller-gen keeps the line breaks of the Go comments, and
//     `kubectl explain` prints them as hard breaks in the middle of sentences; a paragraph
//     becomes one line, while list items and indented lines keep theirs.
package main

import (
	"fmt"
	"os"
	"regexp"
	"strings"

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
	unwrapDescriptions(crd)
	out, err := yaml.Marshal(crd)
	if err != nil {
		return err
	}
	return os.WriteFile(path, append([]byte("---\n"), out...), 0o644)
}

// unwrapDescriptions rewrites every "description" below v as prose.
func unwrapDescriptions(v any) {
	switch x := v.(type) {
	case map[string]any:
		for k, val := range x {
			if s, ok := val.(string); ok && k == "description" {
				x[k] = prose(s)
				continue
			}
			unwrapDescriptions(val)
		}
	case []any:
		for _, val := range x {
			unwrapDescriptions(val)
		}
	}
}

// listItem matches the lines that start a line of their own: list items and indented text.
var listItem = regexp.MustCompile(`^(\s+|[-*] |\d+[.)] )`)

// prose joins the lines of each paragraph of a Go comment, keeping paragraphs, list items and
// indented lines apart.
func prose(s string) string {
	paragraphs := strings.Split(s, "\n\n")
	for i, p := range paragraphs {
		lines := strings.Split(p, "\n")
		var b strings.Builder
		for j, line := range lines {
			switch {
			case j == 0:
			case listItem.MatchString(line):
				b.WriteString("\n")
			default:
				b.WriteString(" ")
			}
			b.WriteString(line)
		}
		paragraphs[i] = b.String()
	}
	return strings.Join(paragraphs, "\n\n")
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
