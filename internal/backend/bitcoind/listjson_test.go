package bitcoind

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"github.com/valyala/fastjson"
)

// stdDecode reads a reply as list did before fastjson: encoding/json with UseNumber.
func stdDecode(t testing.TB, body []byte, result any) {
	t.Helper()
	reply := struct {
		Result any `json:"result"`
	}{Result: result}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&reply); err != nil {
		t.Fatal(err)
	}
}

// testListing is a listsinceblock reply of n entries in the shapes btcwallet and Bitcoin Core
// write them: fields this client does not read, nulls, escapes, a gettransaction-style details
// array, and the entry of a block not yet known (no blockhash).
func testListing(n int) []byte {
	var sb strings.Builder
	sb.WriteString(`{"result":{"transactions":[`)
	for i := range n {
		if i > 0 {
			sb.WriteString(",")
		}
		switch i % 4 {
		case 0:
			fmt.Fprintf(&sb, `{"abandoned":false,"account":"default","address":"SZ%032d","amount":0.001,"bip125-replaceable":"no","blockhash":"%064x","blockindex":0,"blocktime":1700000000,"category":"receive","confirmations":%d,"fee":null,"generated":false,"time":1700000000,"timereceived":1700000000,"trusted":true,"txid":"%064x","vout":%d,"walletconflicts":[]}`, i, i, i+1, i, i%3)
		case 1:
			fmt.Fprintf(&sb, `{"address":"bcrt1q%030d","category":"send","amount":-12.5,"vout":1,"fee":-0.0000141,"confirmations":0,"txid":"%064x","label":"pay\u00e9 \"x\"","walletconflicts":["%064x"],"blockheight":null}`, i, i, i+1)
		case 2:
			fmt.Fprintf(&sb, `{"txid":"%064x","confirmations":-1,"blockhash":"%064x","blockheight":%d,"category":"generate","amount":50,"vout":0,"hex":"0100","details":[{"address":"a","category":"receive","amount":1e-8,"vout":2,"label":""},{"address":null,"category":"send","amount":-1,"vout":0}]}`, i, i, 800000+i)
		default:
			fmt.Fprintf(&sb, `{"txid":"%064x","txid":"%064x","category":"immature","amount":0,"vout":4294967,"nested":{"a":[1,{"b":null}]}}`, i, i+7)
		}
	}
	sb.WriteString(`],"lastblock":"00ab","removed":[]},"error":null,"id":1}` + "\n")
	return []byte(sb.String())
}

// testTransaction is gettransaction's reply for a broadcast of n outputs, as btcwallet writes it:
// a detail per output, the fee, and the raw transaction.
func testTransaction(n int) []byte {
	var sb strings.Builder
	fmt.Fprintf(&sb, `{"result":{"amount":-%d.5,"fee":-0.0034,"confirmations":0,"blockhash":"","blockindex":0,"blocktime":0,"txid":"%064x","walletconflicts":[],"time":1700000000,"timereceived":1700000000,"details":[`, n, 7)
	for i := range n {
		if i > 0 {
			sb.WriteString(",")
		}
		fmt.Fprintf(&sb, `{"account":"","address":"SZ%032d","amount":-0.0001,"category":"send","vout":%d,"fee":-0.0034}`, i, i)
	}
	fmt.Fprintf(&sb, `],"hex":"%s"},"error":null,"id":1}`, strings.Repeat("ab", 34*n))
	return []byte(sb.String())
}

