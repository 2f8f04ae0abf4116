package bitcoind

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"

	"github.com/btcsuite/btcd/btcjson"
	"github.com/valyala/fastjson"
)

// The wallet's listings are read with fastjson, not encoding/json. A rescan-sized listsinceblock
// (3,600 entries, 1.6 MB) takes encoding/json 13.8 ms of CPU to decode into walletTx, and fastjson
// 3.3 ms (BenchmarkListingDecode, 2 CPUs); the listing is on the way of every catch-up and rescan,
// after the wallet has answered and before anything is booked. goccy/go-json, which replaces
// encoding/json without code of our own, took 4.4 ms in a scratch benchmark, but adds 1.6 MB to
// the binary and analyses its types at start-up in every process, the operator's too.
//
// The pages of block headers a listing's blocks are checked against (getheaders, 2,000 headers,
// about 320 KB) and gettransaction's answers (a broadcast's has a detail per output) are read the
// same way. The rules are encoding/json's for the fields read here: an absent or null field
// leaves the zero value, unknown keys are skipped, and the last of a repeated key wins. Two are
// stricter: keys match exactly (the nodes write them in lower case), and an amount must be a JSON
// number, not a string. Every other reply is a few hundred bytes: its result is handed to
// encoding/json (anyResult).

// listResult is a result read from its JSON parsed whole: a page of headers, a transaction.
type listResult interface {
	decodeJSON(v *fastjson.Value) error
}

// streamedResult is a result whose entries are parsed one at a time from the reply's text, with
// the parser reused for each: the wallet's listings. A listing of the wallet's whole history (a
// rescan from 0, a catch-up whose cursor was refused) has no bound, and parsed whole its tree
// took over 20 times its text (7.8 KB an entry of 357 bytes), and a pooled parser keeps its tree,
// and its copy of the text, for as long as it is reused. Measured with scratch tests on a fake
// node answering 100,000 entries of 419 bytes, chunked, the heap's peak during Since was 8.7 KB
// an entry parsed whole (some 30,000 entries filled the helper's default 256 MiB limit) and is
// 0.9 KB entry by entry: the reply's text, the entries read from it, and the Transactions made
// from them (see collector).
type streamedResult interface {
	// decodeStream reads the valid JSON value at b[at] and returns where it ends.
	decodeStream(p *fastjson.Parser, b []byte, at int) (end int, err error)
}

// decodeReply reads a JSON-RPC reply: the node's error, if it sent one, or else its result into
// result, a listResult or a streamedResult. err says the reply is not such a reply, or its
// result not what result reads. The reply's members are found by their text (walkObject), and
// only the error and the result are parsed.
func decodeReply(p *fastjson.Parser, body []byte, result any) (rpcErr *btcjson.RPCError, err error) {
	var errText []byte
	var resultErr error
	end, err := walkObject(body, 0, func(key []byte, at int) (int, error) {
		switch string(key) {
		case "error":
			end, err := skipChecked(body, at)
			errText = body[at:end]
			return end, err
		case "result":
			end, err := decodeResult(p, body, at, result)
			if resultErr = err; err != nil {
				// The node's error, after the result, is still to be read, if the result's
				// text ends where it should.
				if end, err = skipValue(body, at); err != nil {
					return end, resultErr
				}
			}
			return end, nil
		}
		return skipChecked(body, at)
	})
	if i := skipSpace(body, 0); err != nil && i < len(body) && body[i] != '{' {
		// walkObject refused the reply itself, not one of its members.
		return nil, fmt.Errorf("the reply %w", err)
	}
	if err != nil {
		return nil, err
	}
	if end = skipSpace(body, end); end < len(body) {
		return nil, syntaxError(body, end, "the end of the reply")
	}
	if len(errText) > 0 && !isNull(errText, 0) {
		// Small and rare: encoding/json reads it as everywhere else.
		var out btcjson.RPCError
		if err := json.Unmarshal(errText, &out); err != nil {
			return nil, fmt.Errorf("error: %w", err)
		}
		return &out, nil
	}
	if resultErr != nil {
		return nil, fmt.Errorf("result: %w", resultErr)
	}
	return nil, nil
}

// decodeResult reads the result at b[at] into result and returns where it ends.
func decodeResult(p *fastjson.Parser, b []byte, at int, result any) (int, error) {
	if isNull(b, at) {
		return skipChecked(b, at)
	}
	switch r := result.(type) {
	case streamedResult:
		return r.decodeStream(p, b, at)
	case listResult:
		v, end, err := parseValue(p, b, at)
		if err != nil {
			return end, err
		}
		return end, r.decodeJSON(v)
	}
	end, err := skipChecked(b, at)
	return end, errors.Join(err, fmt.Errorf("cannot be read into a %T", result))
}

