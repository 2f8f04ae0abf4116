package walletnotify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/coder/websocket"
	"github.com/go-logr/logr"

	"github.com/cryptoassets/cryptoassets-operator/internal/backend/blockio"
	"github.com/cryptoassets/cryptoassets-operator/internal/backoff"
)

// blockIOMessage is what block.io's websocket and webhook send: a type (ping, address, account,
// new-transactions, ...) and for transactions data.txid.
type blockIOMessage struct {
	Status          string `json:"status"`
	Type            string `json:"type"`
	DeliveryAttempt int    `json:"delivery_attempt"`
	Data            struct {
		TxID         string `json:"txid"`
		ErrorMessage string `json:"error_message"`
	} `json:"data"`
}

// BlockIOWebsocket listens to block.io's notification stream (wss://n.block.io/): it subscribes
// with {"api_key": ..., "type": "account"}, ignores pings, and passes on the txid of every
// transaction message. It reconnects with backoff, and a stream silent for IdleTimeout (block.io
// pings regularly) counts as lost. Connected runs a catch-up after every subscription: nothing
// said while disconnected is replayed.
type BlockIOWebsocket struct {
	URL         string
	APIKey      string
	IdleTimeout time.Duration
	Notify      Handler
	Connected   func()
	Health      func(error)
	Rejected    func(reason string)
	Log         logr.Logger
}

// Run listens until ctx ends.
func (s *BlockIOWebsocket) Run(ctx context.Context) error {
	if s.IdleTimeout <= 0 {
		s.IdleTimeout = 2 * time.Minute
	}
	wait := backoff.New(time.Minute)
	for ctx.Err() == nil {
		began := time.Now()
		err := s.session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if time.Since(began) > s.IdleTimeout {
			wait.Reset() // it was up for a while: this is a new outage, not the same one
		}
		d := wait.Next()
		s.health(err)
		s.Log.Error(err, "block.io websocket lost; reconnecting", "in", d)
		backoff.Sleep(ctx, d)
	}
	return nil
}

func (s *BlockIOWebsocket) session(ctx context.Context) error {
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	conn, _, err := websocket.Dial(dctx, s.URL, nil)
	cancel()
	if err != nil {
		return fmt.Errorf("connecting to %s: %w", s.URL, err)
	}
	defer conn.CloseNow()
	conn.SetReadLimit(64 << 10)
	sub, _ := json.Marshal(map[string]string{"api_key": s.APIKey, "type": "account"})
	if err := conn.Write(ctx, websocket.MessageText, sub); err != nil {
		return fmt.Errorf("subscribing: %w", err)
	}
	subscribed := false
	for {
		rctx, cancel := context.WithTimeout(ctx, s.IdleTimeout)
		_, raw, err := conn.Read(rctx)
		idle := rctx.Err() != nil && ctx.Err() == nil
		cancel()
		if err != nil {
			if idle {
				return fmt.Errorf("no message from block.io in %s", s.IdleTimeout)
			}
			return fmt.Errorf("reading: %w", err)
		}
		var m blockIOMessage
		if err := json.Unmarshal(raw, &m); err != nil {
			s.reject("message is not JSON: " + truncate(string(raw)))
			continue
		}
		switch {
		case m.Status == "fail":
			// A wrong API key: reconnecting soon will not help, but the backoff keeps it gentle.
			return fmt.Errorf("block.io refused the subscription: %s", m.Data.ErrorMessage)
		case m.Type == "ping":
		case m.Data.TxID != "":
			txid, err := ParseTxID(m.Data.TxID)
			if err != nil {
				s.reject(err.Error())
				continue
			}
			if err := s.Notify(ctx, txid); err != nil && ctx.Err() == nil {
				s.Log.Error(err, "notification not processed yet", "txid", txid)
			}
		case m.Status == "success" && !subscribed:
			subscribed = true
			s.health(nil)
			s.Log.Info("subscribed to block.io notifications", "url", s.URL)
			if s.Connected != nil {
				s.Connected()
			}
		case m.Status == "success":
		default:
			s.Log.V(1).Info("block.io message ignored", "type", m.Type)
		}
	}
}

func (s *BlockIOWebsocket) health(err error) {
	if s.Health != nil {
		s.Health(err)
	}
}

func (s *BlockIOWebsocket) reject(reason string) {
	s.Log.Info("ignored a block.io message", "reason", reason)
	if s.Rejected != nil {
		s.Rejected(reason)
	}
}