// TestListingDecodeMatchesEncodingJSON: fastjson reads a listing into the same values
// encoding/json did, for every shape of entry.
func TestListingDecodeMatchesEncodingJSON(t *testing.T) {
	body := testListing(40)
	var want listing
	stdDecode(t, body, &want)
	var p fastjson.Parser
	var got listing
	rpcErr, err := decodeReply(&p, body, &got)
	if err != nil || rpcErr != nil {
		t.Fatalf("decoding: %v %v", rpcErr, err)
	}
	if len(got.Transactions) != 40 || !reflect.DeepEqual(got, want) {
		t.Fatalf("fastjson read\n%+v\nencoding/json read\n%+v", got, want)
	}

	// The same for listtransactions' plain arrays, as Recent and RecentSends read them.
	array := []byte(`{"result":[{"txid":"aa","category":"send","address":"x","amount":-0.5,"vout":1,"time":1700000001},{"txid":"bb","category":"receive","amount":2,"time":null}],"error":null,"id":3}`)
	var wantTxs, gotTxs walletTxs
	stdDecode(t, array, (*[]walletTx)(&wantTxs))
	if _, err := decodeReply(&p, array, &gotTxs); err != nil || !reflect.DeepEqual(gotTxs, wantTxs) {
		t.Fatalf("listtransactions: %v\n%+v, want\n%+v", err, gotTxs, wantTxs)
	}
	var gotSends sendEntries
	if _, err := decodeReply(&p, array, &gotSends); err != nil {
		t.Fatal(err)
	}
	wantSends := sendEntries{
		{detail: detail{Address: "x", Category: "send", Amount: "-0.5", Vout: 1}, TxID: "aa", Time: 1700000001},
		{detail: detail{Category: "receive", Amount: "2"}, TxID: "bb"},
	}
	if !reflect.DeepEqual(gotSends, wantSends) {
		t.Fatalf("sends %+v, want %+v", gotSends, wantSends)
	}

	// A broadcast's transaction, and a small reply read through encoding/json.
	tx := testTransaction(3)
	var wantTx, gotTx walletTx
	stdDecode(t, tx, &wantTx)
	if _, err := decodeReply(&p, tx, &gotTx); err != nil || len(gotTx.Details) != 3 || !reflect.DeepEqual(gotTx, wantTx) {
		t.Fatalf("gettransaction: %v\n%+v, want\n%+v", err, gotTx, wantTx)
	}
	var hdr struct {
		Height int64       `json:"height"`
		Work   json.Number `json:"chainwork"`
	}
	if _, err := decodeReply(&p, []byte(`{"result":{"hash":"00ab","height":812,"chainwork":1e3},"error":null,"id":5}`), anyResult{&hdr}); err != nil || hdr.Height != 812 || hdr.Work != "1e3" {
		t.Fatalf("getblockheader: %v %+v", err, hdr)
	}

	// A page of headers.
	page := []byte(`{"result":["0100","02\u0030"],"error":null,"id":4}`)
	var wantPage, gotPage stringList
	stdDecode(t, page, (*[]string)(&wantPage))
	if _, err := decodeReply(&p, page, &gotPage); err != nil || !reflect.DeepEqual(gotPage, wantPage) || gotPage[1] != "020" {
		t.Fatalf("headers: %v %q, want %q", err, gotPage, wantPage)
	}
	if _, err := decodeReply(&p, []byte(`{"result":["00",1]}`), &gotPage); err == nil || !strings.Contains(err.Error(), "result: entry 1: is a JSON number, not a string") {
		t.Fatalf("a header that is not a string: %v", err)
	}
}

