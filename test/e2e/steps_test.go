package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/cryptoassets/cryptoassets-operator/api/v1alpha1"
	"github.com/cryptoassets/cryptoassets-operator/internal/events/eventstest"
	"github.com/cryptoassets/cryptoassets-operator/internal/testing/btctest"
	"github.com/cryptoassets/cryptoassets-operator/internal/testing/devstack"
	"github.com/cryptoassets/cryptoassets-operator/internal/testing/testassets"
)

// The steps both end-to-end tests take, whatever runs the pods.

// bitcoindSample loads config/samples/bitcoind.yaml for namespace ns, filled in with the stack's
// database, wallet (as the helper reaches it) and event receiver.
func bitcoindSample(t *testing.T, root, dbURL, walletURL, eventsURL string, node *btctest.Node) (*corev1.Secret, *v1alpha1.CryptoAsset) {
	t.Helper()
	secret, ca, err := devstack.LoadSample(filepath.Join(root, "config", "samples", "bitcoind.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	user, pass := node.Credentials()
	secret.Namespace, ca.Namespace = ns, ns
	secret.StringData["database-url"] = dbURL
	secret.StringData["rpc-username"], secret.StringData["rpc-password"] = user, pass
	secret.StringData["wallet-passphrase"] = btctest.WalletPassphrase
	ca.Spec.Backend.Bitcoind.URL = walletURL
	ca.Spec.Events[0].HTTP.URL = eventsURL
	return secret, ca
}

// requestRescan sets the rescan annotation to token and waits until the helper reports it
// Succeeded with at least minFound payments found.
func requestRescan(t *testing.T, ctx context.Context, k client.Client, key client.ObjectKey, token string, minFound int64) {
	t.Helper()
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{v1alpha1.RescanAnnotation: token}}})
	if err := k.Patch(ctx, &v1alpha1.CryptoAsset{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}}, client.RawPatch(types.MergePatchType, patch)); err != nil {
		t.Fatal(err)
	}
	testassets.Eventually(t, 2*time.Minute, "rescan Succeeded", func() error {
		var cur v1alpha1.CryptoAsset
		if err := k.Get(ctx, key, &cur); err != nil {
			return err
		}
		if r := cur.Status.Rescan; r == nil || r.HandledToken != token || r.Phase != v1alpha1.RescanSucceeded || r.TransactionsFound < minFound {
			return fmt.Errorf("status.rescan %+v", cur.Status.Rescan)
		}
		return nil
	})
}

// rotateRPCPassword changes the wallet's RPC password in the Secret and in btcwallet, as an
// operator rotating credentials would.
func rotateRPCPassword(t *testing.T, ctx context.Context, k client.Client, node *btctest.Node, secretName, password string) {
	t.Helper()
	var s corev1.Secret
	if err := k.Get(ctx, client.ObjectKey{Namespace: ns, Name: secretName}, &s); err != nil {
		t.Fatal(err)
	}
	s.Data["rpc-password"] = []byte(password)
	if err := k.Update(ctx, &s); err != nil {
		t.Fatal(err)
	}
	if err := node.SetWalletPassword(password); err != nil {
		t.Fatal(err)
	}
}

// apiFunc calls the helper's API with the asset's token and decodes the answer into out.
type apiFunc func(method, path string, body, out any) int

// balanceIs checks an account's balance, for Eventually.
func balanceIs(api apiFunc, account int64, want string) func() error {
	return func() error {
		var a struct{ Balance string }
		api("GET", fmt.Sprintf("/v1/accounts/%d", account), nil, &a)
		if a.Balance != want {
			return fmt.Errorf("balance %s, want %s", a.Balance, want)
		}
		return nil
	}
}

// depositCredited pays address from the wallet, lets notify announce the txid as walletnotify
// would, and waits until the deposit is booked as incoming, credited after three blocks (the
// account then holds want) and announced to app by a signed event. It returns the txid.
func depositCredited(t *testing.T, api apiFunc, node *btctest.Node, app *eventstest.EventReceiver, account int64, address string, sat int64, want string, notify func(txid string)) string {
	t.Helper()
	txid := node.MustPay(t, address, sat)
	notify(txid)
	testassets.Eventually(t, 30*time.Second, "booked, not yet credited", func() error {
		var txs []struct {
			TxID  string `json:"txid"`
			State string `json:"state"`
		}
		api("GET", fmt.Sprintf("/v1/transactions?account=%d", account), nil, &txs)
		if len(txs) != 1 || txs[0].TxID != txid || txs[0].State != "incoming" {
			return fmt.Errorf("transactions %+v", txs)
		}
		return nil
	})
	node.MustMine(t, 3)
	testassets.Eventually(t, 90*time.Second, "credited", balanceIs(api, account, want))
	testassets.Eventually(t, 90*time.Second, "signed credited event received", func() error {
		if !app.Credited(txid) {
			_, bad := app.Counts()
			return fmt.Errorf("no credited event yet (%d badly signed)", bad)
		}
		return nil
	})
	return txid
}