// parseValue parses the JSON value at b[at] alone, and says where it ends.
func parseValue(p *fastjson.Parser, b []byte, at int) (*fastjson.Value, int, error) {
	end, err := skipValue(b, at)
	if err != nil {
		return nil, end, err
	}
	v, err := p.ParseBytes(b[at:end])
	return v, end, err
}

// anyResult reads a result with encoding/json, numbers as json.Number (amounts stay exact); a
// nil v takes any result.
type anyResult struct{ v any }

func (r anyResult) decodeJSON(v *fastjson.Value) error {
	if r.v == nil {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(v.MarshalTo(nil)))
	dec.UseNumber()
	return dec.Decode(r.v)
}

// readReply reads a reply's whole body, sized at once when its length is given. A reply of unknown
// length (a Go server, btcwallet, sends a long one chunked) is read in pieces and joined once, at
// its size: grown by doubling, the buffer could hold twice the reply while it was read into
// entries, and three times while it was copied to grow.
func readReply(resp *http.Response) ([]byte, error) {
	if n := resp.ContentLength; n > 0 && n < 1<<30 {
		var buf bytes.Buffer
		buf.Grow(int(n) + bytes.MinRead)
		_, err := buf.ReadFrom(resp.Body)
		return buf.Bytes(), err
	}
	var pieces [][]byte
	for size := 16 << 10; ; size = min(2*size, 4<<20) {
		// Not io.ReadFull: it reports the end of the body inside a piece as io.ErrUnexpectedEOF,
		// which is also what a chunked reply cut short on its way reads as.
		piece, n := make([]byte, size), 0
		var err error
		for n < size && err == nil {
			var k int
			k, err = resp.Body.Read(piece[n:])
			n += k
		}
		if n > 0 {
			pieces = append(pieces, piece[:n])
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return bytes.Join(pieces, nil), err
		}
	}
	if len(pieces) == 1 {
		return pieces[0], nil
	}
	return bytes.Join(pieces, nil), nil
}

// cutShort says whether body ends before the JSON value it starts, as a reply cut off on its way
// does; a reply that is whole but wrong is not. Only called once a reply has failed to parse.
func cutShort(body []byte) bool {
	err := json.NewDecoder(bytes.NewReader(body)).Decode(new(json.RawMessage))
	return errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF)
}

// visitObject calls field for each key of the object v; null is an object without keys.
func visitObject(v *fastjson.Value, field func(key []byte, f *fastjson.Value) error) error {
	if v.Type() == fastjson.TypeNull {
		return nil
	}
	o, err := v.Object()
	if err != nil {
		return fmt.Errorf("is a JSON %s, not an object", v.Type())
	}
	var ferr error
	o.Visit(func(key []byte, f *fastjson.Value) {
		if ferr != nil {
			return
		}
		if err := field(key, f); err != nil {
			ferr = fmt.Errorf("%s: %w", key, err)
		}
	})
	return ferr
}

// decodeEntries reads the valid JSON array at b[at] into dst, parsing one element at a time with
// p, each with its decodeJSON, and returns where the array ends; null leaves dst nil.
func decodeEntries[T any, P interface {
	*T
	listResult
}](p *fastjson.Parser, b []byte, at int, dst *[]T) (int, error) {
	*dst = nil
	items, end, err := arrayItems(b, at)
	if err != nil || isNull(b, skipSpace(b, at)) {
		return end, err
	}
	out := make([]T, len(items))
	for i, it := range items {
		// Each entry's tree replaces the one before in p.
		v, err := p.ParseBytes(b[it.start:it.end])
		if err == nil {
			err = P(&out[i]).decodeJSON(v)
		}
		if err != nil {
			return end, fmt.Errorf("entry %d: %w", i, err)
		}
	}
	*dst = out
	return end, nil
}

// decodeArray reads the array v into dst, each element with its decodeJSON; null leaves dst nil.
func decodeArray[T any, P interface {
	*T
	listResult
}](v *fastjson.Value, dst *[]T) error {
	return decodeArrayOf(v, dst, func(item *fastjson.Value, t *T) error { return P(t).decodeJSON(item) })
}

// decodeArrayOf reads the array v into dst, each element with elem; null leaves dst nil.
func decodeArrayOf[T any](v *fastjson.Value, dst *[]T, elem func(*fastjson.Value, *T) error) error {
	if v.Type() == fastjson.TypeNull {
		return nil
	}
	items, err := v.Array()
	if err != nil {
		return fmt.Errorf("is a JSON %s, not an array", v.Type())
	}
	out := make([]T, len(items))
	for i, item := range items {
		if err := elem(item, &out[i]); err != nil {
			return fmt.Errorf("entry %d: %w", i, err)
		}
	}
	*dst = out
	return nil
}