// TestListingDecodeErrors: a reply that is not a listing is refused with the entry and the field
// that are wrong; the node's own error is handed back as such.
func TestListingDecodeErrors(t *testing.T) {
	for _, tc := range []struct {
		name, body, words string
	}{
		{"not JSON", `<html>`, "cannot parse JSON"},
		{"not an object", `[1]`, "a JSON array, not an object"},
		{"transactions not an array", `{"result":{"transactions":"none"}}`, "result: transactions: is a JSON string, not an array"},
		{"entry not an object", `{"result":{"transactions":[{},7]}}`, "transactions: entry 1: is a JSON number, not an object"},
		{"confirmations a string", `{"result":{"transactions":[{"txid":"a","confirmations":"6"}]}}`, "entry 0: confirmations: is a JSON string, not a number"},
		{"confirmations a fraction", `{"result":{"transactions":[{"confirmations":1.5}]}}`, "confirmations: is not a whole number"},
		{"vout out of range", `{"result":{"transactions":[{"vout":4294967296}]}}`, "vout: 4294967296 is out of range"},
		{"amount a string", `{"result":{"transactions":[{"amount":"0.1"}]}}`, "amount: is a JSON string, not a number"},
		{"txid a number", `{"result":{"transactions":[{"txid":12}]}}`, "txid: is a JSON number, not a string"},
		{"detail wrong", `{"result":{"transactions":[{"details":[{"vout":true}]}]}}`, "details: entry 0: vout: is a JSON true, not a number"},
		{"error not an RPC error", `{"result":null,"error":"boom"}`, "error: json: cannot unmarshal string"},
		// The reply's text is walked, not parsed whole: what the walk crosses and what it skips
		// are held to JSON's rules all the same.
		{"text after the reply", `{"result":null} {}`, "the end of the reply expected at offset 16"},
		{"no colon", `{"result" null}`, "':' expected at offset 10"},
		{"no comma between entries", `{"result":{"transactions":[{} {}]}}`, "',' or ']' expected"},
		{"no comma between keys", `{"result":null "id":1}`, "',' or '}' expected"},
		{"a key that is not a string", `{result:null}`, "a key expected at offset 1"},
		{"a skipped value that is not JSON", `{"id":1x,"result":null}`, `id: unexpected tail: "x"`},
		{"a skipped key of the listing that is not JSON", `{"result":{"removed":[tru],"transactions":[]}}`, "cannot parse JSON"},
		{"an entry that is not JSON", `{"result":{"transactions":[{"txid":"a",}]}}`, "transactions: entry 0: cannot parse JSON"},
		{"cut off in an entry", `{"result":{"transactions":[{"txid":"ab`, "the text ends where a closing quote was expected"},
		{"cut off between entries", `{"result":{"transactions":[{},`, "the text ends where a value was expected"},
		{"cut off in a skipped array", `{"result":{"removed":[[1,2]`, "the text ends where a closing bracket was expected"},
		{"a comma after the last entry", `{"result":{"transactions":[{"txid":"a"},]}}`, "transactions: cannot parse JSON: a value expected at offset 40"},
		{"a comma after the last key", `{"result":{},}`, "a key expected at offset 13"},
		{"an empty reply", ``, "the text ends where a value was expected"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var p fastjson.Parser
			var l listing
			_, err := decodeReply(&p, []byte(tc.body), &l)
			if err == nil || !strings.Contains(err.Error(), tc.words) {
				t.Fatalf("got %v, want an error saying %q", err, tc.words)
			}
		})
	}

	var p fastjson.Parser
	var l listing
	rpcErr, err := decodeReply(&p, []byte(`{"result":null,"error":{"code":-5,"message":"Block not found"},"id":1}`), &l)
	if err != nil || rpcErr == nil || rpcErr.Code != -5 || rpcErr.Message != "Block not found" {
		t.Fatalf("node's error: %+v %v", rpcErr, err)
	}
	// The node's error wins over a result, wherever each is in the reply, and whether or not the
	// result reads.
	for _, body := range []string{
		`{"result":{"transactions":[{"txid":"a"}]},"error":{"code":-8,"message":"busy"},"id":1}`,
		`{"result":{"transactions":[{"txid":7}]},"error":{"code":-8,"message":"busy"},"id":1}`,
		`{"error":{"code":-8,"message":"busy"},"result":7}`,
	} {
		rpcErr, err := decodeReply(&p, []byte(body), &l)
		if err != nil || rpcErr == nil || rpcErr.Code != -8 {
			t.Fatalf("%s: %+v %v", body, rpcErr, err)
		}
	}
	// Keys are compared unescaped, and the last of a repeated key wins, as encoding/json has it.
	if _, err := decodeReply(&p, []byte(` {"res\u0075lt" : {"transactions":[{"txid":"x"}],"lastblock":"a\"b","lastblock":"00cd"}, "error" : null } `), &l); err != nil ||
		len(l.Transactions) != 1 || l.Transactions[0].TxID != "x" || l.LastBlock != "00cd" {
		t.Fatalf("escaped key, repeated key: %v %+v", err, l)
	}
	if !cutShort([]byte(`{"result":{"transactions":[{"txid":"ab`)) || !cutShort(nil) || cutShort([]byte(`{"result":]`)) {
		t.Fatal("cutShort tells a reply cut off from a malformed one wrongly")
	}
}

