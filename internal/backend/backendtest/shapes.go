package backendtest

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"sort"
	"strings"
	"testing"
)

// fieldPaths adds a JSON value's field paths (".data.txs[].txid") to out; an array contributes
// its first element.
func fieldPaths(prefix string, v any, out map[string]bool) {
	switch x := v.(type) {
	case map[string]any:
		for k, child := range x {
			out[prefix+"."+k] = true
			fieldPaths(prefix+"."+k, child, out)
		}
	case []any:
		if len(x) > 0 {
			fieldPaths(prefix+"[]", x[0], out)
		}
	}
}

// MissingFields lists the field paths of the recorded reply in file that the reply got lacks.
// The local stand-ins for block.io and blockchain.info are checked with it against replies
// recorded from the real services, so a stand-in cannot drift into a shape of its own.
func MissingFields(t *testing.T, file string, got []byte) []string {
	t.Helper()
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var want, have any
	if err := json.Unmarshal(raw, &want); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	if err := json.Unmarshal(got, &have); err != nil {
		t.Fatalf("reply compared with %s is not JSON: %v: %.200s", file, err, got)
	}
	wantPaths, havePaths := map[string]bool{}, map[string]bool{}
	fieldPaths("", want, wantPaths)
	fieldPaths("", have, havePaths)
	var missing []string
	for p := range wantPaths {
		if !havePaths[p] {
			missing = append(missing, p)
		}
	}
	sort.Strings(missing)
	return missing
}

// Fetch makes a request to a stand-in server and returns the reply body, for MissingFields.
func Fetch(t *testing.T, method, url, contentType, body string) []byte {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
