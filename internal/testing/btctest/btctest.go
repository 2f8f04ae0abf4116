// Package btctest runs a real btcd node and btcwallet on simnet for tests: their own directories,
// free loopback ports, a funded wallet (110+ blocks mined to it), and helpers to mine, send and
// stop or restart the node. The binaries come from `go install` (hack/setup-tools.sh puts them in
// bin/); BTCD_BIN_DIR points at them.
package btctest

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/btcsuite/btcd/address/v2"
	"github.com/btcsuite/btcd/btcutil/v2"
	"github.com/btcsuite/btcd/chaincfg/v2"
	"github.com/btcsuite/btcd/chainhash/v2"
	"github.com/btcsuite/btcd/rpcclient"
	"github.com/cryptoassets/cryptoassets-operator/internal/testing/loopback"
	"github.com/cryptoassets/cryptoassets-operator/internal/testing/proc"
)

// WalletPassphrase is the passphrase of btcwallet's --createtemp wallet.
const WalletPassphrase = "password"

// Node is a btcd + btcwallet pair on simnet.
type Node struct {
	dir        string
	bin        string
	btcdPort   int
	walletPort int
	user, pass string
	// walletPass is btcwallet's RPC password; btcd keeps pass.
	walletPass string
	// host is an extra address the wallet's RPC is reached at (StartOn); hostLn forwards it.
	host   string
	hostLn net.Listener
	btcd   *process
	wallet *process
	// unlockPatience replaces the package's unlockPatience when set.
	unlockPatience time.Duration
	// MiningAddress receives the block rewards; it belongs to the wallet.
	MiningAddress string
	// Node is an RPC client of btcd; Wallet of btcwallet.
	Node, Wallet *rpcclient.Client
}

type process struct {
	cmd  *exec.Cmd
	done chan struct{}
}

func (p *process) stop() {
	if p == nil {
		return
	}
	proc.Stop(p.cmd.Process, syscall.SIGINT, 15*time.Second, p.done)
}

// BinDir finds btcd and btcwallet: BTCD_BIN_DIR, or bin/ of the repository, or PATH.
func BinDir() (string, error) {
	candidates := []string{os.Getenv("BTCD_BIN_DIR")}
	if wd, err := os.Getwd(); err == nil {
		for d := wd; d != "/"; d = filepath.Dir(d) {
			if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
				candidates = append(candidates, filepath.Join(d, "bin"))
				break
			}
		}
	}
	if p, err := exec.LookPath("btcwallet"); err == nil {
		candidates = append(candidates, filepath.Dir(p))
	}
	for _, c := range candidates {
		if c == "" {
			continue
		}
		_, e1 := os.Stat(filepath.Join(c, "btcd"))
		_, e2 := os.Stat(filepath.Join(c, "btcwallet"))
		if e1 == nil && e2 == nil {
			return c, nil
		}
	}
	return "", errors.New("btcd and btcwallet not found: run hack/setup-tools.sh test (go install puts them in bin/) or set BTCD_BIN_DIR")
}

func client(port int, user, pass string) (*rpcclient.Client, error) {
	return rpcclient.New(&rpcclient.ConnConfig{
		Host: "127.0.0.1:" + strconv.Itoa(port), User: user, Pass: pass,
		HTTPPostMode: true, DisableTLS: true, Params: chaincfg.SimNetParams.Name,
	}, nil)
}

