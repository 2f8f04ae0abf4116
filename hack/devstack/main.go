// Command devstack is `make dev`: the local stack (kwok cluster, Helm chart, operator as the
// chart's ServiceAccount, PostgreSQL, btcd + btcwallet, real helper processes) with a sample
// CryptoAsset applied. Development tooling, not product.
//
//	go run ./hack/devstack [-backend bitcoind|null] [-smoke]
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap/zapcore"
	"k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/yaml"

	"github.com/cryptoassets/cryptoassets-operator/api/v1alpha1"
	"github.com/cryptoassets/cryptoassets-operator/internal/btctest"
	"github.com/cryptoassets/cryptoassets-operator/internal/devstack"
)

func main() {
	backend := flag.String("backend", envOr("BACKEND", "bitcoind"), "bitcoind (btcd + btcwallet on simnet) or null (the simulator, no node)")
	smoke := flag.Bool("smoke", os.Getenv("DEV_SMOKE") == "1", "check a deposit end to end, then stop")
	flag.Parse()
	if err := run(*backend, *smoke); err != nil {
		fmt.Fprintln(os.Stderr, "dev:", err)
		os.Exit(1)
	}
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func say(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "\033[1mdev:\033[0m "+format+"\n", args...)
}

func token() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func run(backend string, smoke bool) error {
	if backend != "bitcoind" && backend != "null" {
		return fmt.Errorf("-backend must be bitcoind or null, got %q", backend)
	}
	root, err := os.Getwd()
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := zap.New(zap.Level(zapcore.InfoLevel))
	dir := filepath.Join(root, ".dev")
	_ = os.RemoveAll(filepath.Join(dir, "helpers"))
	say("starting the stack; the first run builds Kubernetes binaries first (make dev did that) — state and logs in %s", dir)
	st, err := devstack.Start(ctx, devstack.Options{Root: root, Bin: filepath.Join(root, "bin"), Dir: dir, Bitcoin: backend == "bitcoind", Log: log})
	if err != nil {
		return err
	}
	defer func() { say("stopping"); st.Stop(); say("stopped; nothing is left running (logs stay in %s)", dir) }()

	dbURL, err := st.DatabaseURL(ctx)
	if err != nil {
		return err
	}
	file := "bitcoind.yaml"
	if backend == "null" {
		file = "null.yaml"
	}
	secret, ca, err := devstack.LoadSample(filepath.Join(root, "config", "samples", file))
	if err != nil {
		return err
	}
	apiToken, hookToken := token(), token()
	secret.Namespace, ca.Namespace = "default", "default"
	secret.StringData["database-url"] = dbURL
	secret.StringData["api-token"] = apiToken
	if backend == "bitcoind" {
		user, pass := st.Node.Credentials()
		secret.StringData["rpc-username"], secret.StringData["rpc-password"] = user, pass
		secret.StringData["wallet-passphrase"] = btctest.WalletPassphrase
		secret.StringData["walletnotify-token"] = hookToken
		ca.Spec.Backend.Bitcoind.URL = st.Node.WalletURL()
	}
	say("applying config/samples/%s (with this stack's database, node and fresh tokens)", file)
	if err := st.Client.Create(ctx, secret); err != nil {
		return err
	}
	if err := st.Client.Create(ctx, ca); err != nil {
		return err
	}
	helper, err := waitReady(ctx, st, ca)
	if err != nil {
		return err
	}
	name := ca.Name
	fmt.Fprintf(os.Stderr, `
  The stack is up: a kwok cluster with the Helm chart, the operator (as the chart's ServiceAccount),
  PostgreSQL%s, and the %s helper running on this machine.

    export KUBECONFIG=%s
    API token: %s
    helper API:    http://%s   (OpenAPI at /openapi.json)
    helper status: http://%s/status   ops: http://%s/readyz /metrics
`, map[bool]string{true: ", btcd + btcwallet (simnet)", false: ""}[backend == "bitcoind"], name, st.Kubeconfig, apiToken, helper.API, helper.API, helper.Ops)
	if helper.Hook != "" {
		fmt.Fprintf(os.Stderr, "    walletnotify:  http://%s/?token=%s\n", helper.Hook, hookToken)
	}
	fmt.Fprintf(os.Stderr, "\n  Try:\n    kubectl get ca %s -o wide\n", name)
	fmt.Fprintf(os.Stderr, "    curl -s -H 'Authorization: Bearer %s' -X POST http://%s/v1/accounts -d '{\"name\":\"alice\"}'\n", apiToken, helper.API)
	fmt.Fprintf(os.Stderr, "    curl -s -H 'Authorization: Bearer %s' -X POST http://%s/v1/accounts/1/addresses -d '{}'\n", apiToken, helper.API)
	if backend == "bitcoind" {
		user, pass := st.Node.Credentials()
		fmt.Fprintf(os.Stderr, "    bin/btcctl --simnet --wallet --notls -s %s -u %s -P %s walletpassphrase password 60 && bin/btcctl --simnet --wallet --notls -s %s -u %s -P %s sendtoaddress ADDRESS 1.5\n",
			strings.TrimPrefix(st.Node.WalletURL(), "http://"), user, pass, strings.TrimPrefix(st.Node.WalletURL(), "http://"), user, pass)
		fmt.Fprintf(os.Stderr, "    bin/btcctl --simnet --notls -s %s -u %s -P %s generate 3\n", st.Node.NodeAddr(), user, pass)
	} else {
		fmt.Fprintf(os.Stderr, "    curl -s -H 'Authorization: Bearer %s' -X POST http://%s/v1/simulator/receive -d '{\"address\":\"ADDRESS\",\"amount\":\"1.5\"}'\n", apiToken, helper.API)
		fmt.Fprintf(os.Stderr, "    curl -s -H 'Authorization: Bearer %s' -X POST http://%s/v1/simulator/mine -d '{\"blocks\":6}'\n", apiToken, helper.API)
	}
	fmt.Fprintf(os.Stderr, "    kubectl annotate ca %s cryptoassets.io/rescan=\"$(date +%%s)\" --overwrite && kubectl get ca %s -o wide -w\n\n  Ctrl-C stops everything.\n", name, name)

	if smoke {
		return smokeTest(ctx, st, backend, helper, apiToken, hookToken)
	}
	<-ctx.Done()
	return nil
}

