package controllers_test

import (
	"context"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"

	"github.com/cryptoassets/cryptoassets-operator/api/v1alpha1"
)

// TestInvalidManifestsAreRejected sends manifests with one mistake each to the API server and checks
// that the rejection names the mistake in words a user understands.
func TestInvalidManifestsAreRejected(t *testing.T) {
	ns := newNamespace(t)
	cases := []struct {
		name   string
		mutate func(*v1alpha1.CryptoAsset)
		want   string
	}{
		{"bitcoind type without block", func(ca *v1alpha1.CryptoAsset) { ca.Spec.Backend.Bitcoind = nil },
			"backend type bitcoind needs the bitcoind block"},
		{"bitcoind block with null type", func(ca *v1alpha1.CryptoAsset) { ca.Spec.Backend.Type = v1alpha1.BackendNull },
			"the bitcoind block is only allowed with backend type bitcoind"},
		{"blockio type without block", func(ca *v1alpha1.CryptoAsset) {
			ca.Spec.Backend = v1alpha1.BackendSpec{Type: v1alpha1.BackendBlockIO}
			ca.Spec.Network = "testnet"
			ca.Spec.Notify = v1alpha1.NotifySpec{Method: v1alpha1.NotifyPoll}
		}, "backend type blockio needs the blockio block"},
		{"null backend on mainnet", func(ca *v1alpha1.CryptoAsset) {
			ca.Spec.Backend = v1alpha1.BackendSpec{Type: v1alpha1.BackendNull}
			ca.Spec.Network = "mainnet"
		}, "the null backend is a simulator and cannot run on mainnet"},
		{"block.io notifications on bitcoind", func(ca *v1alpha1.CryptoAsset) {
			ca.Spec.Notify = v1alpha1.NotifySpec{Method: v1alpha1.NotifyBlockIOWebsocket}
		}, "block.io notifications (blockio-websocket, blockio-webhook) need backend type blockio"},
		{"redis method without redis block", func(ca *v1alpha1.CryptoAsset) {
			ca.Spec.Notify = v1alpha1.NotifySpec{Method: v1alpha1.NotifyRedis}
		}, "notify method redis needs the redis block"},
		{"http block with poll method", func(ca *v1alpha1.CryptoAsset) { ca.Spec.Notify.Method = v1alpha1.NotifyPoll },
			"the http block is only allowed with notify method http"},
		{"tracking fewer confirmations than credited", func(ca *v1alpha1.CryptoAsset) {
			ca.Spec.Confirmations = ptr.To(int32(20))
			ca.Spec.MaxTrackedConfirmations = 10
		}, "maxTrackedConfirmations must be at least confirmations"},
		{"credentials in the RPC URL", func(ca *v1alpha1.CryptoAsset) { ca.Spec.Backend.Bitcoind.URL = "http://user:pw@node:8332" },
			"url must not carry credentials"},
		{"RPC URL with another scheme", func(ca *v1alpha1.CryptoAsset) { ca.Spec.Backend.Bitcoind.URL = "ftp://node:8332" },
			"url must be an http or https URL with a host"},
		{"btcwallet without passphrase", func(ca *v1alpha1.CryptoAsset) { ca.Spec.Backend.Bitcoind.WalletPassphraseSecretRef = nil },
			"btcwallet wallets are always encrypted"},
		{"no requests at the node", func(ca *v1alpha1.CryptoAsset) { ca.Spec.Backend.Bitcoind.MaxRequests = ptr.To(int32(0)) },
			"spec.backend.bitcoind.maxRequests: Invalid value: 0: spec.backend.bitcoind.maxRequests in body should be greater than or equal to 1"},
		{"named wallet on btcwallet", func(ca *v1alpha1.CryptoAsset) { ca.Spec.Backend.Bitcoind.Wallet = "payments" },
			"named wallets are a Bitcoin Core feature"},
		{"broadcast period too short", func(ca *v1alpha1.CryptoAsset) {
			ca.Spec.Broadcast.Period = &metav1.Duration{Duration: 500 * time.Millisecond}
		},
			"broadcast period must be between 1s and 24h"},
		{"poll interval too short", func(ca *v1alpha1.CryptoAsset) { ca.Spec.Notify.PollInterval = &metav1.Duration{Duration: time.Second} },
			"pollInterval must be between 5s and 24h"},
		{"http event target without http block", func(ca *v1alpha1.CryptoAsset) { ca.Spec.Events[0].HTTP = nil },
			"the http block is required with type http and only allowed there"},
		{"webhook over plain http", func(ca *v1alpha1.CryptoAsset) {
			ca.Spec.Backend = v1alpha1.BackendSpec{Type: v1alpha1.BackendBlockIO, BlockIO: &v1alpha1.BlockIOBackend{
				APIKeySecretRef: ref("k"), PINSecretRef: ref("p")}}
			ca.Spec.Network = "testnet"
			ca.Spec.Notify = v1alpha1.NotifySpec{Method: v1alpha1.NotifyBlockIOWebhook,
				BlockIOWebhook: &v1alpha1.BlockIOWebhookNotify{PublicURL: "http://pay.example/blockio"}}
		}, "publicURL must be an https URL with a host"},
		{"blockchain.info on testnet", func(ca *v1alpha1.CryptoAsset) {
			ca.Spec.Backend = v1alpha1.BackendSpec{Type: v1alpha1.BackendBlockchain, Blockchain: &v1alpha1.BlockchainBackend{
				URL: "http://wallet:3000", GUIDSecretRef: ref("g"), PasswordSecretRef: ref("p")}}
			ca.Spec.Network = "testnet"
			ca.Spec.Notify = v1alpha1.NotifySpec{Method: v1alpha1.NotifyPoll}
		}, "the blockchain.info wallet API serves only bitcoin mainnet"},
		{"relative FIFO path", func(ca *v1alpha1.CryptoAsset) {
			ca.Spec.Notify = v1alpha1.NotifySpec{Method: v1alpha1.NotifyPipe, Pipe: &v1alpha1.PipeNotify{Path: "walletnotify"}}
		}, "path must be an absolute file path below a directory"},
		{"pod annotation the operator owns", func(ca *v1alpha1.CryptoAsset) {
			ca.Spec.Helper.PodAnnotations = map[string]string{v1alpha1.ConfigHashAnnotation: "x"}
		}, "podAnnotations must not set cryptoassets.io/config-hash"},
		{"name too long for the helper Service", func(ca *v1alpha1.CryptoAsset) { ca.Name = strings.Repeat("a", 57) },
			"metadata.name: Invalid value: \"" + strings.Repeat("a", 57) + "\": must be a DNS label of at most 56 characters starting with a letter, because the helper's Service is called <name>-helper"},
		{"name with a capital", func(ca *v1alpha1.CryptoAsset) { ca.Name = "Btc" },
			"metadata.name: Invalid value: \"Btc\": must be a DNS label"},
		{"event retention shorter than push retries", func(ca *v1alpha1.CryptoAsset) { ca.Spec.EventRetention = &metav1.Duration{Duration: 72 * time.Hour} },
			"eventRetention must be between 192h (8 days, longer than push delivery's 7 days of retries)"},
		{"zero confirmations", func(ca *v1alpha1.CryptoAsset) { ca.Spec.Confirmations = ptr.To(int32(0)) },
			"spec.confirmations: Invalid value: 0: confirmations must be between 1 and 1000: a deposit is credited once its block is this deep"},
		{"unknown coin", func(ca *v1alpha1.CryptoAsset) { ca.Spec.Coin = "monero" },
			`spec.coin: Unsupported value: "monero"`},
		{"secret ref without key", func(ca *v1alpha1.CryptoAsset) { ca.Spec.Database.URLSecretRef.Key = "" },
			"spec.database.urlSecretRef.key"},
		{"duplicate event target names", func(ca *v1alpha1.CryptoAsset) { ca.Spec.Events = append(ca.Spec.Events, ca.Spec.Events[0]) },
			`spec.events[1]: Duplicate value`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ca := sampleAsset(ns, "bad")
			tc.mutate(ca)
			err := env.k8s.Create(context.Background(), ca)
			if err == nil {
				_ = env.k8s.Delete(context.Background(), ca)
				t.Fatalf("the API server accepted the manifest; want an error containing %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not contain %q", err, tc.want)
			}
		})
	}

	// The valid base manifest itself is accepted, so each case above failed for its own mistake.
	valid := sampleAsset(ns, "good")
	if err := env.k8s.Create(context.Background(), valid); err != nil {
		t.Fatalf("the valid base manifest was rejected: %v", err)
	}
}

