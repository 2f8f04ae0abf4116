package walletnotify

import (
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"testing"

	"github.com/go-logr/logr/testr"
)

// What bitcoind runs for every wallet transaction, with the real curl, and the refusals.
func TestHTTPHookWithCurl(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatal("curl not installed (`make test` installs it):", err)
	}
	s := &sink{}
	srv := httptest.NewServer(NewHTTP("hook-token", s.notify, testr.New(t)))
	defer srv.Close()
	txid := randomTxID(t)
	out, err := exec.Command("curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--data", "txid="+txid, srv.URL+"/?token=hook-token").CombinedOutput()
	if err != nil || string(out) != "200" {
		t.Fatalf("curl: %v %s", err, out)
	}
	for _, tc := range []struct {
		name, url, contentType, body, header string
		code                                 int
		reason                               string
	}{
		{"wrong token", "/?token=nope", "application/x-www-form-urlencoded", "txid=" + txid, "", http.StatusUnauthorized, "token"},
		{"no token", "/", "application/x-www-form-urlencoded", "txid=" + txid, "", http.StatusUnauthorized, "token"},
		{"empty", "/?token=hook-token", "application/x-www-form-urlencoded", "", "", http.StatusBadRequest, "no txid"},
		{"non-hex", "/?token=hook-token", "application/x-www-form-urlencoded", "txid=" + strings.Repeat("zz", 32), "", http.StatusBadRequest, "64 hex digits"},
		{"short", "/?token=hook-token", "application/x-www-form-urlencoded", "txid=abcd", "", http.StatusBadRequest, "64 hex digits"},
		{"oversized", "/?token=hook-token", "application/x-www-form-urlencoded", "txid=" + strings.Repeat("a", 5000), "", http.StatusBadRequest, ""},
		{"garbage JSON", "/?token=hook-token", "application/json", `{"txid":`, "", http.StatusBadRequest, "not JSON"},
		{"JSON, header token", "/", "application/json", `{"txid":"` + txid + `"}`, "hook-token", http.StatusOK, ""},
	} {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+tc.url, strings.NewReader(tc.body))
		req.Header.Set("Content-Type", tc.contentType)
		if tc.header != "" {
			req.Header.Set(TokenHeader, tc.header)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		buf := make([]byte, 512)
		n, _ := resp.Body.Read(buf)
		b.Write(buf[:n])
		resp.Body.Close()
		if resp.StatusCode != tc.code || !strings.Contains(b.String(), tc.reason) {
			t.Errorf("%s: %d %q, want %d with %q", tc.name, resp.StatusCode, b.String(), tc.code, tc.reason)
		}
	}
	if got, _, _, _ := s.snapshot(); len(got) != 2 || got[0] != txid || got[1] != txid {
		t.Fatalf("passed on %v, want the two good ones", got)
	}
}