func (n *Node) start(name string, args ...string) (*process, error) {
	cmd := exec.Command(filepath.Join(n.bin, name), args...)
	log, err := os.OpenFile(filepath.Join(n.dir, name+".log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = log, log
	// The binaries want to write a default config into $HOME; give them the test's directory.
	cmd.Env = append(os.Environ(), "HOME="+n.dir, "GOTRACEBACK=all")
	// A test binary that panics or times out must not leave servers running.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		log.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); log.Close(); close(p.done) }()
	return p, nil
}

// PIDs are the process ids of btcd and btcwallet (0 for one that is not running).
func (n *Node) PIDs() (btcd, wallet int) {
	pid := func(p *process) int {
		if p == nil || p.cmd.Process == nil {
			return 0
		}
		return p.cmd.Process.Pid
	}
	return pid(n.btcd), pid(n.wallet)
}

// StartBtcd (re)starts the node; StopBtcd stops it, leaving the wallet running (and complaining),
// as when the network is down.
func (n *Node) StartBtcd() error {
	args := []string{"--simnet", "--notls", "--nolisten", "--rpclisten=127.0.0.1:" + strconv.Itoa(n.btcdPort),
		"--rpcuser=" + n.user, "--rpcpass=" + n.pass, "--datadir=" + filepath.Join(n.dir, "btcd"),
		"--logdir=" + filepath.Join(n.dir, "btcd-logs"), "--debuglevel=warn"}
	if n.MiningAddress != "" {
		args = append(args, "--miningaddr="+n.MiningAddress)
	}
	p, err := n.start("btcd", args...)
	if err != nil {
		return err
	}
	n.btcd = p
	if err := waitFor(30*time.Second, func() error { _, err := n.Node.GetBlockCount(); return err }); err != nil {
		return err
	}
	return n.walletAfterNodeRestart()
}

// walletAfterNodeRestart restarts a running wallet that holds an "Sb1" address (see Sb1), and
// unlocks it again. btcwallet v0.15 re-registers every address it watches with a node that
// restarted under it, in one request, and btcd refuses the whole request for such an address
// ("Invalid address or key"): the wallet then reconnects in a loop and never hears of a block
// again. Seen in CI and reproduced: a wallet that had drawn one (about one address in 200) stayed
// at its height for good after a node restart, and the same wallet started afresh synced.
func (n *Node) walletAfterNodeRestart() error {
	if n.wallet == nil {
		return nil
	}
	raw, err := n.Wallet.RawRequest("getaddressesbyaccount", []json.RawMessage{json.RawMessage(`"default"`)})
	if err != nil {
		return fmt.Errorf("listing the wallet's addresses: %w", err)
	}
	var addrs []string
	if err := json.Unmarshal(raw, &addrs); err != nil {
		return fmt.Errorf("listing the wallet's addresses: %w", err)
	}
	if !slices.ContainsFunc(addrs, Sb1) {
		return nil
	}
	n.wallet.stop()
	if err := n.startWallet(false); err != nil {
		return fmt.Errorf("restarting btcwallet, which holds an Sb1 address, after the node: %w", err)
	}
	if err := n.Unlock(time.Hour); err != nil {
		return fmt.Errorf("unlocking the restarted wallet: %w; btcwallet's last log lines:\n%s", err, walletLogTail(n.dir, 15))
	}
	return nil
}

// StopBtcd stops the node.
func (n *Node) StopBtcd() { n.btcd.stop(); n.btcd = nil }

func waitFor(timeout time.Duration, f func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// startWallet starts btcwallet on the test's wallet directory; createTemp makes the wallet.
func (n *Node) startWallet(createTemp bool) error {
	args := []string{"--simnet", "--appdata=" + filepath.Join(n.dir, "wallet"),
		"--noclienttls", "--noservertls", "--rpcconnect=127.0.0.1:" + strconv.Itoa(n.btcdPort),
		"--rpclisten=127.0.0.1:" + strconv.Itoa(n.walletPort), "-u", n.user, "-P", n.walletPass,
		"--btcdusername=" + n.user, "--btcdpassword=" + n.pass,
		"--logdir=" + filepath.Join(n.dir, "wallet-logs"),
		// btcwallet serves ten requests at once by default and answers more "429 Too Many
		// Requests". The end-to-end tests have helper pods rolling (up to four requests each),
		// rescans run in a pod and the test's own calls on one wallet, and configure it as the
		// README tells users with several helpers on one wallet to. With the default, a loaded
		// CI run was refused the test's payment for two minutes on end after a roll (which
		// clients held the ten is not known: Pay's errors now carry the wallet's log).
		"--rpcmaxclients=32"}
	if createTemp {
		args = append(args, "--createtemp")
	}
	p, err := n.start("btcwallet", args...)
	if err != nil {
		return err
	}
	n.wallet = p
	return waitFor(60*time.Second, func() error { _, err := n.Wallet.GetBlockCount(); return err })
}

// Start starts btcd and btcwallet and funds the wallet: 110+ blocks mined to it leave 550
// spendable coins (simnet coinbase outputs mature after 100 blocks).
//
// btcd mines to an address fixed at its start, and the address must come from the wallet, so both
// start twice: once to make the wallet and take an address, then btcd with that address and the
// wallet reopened on a fresh connection. (Restarting btcd under a connected btcwallet sometimes
// leaves the wallet believing its coins immature for good.)
func Start() (*Node, error) { return StartOn("") }

// StartOn is Start with the wallet's RPC also listening on host, for clients in pods (which
// cannot reach 127.0.0.1 on the host); WalletURLOn gives that URL.
func StartOn(host string) (*Node, error) {
	bin, err := BinDir()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "btctest-")
	if err != nil {
		return nil, err
	}
	n := &Node{dir: dir, bin: bin, user: "test", pass: "test-rpc-password", walletPass: "test-rpc-password", host: host}
	if err := n.setUp(); err == nil && host != "" {
		// btcwallet refuses plain-HTTP RPC on any address but loopback, so a forwarder puts the
		// loopback listener where pods reach it.
		if n.hostLn, err = net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(n.walletPort))); err == nil {
			go loopback.Forward(n.hostLn, "127.0.0.1:"+strconv.Itoa(n.walletPort))
		} else {
			n.Stop()
			return nil, fmt.Errorf("listening on %s for the wallet: %w", host, err)
		}
	} else if err != nil {
		// The directory goes with Stop, so what the wallet last logged goes into the error.
		tail := walletLogTail(dir, 15)
		n.Stop()
		return nil, fmt.Errorf("%w; btcwallet's last log lines:\n%s", err, tail)
	}
	return n, nil
}

