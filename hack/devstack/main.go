// Command devstack is `make dev`: the local stack with a sample CryptoAsset applied.
// Development tooling, not product.
//
// On a machine that can run a real node (root, containerd, runc; `make dev` installs them) it
// runs the product as a user would: the image built here, a real one-node cluster, `helm
// install` with the operator as a pod, the helper as a real pod reached through its Service.
// Elsewhere (-runtime kwok) it falls back to a kwok cluster, the operator as a process with the
// chart's ServiceAccount and the helper as a process started from the rendered Deployment.
//
//	go run ./hack/devstack [-backend bitcoind|null] [-runtime pods|kwok] [-smoke]
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
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
	"github.com/cryptoassets/cryptoassets-operator/internal/testing/btctest"
	"github.com/cryptoassets/cryptoassets-operator/internal/testing/devstack"
	"github.com/cryptoassets/cryptoassets-operator/internal/testing/devstack/node"
)

func main() {
	backend := flag.String("backend", envOr("BACKEND", "bitcoind"), "bitcoind (btcd + btcwallet on simnet) or null (the simulator, no node)")
	smoke := flag.Bool("smoke", os.Getenv("DEV_SMOKE") == "1", "check a deposit end to end, then stop")
	runtime := flag.String("runtime", os.Getenv("RUNTIME"), "pods (a real node) or kwok (simulated pods, helpers as processes); default: pods where this machine can run them")
	flag.Parse()
	if err := run(*backend, *runtime, *smoke); err != nil {
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

// stack is what the two runtimes have in common for make dev.
type stack struct {
	runtime    string
	kubeconfig string
	client     client.Client
	btc        *btctest.Node
	// walletURL is the wallet's RPC URL as the helper reaches it.
	walletURL string
	// dbURL makes a database and returns its URL as the helper reaches it.
	dbURL func(context.Context) (string, error)
	// helper waits for the asset's helper and says where to reach it.
	helper func(context.Context, *v1alpha1.CryptoAsset) (*endpoints, error)
	stop   func()
}

// endpoints are where the helper answers, from this machine.
type endpoints struct {
	API, Hook, Ops string
	// Logs returns the helper's log, for a failed smoke test.
	Logs func() string
}

func startStack(ctx context.Context, root, dir, runtime string, bitcoin bool) (*stack, error) {
	bin := filepath.Join(root, "bin")
	if runtime == "" {
		runtime = "pods"
		if err := node.Preflight(bin); err != nil {
			say("no real node here (%v): using the kwok runtime", err)
			runtime = "kwok"
		}
	}
	log := zap.New(zap.Level(zapcore.InfoLevel))
	switch runtime {
	case "pods":
		// Short: containerd's sockets live under it.
		st, err := devstack.StartPods(ctx, devstack.PodOptions{Root: root, Bin: bin, Dir: filepath.Join(dir, "pods"), Version: "dev", Bitcoin: bitcoin, Log: log})
		if err != nil {
			return nil, err
		}
		say("node Ready %s after start; operator pod Ready %s after helm install", st.Node.NodeReady.Round(time.Millisecond), st.HelmInstall.Round(time.Millisecond))
		s := &stack{runtime: runtime, kubeconfig: st.Kubeconfig, client: st.Client, btc: st.BTC, stop: st.Stop,
			dbURL: func(ctx context.Context) (string, error) { pod, _, err := st.DatabaseURL(ctx); return pod, err }}
		if st.BTC != nil {
			s.walletURL = st.BTC.WalletURLOn()
		}
		s.helper = func(ctx context.Context, ca *v1alpha1.CryptoAsset) (*endpoints, error) {
			if err := waitReady(ctx, st.Client, ca, "kubectl describe ca "+ca.Name); err != nil {
				return nil, err
			}
			name := ca.Name + "-helper"
			e := &endpoints{}
			var err error
			if e.API, err = st.ServiceAddr(ctx, ca.Namespace, name, "api"); err != nil {
				return nil, err
			}
			e.Hook, _ = st.ServiceAddr(ctx, ca.Namespace, name, "walletnotify")
			e.Logs = func() string {
				out, _ := exec.Command("kubectl", "--kubeconfig", st.Kubeconfig, "-n", ca.Namespace, "logs", "deploy/"+name).CombinedOutput()
				return string(out)
			}
			return e, nil
		}
		return s, nil
	case "kwok":
		_ = os.RemoveAll(filepath.Join(dir, "helpers"))
		st, err := devstack.Start(ctx, devstack.Options{Root: root, Bin: bin, Dir: dir, Bitcoin: bitcoin, Log: log})
		if err != nil {
			return nil, err
		}
		s := &stack{runtime: runtime, kubeconfig: st.Kubeconfig, client: st.Client, btc: st.Node, stop: st.Stop, dbURL: st.DatabaseURL}
		if st.Node != nil {
			s.walletURL = st.Node.WalletURL()
		}
		s.helper = func(ctx context.Context, ca *v1alpha1.CryptoAsset) (*endpoints, error) {
			if err := waitReady(ctx, st.Client, ca, "operator log "+st.OperatorLog); err != nil {
				return nil, err
			}
			var h *devstack.Helper
			if err := until(ctx, time.Minute, func() error {
				var ok bool
				if h, ok = st.Launcher.Get(ca.Namespace, ca.Name+"-helper"); !ok {
					return errors.New("no helper process yet")
				}
				return h.Ready()
			}); err != nil {
				return nil, err
			}
			return &endpoints{API: h.API, Hook: h.Hook, Ops: h.Ops, Logs: h.Log.String}, nil
		}
		return s, nil
	}
	return nil, fmt.Errorf("-runtime must be pods or kwok, got %q", runtime)
}

func run(backend, runtime string, smoke bool) error {
	if backend != "bitcoind" && backend != "null" {
		return fmt.Errorf("-backend must be bitcoind or null, got %q", backend)
	}
	root, err := os.Getwd()
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	dir := filepath.Join(root, ".dev")
	say("starting the stack — state and logs in %s", dir)
	st, err := startStack(ctx, root, dir, runtime, backend == "bitcoind")
	if err != nil {
		return err
	}
	defer func() { say("stopping"); st.stop(); say("stopped; nothing is left running (logs stay in %s)", dir) }()

	dbURL, err := st.dbURL(ctx)
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
		user, pass := st.btc.Credentials()
		secret.StringData["rpc-username"], secret.StringData["rpc-password"] = user, pass
		secret.StringData["wallet-passphrase"] = btctest.WalletPassphrase
		secret.StringData["walletnotify-token"] = hookToken
		ca.Spec.Backend.Bitcoind.URL = st.walletURL
	}
	say("applying config/samples/%s (with this stack's database, node and fresh tokens)", file)
	if err := st.client.Create(ctx, secret); err != nil {
		return err
	}
	applied := time.Now()
	if err := st.client.Create(ctx, ca); err != nil {
		return err
	}
	helper, err := st.helper(ctx, ca)
	if err != nil {
		return err
	}
	say("%s Ready %s after it was applied", ca.Name, time.Since(applied).Round(time.Millisecond))
	name := ca.Name
	where := "a real one-node cluster (kubelet, containerd) with the Helm chart, the operator as a pod, PostgreSQL"
	reach := "through its Service's ClusterIP, as from any pod"
	if st.runtime == "kwok" {
		where = "a kwok cluster with the Helm chart, the operator (as the chart's ServiceAccount), PostgreSQL"
		reach = "as a process on this machine"
	}
	fmt.Fprintf(os.Stderr, `
  The stack is up: %s%s, and the %s helper, reached %s.

    export KUBECONFIG=%s
    API token: %s
    helper API:    http://%s   (OpenAPI at /openapi.json, status page at /status)
`, where, map[bool]string{true: ", btcd + btcwallet (simnet)", false: ""}[backend == "bitcoind"], name, reach, st.kubeconfig, apiToken, helper.API)
	if helper.Ops != "" {
		fmt.Fprintf(os.Stderr, "    helper ops:    http://%s/readyz /metrics\n", helper.Ops)
	}
	if helper.Hook != "" {
		fmt.Fprintf(os.Stderr, "    walletnotify:  http://%s/?token=%s\n", helper.Hook, hookToken)
	}
	fmt.Fprintf(os.Stderr, "\n  Try:\n    kubectl get ca %s -o wide\n", name)
	if st.runtime == "pods" {
		fmt.Fprintf(os.Stderr, "    kubectl get pods -o wide; kubectl logs deploy/%s-helper\n", name)
	}
	// The steps keep the ids and the address the API returns in shell variables: a reader who
	// typed "account 1" by hand once credited a deposit to the network-fees account.
	fmt.Fprintf(os.Stderr, "    ID=$(curl -s -H 'Authorization: Bearer %s' -X POST http://%s/v1/accounts -d '{\"name\":\"alice\"}' | sed -E 's/.*\"id\":([0-9]+).*/\\1/'); echo \"alice is account $ID\"\n", apiToken, helper.API)
	fmt.Fprintf(os.Stderr, "    ADDRESS=$(curl -s -H 'Authorization: Bearer %s' -X POST http://%s/v1/accounts/$ID/addresses -d '{}' | sed -E 's/.*\"address\":\"([^\"]+)\".*/\\1/'); echo \"pay to $ADDRESS\"\n", apiToken, helper.API)
	if backend == "bitcoind" {
		user, pass := st.btc.Credentials()
		// -C /dev/null: without a config file of its own, btcctl tries to write one from
		// ~/.btcd or ~/.btcwallet, which this stack does not use, and prints an error on every
		// call; everything it needs is on the command line.
		btcctl := func(flags, server string) string {
			return fmt.Sprintf("bin/btcctl -C /dev/null %s --notls -s %s -u %s -P %s", flags, server, user, pass)
		}
		wallet := btcctl("--simnet --wallet", strings.TrimPrefix(st.btc.WalletURL(), "http://"))
		fmt.Fprintf(os.Stderr, "    %s walletpassphrase password 60 && %s sendtoaddress $ADDRESS 1.5\n", wallet, wallet)
		fmt.Fprintf(os.Stderr, "    %s generate 3\n", btcctl("--simnet", st.btc.NodeAddr()))
	} else {
		fmt.Fprintf(os.Stderr, "    curl -s -H 'Authorization: Bearer %s' -X POST http://%s/v1/simulator/receive -d \"{\\\"address\\\":\\\"$ADDRESS\\\",\\\"amount\\\":\\\"1.5\\\"}\"\n", apiToken, helper.API)
		fmt.Fprintf(os.Stderr, "    curl -s -H 'Authorization: Bearer %s' -X POST http://%s/v1/simulator/mine -d '{\"blocks\":6}'\n", apiToken, helper.API)
	}
	fmt.Fprintf(os.Stderr, "    curl -s -H 'Authorization: Bearer %s' http://%s/v1/accounts/$ID   # the balance, once credited\n", apiToken, helper.API)
	fmt.Fprintf(os.Stderr, "    kubectl annotate ca %s cryptoassets.io/rescan=\"$(date +%%s)\" --overwrite && kubectl get ca %s -o wide -w\n\n  Ctrl-C stops everything.\n", name, name)

	if smoke {
		return smokeTest(ctx, st, backend, helper, apiToken, hookToken, applied)
	}
	<-ctx.Done()
	return nil
}

// until polls f until it succeeds, ctx ends or timeout passes.
func until(ctx context.Context, timeout time.Duration, f func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return err
		}
		select {
		case <-ctx.Done():
		case <-time.After(300 * time.Millisecond):
		}
	}
}

