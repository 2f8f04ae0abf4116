package devstack

import (
	"fmt"
	"os"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/cryptoassets/cryptoassets-operator/api/v1alpha1"
)

// LoadSample reads a sample manifest's Secret and CryptoAsset (config/samples/*.yaml), for the
// stack to fill in with its own database, node and tokens before applying.
func LoadSample(path string) (*corev1.Secret, *v1alpha1.CryptoAsset, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	var secret corev1.Secret
	var ca v1alpha1.CryptoAsset
	for _, doc := range strings.Split(string(raw), "\n---\n") {
		var head struct{ Kind string }
		if err := yaml.Unmarshal([]byte(doc), &head); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", path, err)
		}
		switch head.Kind {
		case "Secret":
			err = yaml.UnmarshalStrict([]byte(doc), &secret)
		case "CryptoAsset":
			err = yaml.UnmarshalStrict([]byte(doc), &ca)
		}
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", path, err)
		}
	}
	if secret.Name == "" || ca.Name == "" {
		return nil, nil, fmt.Errorf("%s: needs a Secret and a CryptoAsset", path)
	}
	return &secret, &ca, nil
}