func TestImmutableFields(t *testing.T) {
	ns := newNamespace(t)
	create(t, sampleSecret(ns), sampleAsset(ns, "btc"))
	for _, tc := range []struct {
		name   string
		mutate func(*v1alpha1.CryptoAsset)
		want   string
	}{
		{"coin", func(ca *v1alpha1.CryptoAsset) { ca.Spec.Coin = "litecoin" }, "coin is immutable"},
		{"network", func(ca *v1alpha1.CryptoAsset) { ca.Spec.Network = "testnet" }, "network is immutable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := update(assetRef(ns, "btc"), tc.mutate)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("update error %v, want %q", err, tc.want)
			}
		})
	}
	// Mutable fields still change.
	if err := update(assetRef(ns, "btc"), func(ca *v1alpha1.CryptoAsset) {
		ca.Spec.Confirmations = ptr.To(int32(4))
	}); err != nil {
		t.Fatalf("changing confirmations: %v", err)
	}
}

// TestEmptyHelperImageIsRefused: `image: ""` in a manifest is refused rather than replaced by the
// default image. A typed client cannot send it (omitempty), so the manifest goes as unstructured,
// as kubectl sends it.
func TestEmptyHelperImageIsRefused(t *testing.T) {
	ns := newNamespace(t)
	ca := sampleAsset(ns, "noimage")
	raw, err := runtime.DefaultUnstructuredConverter.ToUnstructured(ca)
	if err != nil {
		t.Fatal(err)
	}
	u := &unstructured.Unstructured{Object: raw}
	u.SetGroupVersionKind(v1alpha1.GroupVersion.WithKind("CryptoAsset"))
	if err := unstructured.SetNestedField(u.Object, "", "spec", "helper", "image"); err != nil {
		t.Fatal(err)
	}
	err = env.k8s.Create(context.Background(), u)
	want := `spec.helper.image: Invalid value: "": image must name an image; leave the field out to run the operator's own image`
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("creating with image \"\": %v; want %q", err, want)
	}
}