func waitReady(ctx context.Context, st *devstack.Stack, ca *v1alpha1.CryptoAsset) (*devstack.Helper, error) {
	deadline := time.Now().Add(3 * time.Minute)
	for {
		var cur v1alpha1.CryptoAsset
		err := st.Client.Get(ctx, client.ObjectKeyFromObject(ca), &cur)
		ready := err == nil && meta.IsStatusConditionTrue(cur.Status.Conditions, v1alpha1.ConditionReady)
		if h, ok := st.Launcher.Get(ca.Namespace, ca.Name+"-helper"); ok && ready {
			if resp, err := http.Get("http://" + h.Ops + "/readyz"); err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					return h, nil
				}
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return nil, fmt.Errorf("CryptoAsset %s not Ready with a ready helper (operator log %s): %+v", ca.Name, st.OperatorLog, cur.Status.Conditions)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

func call(method, url, token string, body string) (string, error) {
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	if resp.StatusCode >= 300 {
		return "", fmt.Errorf("%s %s: %d %s", method, url, resp.StatusCode, b.String())
	}
	return b.String(), nil
}

// smokeTest takes one deposit from payment to credit through the whole stack.
func smokeTest(ctx context.Context, st *devstack.Stack, backend string, h *devstack.Helper, apiToken, hookToken string) error {
	api := "http://" + h.API
	if _, err := call("POST", api+"/v1/accounts", apiToken, `{"name":"smoke"}`); err != nil {
		return err
	}
	out, err := call("POST", api+"/v1/accounts/1/addresses", apiToken, `{}`)
	if err != nil {
		return err
	}
	var addr struct{ Address string }
	if err := yaml.Unmarshal([]byte(out), &addr); err != nil || addr.Address == "" {
		return fmt.Errorf("address reply %q", out)
	}
	if backend == "bitcoind" {
		txid, err := st.Node.Pay(addr.Address, 150_000_000)
		if err != nil {
			return err
		}
		if _, err := http.Post("http://"+h.Hook+"/?token="+hookToken, "application/x-www-form-urlencoded", strings.NewReader("txid="+txid)); err != nil {
			return err
		}
		if _, err := st.Node.Mine(3); err != nil {
			return err
		}
	} else {
		if _, err := call("POST", api+"/v1/simulator/receive", apiToken, `{"address":"`+addr.Address+`","amount":"1.5"}`); err != nil {
			return err
		}
		if _, err := call("POST", api+"/v1/simulator/mine", apiToken, `{"blocks":6}`); err != nil {
			return err
		}
	}
	deadline := time.Now().Add(90 * time.Second)
	for {
		out, err := call("GET", api+"/v1/accounts/1", apiToken, "")
		if err == nil && strings.Contains(out, `"balance":"1.50000000"`) {
			say("smoke: passed (deposit of 1.5 credited through the operator-rendered helper)")
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("smoke: deposit not credited: %s %v\nhelper log:\n%s", out, err, h.Log)
		}
		time.Sleep(500 * time.Millisecond)
	}
}