// walletLogTail returns the last lines of btcwallet's log under dir, for a failure that removes
// the directory.
func walletLogTail(dir string, lines int) string {
	logs, _ := filepath.Glob(filepath.Join(dir, "wallet-logs", "*", "btcwallet.log"))
	if len(logs) == 0 {
		return "(no btcwallet log)"
	}
	b, err := os.ReadFile(logs[0])
	if err != nil {
		return err.Error()
	}
	all := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(all[max(0, len(all)-lines):], "\n")
}

func (n *Node) setUp() error {
	var err error
	if n.btcdPort, err = loopback.FreePort(); err != nil {
		return err
	}
	if n.walletPort, err = loopback.FreePort(); err != nil {
		return err
	}
	if n.Node, err = client(n.btcdPort, n.user, n.pass); err != nil {
		return err
	}
	if n.Wallet, err = client(n.walletPort, n.user, n.walletPass); err != nil {
		return err
	}
	if err := n.StartBtcd(); err != nil {
		return fmt.Errorf("btcd: %w", err)
	}
	if err := n.startWallet(true); err != nil {
		return fmt.Errorf("btcwallet did not answer: %w", err)
	}
	var addr address.Address
	if err := waitFor(60*time.Second, func() (err error) { addr, err = n.NewAddress(); return err }); err != nil {
		return fmt.Errorf("btcwallet: %w", err)
	}
	n.MiningAddress = addr.EncodeAddress()
	n.wallet.stop()
	n.wallet = nil
	n.StopBtcd()

	if err := n.StartBtcd(); err != nil {
		return fmt.Errorf("restarting btcd with a mining address: %w", err)
	}
	if err := n.startWallet(false); err != nil {
		return fmt.Errorf("reopening the wallet: %w", err)
	}
	if _, err := n.Mine(110); err != nil {
		if err := n.walletAfterLostBlocks(err); err != nil {
			return err
		}
	}
	if err := n.Unlock(time.Hour); err != nil {
		return fmt.Errorf("unlocking the wallet: %w", err)
	}
	// Funded means spendable: prove it with a payment to itself, mining while the wallet catches up.
	deadline := time.Now().Add(60 * time.Second)
	for {
		if _, err := n.Mine(1); err != nil {
			return err
		}
		_, err := n.Wallet.SendToAddress(addr, btcutil.Amount(btcutil.SatoshiPerBitcoin))
		if err == nil {
			break
		}
		// Immature coins, or the change-address quirk Pay describes: both pass on a retry.
		retry := strings.Contains(err.Error(), "insufficient funds") || IsSb1Quirk(err)
		if !retry || time.Now().After(deadline) {
			return fmt.Errorf("the funded wallet cannot spend: %w", err)
		}
		if IsSb1Quirk(err) {
			if err := n.SkipRefusedChange(); err != nil {
				return err
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	_, err = n.Mine(1)
	return err
}

// lostBlocks is how btcwallet v0.15 logs a block it could not record because it has no hash for
// the block before: "failed to store sync information <hash>: failed to fetch block hash for
// height N: block not found".
const lostBlocks = "failed to fetch block hash for height"

// walletAfterLostBlocks restarts a wallet that stopped following the chain while setUp mined its
// first blocks, and waits for it to reach the node's tip; stalled is the wait that failed. Seen
// twice (stop 35's scratch runs, and a CI run of test/e2e): the 110 blocks arrive in a burst, the
// wallet logs lostBlocks for each from some height on, and stays at the height before for good. A
// wallet that starts on a node already ahead of it syncs by asking the node block by block, as
// walletAfterNodeRestart relies on. Any other failure is returned as it was.
func (n *Node) walletAfterLostBlocks(stalled error) error {
	if !strings.Contains(walletLogTail(n.dir, 50), lostBlocks) {
		return stalled
	}
	n.wallet.stop()
	if err := n.startWallet(false); err != nil {
		return fmt.Errorf("restarting btcwallet after it lost blocks (%v): %w", stalled, err)
	}
	height, err := n.Node.GetBlockCount()
	if err != nil {
		return err
	}
	if err := n.WaitWalletHeight(height); err != nil {
		return fmt.Errorf("btcwallet restarted after it lost blocks (%v) and still did not catch up: %w", stalled, err)
	}
	notice(fmt.Sprintf("btctest: btcwallet lost blocks while set-up mined (%v); restarted, it caught up to height %d", stalled, height))
	return nil
}

// notice reports a work-around the harness took, so a green run still tells how often the
// problem behind it comes: on stderr, and appended to the file TEST_NOTICES names, which `make
// test` prints after the suite (go test shows a passing package's output only with -v).
func notice(msg string) {
	fmt.Fprintln(os.Stderr, msg)
	path := os.Getenv("TEST_NOTICES")
	if path == "" {
		return
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		fmt.Fprintf(os.Stderr, "btctest: recording the notice in %s: %v\n", path, err)
		return
	}
	defer f.Close()
	if _, err := fmt.Fprintln(f, msg); err != nil {
		fmt.Fprintf(os.Stderr, "btctest: recording the notice in %s: %v\n", path, err)
	}
}

// Mine mines blocks and waits until the wallet has processed them.
func (n *Node) Mine(blocks uint32) ([]*chainhash.Hash, error) {
	hashes, err := n.Node.Generate(blocks)
	if err != nil {
		return nil, fmt.Errorf("mining %d blocks: %w", blocks, err)
	}
	want, err := n.Node.GetBlockCount()
	if err != nil {
		return nil, err
	}
	return hashes, n.WaitWalletHeight(want)
}

// WaitWalletHeight waits until btcwallet has processed the chain up to height: its own best block
// (getbestblockhash answers from the wallet's sync state) is the node's block at that height.
func (n *Node) WaitWalletHeight(height int64) error {
	return waitFor(60*time.Second, func() error {
		want, err := n.Node.GetBlockHash(height)
		if err != nil {
			return err
		}
		raw, err := n.Wallet.RawRequest("getbestblockhash", nil)
		if err != nil {
			return err
		}
		var got string
		if err := json.Unmarshal(raw, &got); err != nil {
			return err
		}
		if got != want.String() {
			return fmt.Errorf("wallet synced to %s, want block %d (%s)", got, height, want)
		}
		return nil
	})
}

// sb1Quirk is how btcwallet v0.15 refuses its own change address when it starts "Sb1".
const sb1Quirk = "Invalid address or key: Sb1"

// IsSb1Quirk says whether err is btcwallet v0.15 refusing a simnet address that starts "Sb1"
// (it takes base58 addresses with that prefix for bech32). Such a refusal paid nothing, so the
// call can be made again: the wallet draws another change address.
func IsSb1Quirk(err error) bool { return err != nil && strings.Contains(err.Error(), sb1Quirk) }

// Sb1 says whether a simnet address has the prefix btcwallet v0.15 cannot pay to.
func Sb1(addr string) bool { return strings.HasPrefix(strings.ToLower(addr), "sb1") }

// NewAddress is a new address of the node's wallet that the wallet can also pay to (not "Sb1").
func (n *Node) NewAddress() (address.Address, error) {
	for attempt := 1; ; attempt++ {
		a, err := n.Wallet.GetNewAddress("default")
		if IsSb1Quirk(err) && attempt < 20 {
			// The wallet can refuse the "Sb1" address it has just drawn, as it refuses such
			// change addresses (SkipRefusedChange); the next call draws the one after it.
			continue
		}
		if err != nil || !Sb1(a.EncodeAddress()) {
			return a, err
		}
	}
}

// Pay sends sat satoshi from the node's wallet to an address, as a customer's wallet would, and
// returns the txid.
func (n *Node) Pay(to string, sat int64) (string, error) {
	addr, err := address.DecodeAddress(to, &chaincfg.SimNetParams)
	if err != nil {
		return "", err
	}
	if err := n.Unlock(10 * time.Minute); err != nil {
		return "", fmt.Errorf("unlocking the wallet to pay %s: %w; btcwallet's last log lines:\n%s", to, err, walletLogTail(n.dir, 15))
	}
	// btcwallet v0.15 cannot decode its own base58 simnet addresses that start "Sb1" (it takes
	// them for bech32), so a payment whose fresh change address has that form fails, having moved
	// no coins. SkipRefusedChange makes the next attempt draw another change address.
	for attempt := 1; ; attempt++ {
		var h *chainhash.Hash
		err := whileBusy(func() (err error) { h, err = n.Wallet.SendToAddress(addr, btcutil.Amount(sat)); return err })
		if err == nil {
			return h.String(), nil
		}
		if attempt == 20 || !IsSb1Quirk(err) {
			return "", fmt.Errorf("paying %s: %w; btcwallet's last log lines:\n%s", to, err, walletLogTail(n.dir, 15))
		}
		if err := n.SkipRefusedChange(); err != nil {
			return "", fmt.Errorf("paying %s: %w", to, err)
		}
	}
}

// SkipRefusedChange takes the wallet's next change address, after a payment failed on the
// "Sb1" quirk. A failed payment does not keep the change address it drew, so every retry draws
// the same one and fails the same way; getrawchangeaddress does keep it, even though it then
// fails to return it for the same reason. (Seen by paying until the quirk came, at the 1,680th
// and 1,709th payment of two runs: two retries refused the same address, and one
// getrawchangeaddress, refused too, let the next payment through.)
func (n *Node) SkipRefusedChange() error {
	_, err := n.Wallet.RawRequest("getrawchangeaddress", []json.RawMessage{json.RawMessage(`"default"`)})
	if err != nil && !IsSb1Quirk(err) {
		return fmt.Errorf("drawing past a refused change address: %w", err)
	}
	return nil
}

// PaymentsTo counts the wallet's sends to address: a send must be paid exactly once.
func (n *Node) PaymentsTo(address string) (int, error) {
	raw, err := n.Wallet.RawRequest("listtransactions", []json.RawMessage{json.RawMessage(`"*"`), json.RawMessage("1000")})
	if err != nil {
		return 0, err
	}
	var list []struct{ Category, Address string }
	if err := json.Unmarshal(raw, &list); err != nil {
		return 0, err
	}
	count := 0
	for _, e := range list {
		if e.Category == "send" && e.Address == address {
			count++
		}
	}
	return count, nil
}

// NodeAddr is btcd's RPC address (host:port).
func (n *Node) NodeAddr() string { return "127.0.0.1:" + strconv.Itoa(n.btcdPort) }

// WalletURL is btcwallet's RPC endpoint.
func (n *Node) WalletURL() string { return "http://127.0.0.1:" + strconv.Itoa(n.walletPort) }

// WalletURLOn is the wallet's RPC URL at the extra address StartOn gave.
func (n *Node) WalletURLOn() string {
	return "http://" + net.JoinHostPort(n.host, strconv.Itoa(n.walletPort))
}

// Credentials are btcwallet's RPC user and password (btcd's too, until SetWalletPassword).
func (n *Node) Credentials() (user, pass string) { return n.user, n.walletPass }

// SetWalletPassword restarts btcwallet with a new RPC password, as rotating the wallet's
// credentials would; btcd keeps its own. The wallet is unlocked again afterwards.
func (n *Node) SetWalletPassword(pass string) error {
	n.Wallet.Shutdown()
	n.wallet.stop()
	n.walletPass = pass
	var err error
	if n.Wallet, err = client(n.walletPort, n.user, pass); err != nil {
		return err
	}
	if err := n.startWallet(false); err != nil {
		return fmt.Errorf("restarting btcwallet: %w", err)
	}
	if err := n.Unlock(time.Hour); err != nil {
		return fmt.Errorf("unlocking the restarted wallet: %w; btcwallet's last log lines:\n%s", err, walletLogTail(n.dir, 15))
	}
	// A restarted wallet syncs with the node before it follows new blocks; the test pays and
	// mines next, so let that sync end first.
	height, err := n.Node.GetBlockCount()
	if err != nil {
		return err
	}
	return n.WaitWalletHeight(height)
}

// whileBusy calls f again while btcwallet answers "429 Too Many Requests", for up to two
// minutes. btcwallet counts every request it is serving, refused ones included, against
// --rpcmaxclients and turns away the rest, having done nothing, until they are done; a wallet
// just restarted (SetWalletPassword) holds requests while it catches up with btcd, and helper
// pods call it as soon as it listens. Seen in end-to-end runs on a busy machine with the
// default of ten: once unlocking the restarted wallet, once paying just after. Who held the
// ten was not found; the errors of Pay and the unlock carry the wallet's log for that.
func whileBusy(f func() error) error {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		err := f()
		if err == nil || !strings.Contains(err.Error(), "429") || time.Now().After(deadline) {
			return err
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Dir holds the servers' data and logs.
func (n *Node) Dir() string { return n.dir }

// Stop stops both servers and removes their directory.
func (n *Node) Stop() {
	if n == nil {
		return
	}
	if n.hostLn != nil {
		n.hostLn.Close()
	}
	if n.Wallet != nil {
		n.Wallet.Shutdown()
	}
	if n.Node != nil {
		n.Node.Shutdown()
	}
	n.wallet.stop()
	n.btcd.stop()
	os.RemoveAll(n.dir)
}

// MustPay is Pay for tests: it fails t on error.
func (n *Node) MustPay(t testing.TB, to string, sat int64) string {
	t.Helper()
	txid, err := n.Pay(to, sat)
	if err != nil {
		t.Fatal(err)
	}
	return txid
}

// MustMine is Mine for tests: it fails t on error.
func (n *Node) MustMine(t testing.TB, blocks uint32) {
	t.Helper()
	if _, err := n.Mine(blocks); err != nil {
		t.Fatal(err)
	}
}