// Registrar is the part of the block.io client the webhook needs.
type Registrar interface {
	Notifications(ctx context.Context) ([]blockio.Notification, error)
	CreateNotification(ctx context.Context, url string) (blockio.Notification, error)
	DeleteNotification(ctx context.Context, id string) error
}

// BlockIOWebhook takes block.io's webhook posts at the path of PublicURL (which should hold a
// secret: block.io does not sign its posts) and registers that URL for new-transactions
// notifications. Only the active helper runs it, so two instances never fight over the
// registration: it reuses one already there for its URL, leaves other URLs alone, and removes its
// own when it stops, for the next active helper to register again.
type BlockIOWebhook struct {
	PublicURL string
	Registrar Registrar
	Notify    Handler
	Health    func(error)
	Rejected  func(reason string)
	Log       logr.Logger

	path string
}

// Handler serves the webhook.
func (s *BlockIOWebhook) Handler() (http.Handler, error) {
	u, err := url.Parse(s.PublicURL)
	if err != nil {
		return nil, fmt.Errorf("block.io webhook URL: %w", err)
	}
	s.path = strings.TrimRight(u.Path, "/")
	if s.path == "" {
		return nil, errNoPath
	}
	return http.HandlerFunc(s.serve), nil
}

func (s *BlockIOWebhook) serve(w http.ResponseWriter, r *http.Request) {
	if strings.TrimRight(r.URL.Path, "/") != s.path {
		// Not the secret path: say nothing about what is here.
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodPost {
		http.Error(w, "block.io webhooks are POSTs", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 64<<10))
	if err != nil {
		s.bad(w, "body larger than 64 KiB")
		return
	}
	var m blockIOMessage
	if err := json.Unmarshal(body, &m); err != nil {
		s.bad(w, "body is not JSON")
		return
	}
	switch {
	case m.Type == "":
		s.bad(w, "no type in the body")
		return
	case m.Type == "ping":
		w.WriteHeader(http.StatusOK)
		return
	}
	txid, err := ParseTxID(m.Data.TxID)
	if err != nil {
		s.bad(w, "data.txid: "+err.Error())
		return
	}
	if m.DeliveryAttempt > 1 {
		s.Log.Info("block.io webhook delivered on a later attempt", "attempt", m.DeliveryAttempt, "txid", txid)
	}
	if err := s.Notify(r.Context(), txid); err != nil {
		// 503 asks block.io to deliver again; the poll catches up anyway.
		http.Error(w, "notification accepted but not processed yet: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	w.WriteHeader(http.StatusOK)
}

func (s *BlockIOWebhook) bad(w http.ResponseWriter, reason string) {
	if s.Rejected != nil {
		s.Rejected(reason)
	}
	http.Error(w, reason, http.StatusBadRequest)
}

// Register keeps the webhook registered until ctx ends, then removes the registration. Failures
// to register are retried with backoff and reported to Health.
func (s *BlockIOWebhook) Register(ctx context.Context) error {
	var id string
	wait := backoff.New(time.Minute)
	for id == "" && ctx.Err() == nil {
		var err error
		id, err = s.register(ctx)
		if err == nil {
			break
		}
		if s.Health != nil {
			s.Health(err)
		}
		d := wait.Next()
		s.Log.Error(err, "registering the block.io webhook; retrying", "in", d)
		backoff.Sleep(ctx, d)
	}
	if id == "" {
		return nil
	}
	if s.Health != nil {
		s.Health(nil)
	}
	<-ctx.Done()
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := s.Registrar.DeleteNotification(dctx, id); err != nil {
		return fmt.Errorf("removing the block.io webhook registration %s: %w", id, err)
	}
	s.Log.Info("removed the block.io webhook registration", "id", id)
	return nil
}

func (s *BlockIOWebhook) register(ctx context.Context) (string, error) {
	existing, err := s.Registrar.Notifications(ctx)
	if err != nil {
		return "", err
	}
	for _, n := range existing {
		if n.URL == s.PublicURL && (n.Type == "" || n.Type == "new-transactions") {
			s.Log.Info("block.io webhook already registered", "id", n.ID)
			return n.ID, nil
		}
	}
	n, err := s.Registrar.CreateNotification(ctx, s.PublicURL)
	if err != nil {
		return "", err
	}
	s.Log.Info("registered the block.io webhook", "id", n.ID)
	return n.ID, nil
}

// errNoPath refuses a webhook at the root: anyone who guessed it could post wake-ups (harmless to
// the ledger, but a cheap way to make the helper busy).
var errNoPath = errors.New("the block.io webhook URL needs a secret path, e.g. https://pay.example.com/blockio/4f9c2e...")