// TestListingDecodeHoldsOneEntryAtATime: a listing is parsed an entry at a time, so reading one
// allocates little more than the entries it holds, however long it is. Parsed whole, the tree of
// a listing of testListing's entries allocated about 8 KB an entry, and the pooled parser kept
// most of it for its next call.
func TestListingDecodeHoldsOneEntryAtATime(t *testing.T) {
	const n = 20000
	body := testListing(n)
	var p fastjson.Parser
	var l listing
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	if _, err := decodeReply(&p, body, &l); err != nil || len(l.Transactions) != n {
		t.Fatalf("%d entries: %v", len(l.Transactions), err)
	}
	runtime.ReadMemStats(&after)
	perEntry := int(after.TotalAlloc-before.TotalAlloc) / n
	// The entries themselves (a 168-byte struct and its strings, under 400 bytes in all), the
	// spans of the text they were found at, and one entry's parse tree.
	if perEntry > 1024 {
		t.Fatalf("reading %d entries allocated %d bytes an entry, over 1 KB: the listing was not read an entry at a time", n, perEntry)
	}
	t.Logf("%d bytes of text an entry; %d bytes allocated an entry", len(body)/n, perEntry)
}

// TestRepliesOfUnknownLength: a reply sent chunked, with no length (btcwallet's long ones), is
// read whole across the pieces it is read in, and one cut off on its way is an error, not a
// shorter reply.
func TestRepliesOfUnknownLength(t *testing.T) {
	want := testListing(20000) // 7 MB: pieces of 16 KB, doubling to 4 MB
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		for rest := want; len(rest) > 0; {
			n := min(len(rest), 50_000)
			_, _ = w.Write(rest[:n])
			w.(http.Flusher).Flush()
			rest = rest[n:]
		}
	}))
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.ContentLength != -1 {
		t.Fatalf("the reply has a length (%d): the test does not read one of unknown length", resp.ContentLength)
	}
	got, err := readReply(resp)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("read %d bytes of %d: %v", len(got), len(want), err)
	}

	// Cut off in the middle of a chunk, as a node that dies while it answers leaves it.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		if _, err := http.ReadRequest(bufio.NewReader(conn)); err != nil {
			return
		}
		fmt.Fprintf(conn, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s", 100_000, want[:60_000])
	}()
	resp, err = http.Get("http://" + ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if got, err := readReply(resp); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("a reply cut off after %d bytes read as %d bytes and %v, want io.ErrUnexpectedEOF", 60_000, len(got), err)
	}
}

// BenchmarkListingDecode reads a rescan-sized listing (3,600 entries, 1.6 MB) with fastjson, as
// list does, and with encoding/json as it did before: the ratio is the second's time over the
// first's.
func BenchmarkListingDecode(b *testing.B) {
	body := testListing(3600)
	b.Run("fastjson", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		var p fastjson.Parser
		for b.Loop() {
			var l listing
			if _, err := decodeReply(&p, body, &l); err != nil || len(l.Transactions) != 3600 {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			var l listing
			stdDecode(b, body, &l)
			if len(l.Transactions) != 3600 {
				b.Fatal(len(l.Transactions))
			}
		}
	})
}

// BenchmarkTransactionDecode reads gettransaction's reply for a broadcast of 1,000 outputs (the
// broadcaster looks up each one's fee) with fastjson, and as it was read through rpcclient: the
// reply parsed whole for its raw result, which encoding/json then decoded.
func BenchmarkTransactionDecode(b *testing.B) {
	body := testTransaction(1000)
	b.Run("fastjson", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		var p fastjson.Parser
		for b.Loop() {
			var t walletTx
			if _, err := decodeReply(&p, body, &t); err != nil || len(t.Details) != 1000 {
				b.Fatal(err)
			}
		}
	})
	b.Run("rpcclient-encoding-json", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			var raw struct {
				Result json.RawMessage `json:"result"`
				Error  json.RawMessage `json:"error"`
			}
			if err := json.Unmarshal(body, &raw); err != nil {
				b.Fatal(err)
			}
			var t walletTx
			dec := json.NewDecoder(bytes.NewReader(raw.Result))
			dec.UseNumber()
			if err := dec.Decode(&t); err != nil || len(t.Details) != 1000 {
				b.Fatal(err)
			}
		}
	})
}