func waitReady(ctx context.Context, c client.Client, ca *v1alpha1.CryptoAsset, hint string) error {
	var cur v1alpha1.CryptoAsset
	err := until(ctx, 3*time.Minute, func() error {
		if err := c.Get(ctx, client.ObjectKeyFromObject(ca), &cur); err != nil {
			return err
		}
		if !meta.IsStatusConditionTrue(cur.Status.Conditions, v1alpha1.ConditionReady) {
			return errors.New("not Ready")
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("CryptoAsset %s not Ready (%s): %+v", ca.Name, hint, cur.Status.Conditions)
	}
	return nil
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

// smokeTest takes one deposit from payment to credit through the whole stack, into a new
// account (account 1 is the network-fees account).
func smokeTest(ctx context.Context, st *stack, backend string, h *endpoints, apiToken, hookToken string, applied time.Time) error {
	api := "http://" + h.API
	out, err := call("POST", api+"/v1/accounts", apiToken, `{"name":"smoke"}`)
	if err != nil {
		return err
	}
	var acct struct{ ID int64 }
	if err := yaml.Unmarshal([]byte(out), &acct); err != nil || acct.ID == 0 {
		return fmt.Errorf("account reply %q", out)
	}
	out, err = call("POST", fmt.Sprintf("%s/v1/accounts/%d/addresses", api, acct.ID), apiToken, `{}`)
	if err != nil {
		return err
	}
	var addr struct{ Address string }
	if err := yaml.Unmarshal([]byte(out), &addr); err != nil || addr.Address == "" {
		return fmt.Errorf("address reply %q", out)
	}
	if backend == "bitcoind" {
		txid, err := st.btc.Pay(addr.Address, 150_000_000)
		if err != nil {
			return err
		}
		if _, err := http.Post("http://"+h.Hook+"/?token="+hookToken, "application/x-www-form-urlencoded", strings.NewReader("txid="+txid)); err != nil {
			return err
		}
		if _, err := st.btc.Mine(3); err != nil {
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
	err = until(ctx, 90*time.Second, func() error {
		out, err := call("GET", fmt.Sprintf("%s/v1/accounts/%d", api, acct.ID), apiToken, "")
		if err == nil && !strings.Contains(out, `"balance":"1.50000000"`) {
			err = fmt.Errorf("account %s", out)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("smoke: deposit not credited: %v\nhelper log:\n%s", err, h.Logs())
	}
	say("smoke: passed (deposit of 1.5 credited through the %s helper; %s from applying the asset)", st.runtime, time.Since(applied).Round(time.Millisecond))
	return nil
}
