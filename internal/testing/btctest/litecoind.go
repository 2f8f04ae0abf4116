package btctest

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/btcsuite/btcd/rpcclient"
	"github.com/cryptoassets/cryptoassets-operator/internal/testing/loopback"
)

// Core is a Litecoin Core node on regtest (Debian's litecoind): a real Bitcoin Core-family wallet
// with labels, named wallets and Core's RPC dialect, for testing the bitcoin-core flavor. It has
// two funded wallets: Payments (the helper's) and Customer (which pays it).
type Core struct {
	dir, bin   string
	port       int
	user, pass string
	proc       *process
	// Node talks to the node; Customer to the customer's wallet.
	Node, Customer *rpcclient.Client
}

// Wallet names on the Core node.
const (
	CorePayments = "payments"
	CoreCustomer = "customer"
)

// StartLitecoinCore starts litecoind on regtest and funds both wallets.
func StartLitecoinCore() (*Core, error) {
	bin := os.Getenv("LITECOIND")
	if bin == "" {
		p, err := exec.LookPath("litecoind")
		if err != nil {
			return nil, errors.New("litecoind not found: hack/setup-tools.sh installs Debian's litecoind (or set LITECOIND)")
		}
		bin = p
	}
	dir, err := os.MkdirTemp("", "litecoind-")
	if err != nil {
		return nil, err
	}
	c := &Core{dir: dir, bin: bin, user: "test", pass: "test-core-password"}
	if err := c.setUp(); err != nil {
		c.Stop()
		return nil, fmt.Errorf("litecoind: %w", err)
	}
	return c, nil
}

func (c *Core) client(path string) (*rpcclient.Client, error) {
	return rpcclient.New(&rpcclient.ConnConfig{Host: "127.0.0.1:" + strconv.Itoa(c.port) + path, User: c.user, Pass: c.pass,
		HTTPPostMode: true, DisableTLS: true}, nil)
}

// call makes a JSON-RPC call and decodes the result into out (if not nil).
func call(cl *rpcclient.Client, out any, method string, params ...any) error {
	raw := make([]json.RawMessage, 0, len(params))
	for _, p := range params {
		b, err := json.Marshal(p)
		if err != nil {
			return err
		}
		raw = append(raw, b)
	}
	res, err := cl.RawRequest(method, raw)
	if err != nil {
		return fmt.Errorf("%s: %w", method, err)
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(res, out)
}

func (c *Core) setUp() error {
	var err error
	if c.port, err = loopback.FreePort(); err != nil {
		return err
	}
	p2p, err := loopback.FreePort()
	if err != nil {
		return err
	}
	cmd := exec.Command(c.bin, "-regtest", "-datadir="+c.dir, "-server", "-listen=0", "-port="+strconv.Itoa(p2p),
		"-rpcbind=127.0.0.1", "-rpcallowip=127.0.0.1", "-rpcport="+strconv.Itoa(c.port),
		"-rpcuser="+c.user, "-rpcpassword="+c.pass, "-fallbackfee=0.0002", "-printtoconsole=0", "-dnsseed=0", "-upnp=0")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // no orphans if the test dies
	log, err := os.Create(filepath.Join(c.dir, "litecoind.out"))
	if err != nil {
		return err
	}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		log.Close()
		return err
	}
	c.proc = &process{cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); log.Close(); close(c.proc.done) }()
	if c.Node, err = c.client(""); err != nil {
		return err
	}
	if err := waitFor(60*time.Second, func() error { return call(c.Node, nil, "getblockchaininfo") }); err != nil {
		return fmt.Errorf("node did not answer: %w", err)
	}
	for _, w := range []string{CorePayments, CoreCustomer} {
		if err := call(c.Node, nil, "createwallet", w); err != nil {
			return err
		}
	}
	if c.Customer, err = c.client("/wallet/" + CoreCustomer); err != nil {
		return err
	}
	payments, err := c.client("/wallet/" + CorePayments)
	if err != nil {
		return err
	}
	defer payments.Shutdown()
	// Coinbase outputs mature after 100 blocks: 50 blocks to each wallet, then 100 more.
	for _, w := range []*rpcclient.Client{payments, c.Customer} {
		var addr string
		if err := call(w, &addr, "getnewaddress"); err != nil {
			return err
		}
		if err := call(c.Node, nil, "generatetoaddress", 50, addr); err != nil {
			return err
		}
	}
	return c.Mine(100)
}

// Mine mines blocks to a throwaway address of the customer wallet.
func (c *Core) Mine(blocks int) error {
	var addr string
	if err := call(c.Customer, &addr, "getnewaddress"); err != nil {
		return err
	}
	return call(c.Node, nil, "generatetoaddress", blocks, addr)
}

// Pay sends amount (a decimal string in coins) from the customer wallet and returns the txid.
func (c *Core) Pay(to, amount string) (string, error) {
	var txid string
	err := call(c.Customer, &txid, "sendtoaddress", to, json.Number(amount))
	return txid, err
}

// URL is the node's RPC endpoint (wallets are under /wallet/<name>).
func (c *Core) URL() string { return "http://127.0.0.1:" + strconv.Itoa(c.port) }

// Credentials are the RPC user and password.
func (c *Core) Credentials() (user, pass string) { return c.user, c.pass }

// AddressLabels returns the labels the payments wallet has for an address.
func (c *Core) AddressLabels(address string) ([]string, error) {
	w, err := c.client("/wallet/" + CorePayments)
	if err != nil {
		return nil, err
	}
	defer w.Shutdown()
	var info struct {
		Labels []json.RawMessage `json:"labels"`
	}
	if err := call(w, &info, "getaddressinfo", address); err != nil {
		return nil, err
	}
	var out []string
	for _, l := range info.Labels {
		var s string
		if json.Unmarshal(l, &s) == nil {
			out = append(out, s)
			continue
		}
		var obj struct{ Name string }
		if json.Unmarshal(l, &obj) == nil {
			out = append(out, obj.Name)
		}
	}
	return out, nil
}

// Stop stops the node and removes its directory.
func (c *Core) Stop() {
	if c == nil {
		return
	}
	if c.Node != nil {
		_ = call(c.Node, nil, "stop")
		c.Node.Shutdown()
	}
	if c.Customer != nil {
		c.Customer.Shutdown()
	}
	if c.proc != nil {
		select {
		case <-c.proc.done:
		case <-time.After(20 * time.Second):
			c.proc.stop()
		}
	}
	os.RemoveAll(c.dir)
}