func jsonString(v *fastjson.Value, dst *string) error {
	switch v.Type() {
	case fastjson.TypeNull:
		return nil
	case fastjson.TypeString:
		b, err := v.StringBytes()
		*dst = string(b)
		return err
	}
	return fmt.Errorf("is a JSON %s, not a string", v.Type())
}

func jsonInt64(v *fastjson.Value, dst *int64) error {
	switch v.Type() {
	case fastjson.TypeNull:
		return nil
	case fastjson.TypeNumber:
		n, err := v.Int64()
		if err != nil {
			return fmt.Errorf("is not a whole number: %w", err)
		}
		*dst = n
		return nil
	}
	return fmt.Errorf("is a JSON %s, not a number", v.Type())
}

func jsonInt32(v *fastjson.Value, dst *int32) error {
	if v.Type() == fastjson.TypeNull {
		return nil
	}
	var n int64
	if err := jsonInt64(v, &n); err != nil {
		return err
	}
	if n < math.MinInt32 || n > math.MaxInt32 {
		return fmt.Errorf("%d is out of range", n)
	}
	*dst = int32(n)
	return nil
}

// jsonNumber keeps a number's text, as json.Number does with UseNumber; amounts are parsed from
// it exactly (see Client.amount), which also refuses text that is not a decimal.
func jsonNumber(v *fastjson.Value, dst *json.Number) error {
	switch v.Type() {
	case fastjson.TypeNull:
		return nil
	case fastjson.TypeNumber:
		*dst = json.Number(v.MarshalTo(nil))
		return nil
	}
	return fmt.Errorf("is a JSON %s, not a number", v.Type())
}

// field reads key when it is one of a detail's keys, and skips any other.
func (d *detail) field(key []byte, v *fastjson.Value) error {
	switch string(key) {
	case "address":
		return jsonString(v, &d.Address)
	case "category":
		return jsonString(v, &d.Category)
	case "amount":
		return jsonNumber(v, &d.Amount)
	case "vout":
		return jsonInt32(v, &d.Vout)
	}
	return nil
}

func (d *detail) decodeJSON(v *fastjson.Value) error {
	return visitObject(v, d.field)
}

func (t *walletTx) decodeJSON(v *fastjson.Value) error {
	return visitObject(v, func(key []byte, f *fastjson.Value) error {
		switch string(key) {
		case "txid":
			return jsonString(f, &t.TxID)
		case "confirmations":
			return jsonInt32(f, &t.Confirmations)
		case "blockhash":
			return jsonString(f, &t.BlockHash)
		case "fee":
			return jsonNumber(f, &t.Fee)
		case "details":
			return decodeArray(f, &t.Details)
		case "hex":
			return jsonString(f, &t.Hex)
		case "blockheight":
			return jsonInt64(f, &t.WalletBlockHeight)
		}
		return t.detail.field(key, f)
	})
}

// walletTxs is a listtransactions result.
type walletTxs []walletTx

func (w *walletTxs) decodeStream(p *fastjson.Parser, b []byte, at int) (int, error) {
	return decodeEntries(p, b, at, (*[]walletTx)(w))
}

func (l *listing) decodeStream(p *fastjson.Parser, b []byte, at int) (int, error) {
	*l = listing{}
	return walkObject(b, at, func(key []byte, at int) (int, error) {
		switch string(key) {
		case "transactions":
			return decodeEntries(p, b, at, &l.Transactions)
		case "lastblock":
			v, end, err := parseValue(p, b, at)
			if err != nil {
				return end, err
			}
			return end, jsonString(v, &l.LastBlock)
		}
		return skipChecked(b, at)
	})
}

// sendEntry is a listtransactions entry as RecentSends reads it.
type sendEntry struct {
	detail
	TxID string
	Time int64
}

func (s *sendEntry) decodeJSON(v *fastjson.Value) error {
	return visitObject(v, func(key []byte, f *fastjson.Value) error {
		switch string(key) {
		case "txid":
			return jsonString(f, &s.TxID)
		case "time":
			return jsonInt64(f, &s.Time)
		}
		return s.detail.field(key, f)
	})
}

type sendEntries []sendEntry

func (s *sendEntries) decodeStream(p *fastjson.Parser, b []byte, at int) (int, error) {
	return decodeEntries(p, b, at, (*[]sendEntry)(s))
}

// stringList is a JSON array of strings: a page of hex block headers (getheaders).
type stringList []string

func (l *stringList) decodeJSON(v *fastjson.Value) error {
	return decodeArrayOf(v, (*[]string)(l), jsonString)
}
