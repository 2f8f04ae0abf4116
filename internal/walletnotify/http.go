// Package walletnotify holds the sources that wake the helper when the backend sees a wallet
// transaction. A notification is only a txid to look up; nothing here books anything.
package walletnotify

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/go-logr/logr"

	"github.com/cryptoassets/cryptoassets-operator/internal/backend"
)

// TokenHeader carries the hook's token when the caller cannot put it in the URL.
const TokenHeader = "X-Cryptoassets-Token"

// maxBody bounds a notification: a txid in a form or JSON is well under 200 bytes.
const maxBody = 4 << 10

// NewHTTP returns the walletnotify HTTP hook, compatible with the original protocol:
//
//	walletnotify=curl --data "txid=%s" http://HELPER:28882/?token=TOKEN
//
// It also takes JSON {"txid": "..."}. With a token configured, requests without it get 401.
func NewHTTP(token string, notify func(context.Context, string) error, log logr.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			http.Error(w, "POST a txid", http.StatusMethodNotAllowed)
			return
		}
		if token != "" {
			got := r.URL.Query().Get("token")
			if got == "" {
				got = r.Header.Get(TokenHeader)
			}
			if subtle.ConstantTimeCompare([]byte(got), []byte(token)) != 1 {
				http.Error(w, "missing or wrong token", http.StatusUnauthorized)
				return
			}
		}
		txid, err := readTxID(w, r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
		defer cancel()
		if err := notify(ctx, txid); err != nil {
			log.Error(err, "handling a notification", "txid", txid)
			status := http.StatusInternalServerError
			if errors.Is(err, backend.ErrUnreachable) {
				status = http.StatusServiceUnavailable
			}
			// The poll timer catches up anyway; the caller need not retry.
			http.Error(w, "notification accepted but not processed yet: "+err.Error(), status)
			return
		}
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte("ok\n"))
	})
}

func readTxID(w http.ResponseWriter, r *http.Request) (string, error) {
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	var txid string
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	switch ct {
	case "application/json":
		var body struct {
			TxID string `json:"txid"`
		}
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			return "", fmt.Errorf("body is not JSON like {\"txid\": \"...\"}: %v", err)
		}
		txid = body.TxID
	default: // curl --data sends application/x-www-form-urlencoded
		if err := r.ParseForm(); err != nil {
			return "", fmt.Errorf("body is not a form like txid=...: %v", err)
		}
		txid = r.PostForm.Get("txid")
	}
	if strings.TrimSpace(txid) == "" {
		return "", errors.New("no txid in the body")
	}
	return ParseTxID(txid)
}

func truncate(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}
