package helper

import (
	"crypto/subtle"
	"html/template"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/cryptoassets/cryptoassets-operator/internal/config"
	"github.com/cryptoassets/cryptoassets-operator/internal/ledger"
)

// activity remembers what the status page reports that the ledger does not hold.
type activity struct {
	mu               sync.Mutex
	lastNotification time.Time
	lastTxID         string
	lastCatchUp      time.Time
	lastCatchUpErr   string
}

func (a *activity) notified(txid string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.lastNotification, a.lastTxID = time.Now().UTC(), txid
}

func (a *activity) caughtUp(err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.lastCatchUp = time.Now().UTC()
	a.lastCatchUpErr = ""
	if err != nil {
		a.lastCatchUpErr = err.Error()
	}
}

// statusAccounts is how many accounts the status page shows.
const statusAccounts = 100

// statusTemplate is rendered with html/template, which escapes every value: account names and
// error messages come from outside (the original status pages did not escape them).
var statusTemplate = template.Must(template.New("status").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>cryptoassets helper: {{if .Asset.Namespace}}{{.Asset.Namespace}}/{{end}}{{.Asset.Name}}</title>
<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2em .6em;text-align:left}.bad{color:#b00}</style>
</head><body>
<h1>{{if .Asset.Namespace}}{{.Asset.Namespace}}/{{end}}{{.Asset.Name}}: {{.Coin}} on {{.Asset.Network}}</h1>
<p>Wallet balance <b>{{.Balance}}</b>. Credit at {{.Asset.Confirmations}} confirmations, followed to {{.Asset.MaxTrackedConfirmations}}.</p>
<h2>Health</h2>
<table><tr><th>part</th><th>state</th><th>since</th></tr>
{{range .Health}}<tr><td>{{.Name}}</td><td{{if not .OK}} class="bad"{{end}}>{{.Message}}</td><td>{{.Since.Format "2006-01-02 15:04:05Z"}}</td></tr>{{end}}
</table>
<h2>Activity</h2>
<ul>
<li>Last notification: {{if .LastNotification.IsZero}}none yet{{else}}{{.LastNotification.Format "2006-01-02 15:04:05Z"}} ({{.LastTxID}}){{end}}</li>
<li>Last catch-up: {{if .LastCatchUp.IsZero}}none yet{{else}}{{.LastCatchUp.Format "2006-01-02 15:04:05Z"}}{{end}}{{with .LastCatchUpErr}} <span class="bad">{{.}}</span>{{end}}</li>
<li>Last broadcast: {{with .LastBroadcast}}#{{.ID}} {{.State}} {{.TxID}} opened {{.OpenedAt.Format "2006-01-02 15:04:05Z"}}{{with .LastError}} <span class="bad">{{.}}</span>{{end}}{{else}}none yet{{end}}</li>
</ul>
<h2>Accounts</h2>
<table><tr><th>id</th><th>name</th><th>balance</th></tr>
{{range .Accounts}}<tr><td>{{.ID}}</td><td>{{.Name}}</td><td>{{.Balance}}</td></tr>{{end}}
</table>
{{with .MoreAccountsAfter}}<p>The first {{len $.Accounts}} accounts. The API lists the rest: GET /v1/accounts?after={{.}}</p>{{end}}
<h2>Recent transactions</h2>
<table><tr><th>id</th><th>kind</th><th>state</th><th>amount</th><th>address</th><th>txid</th><th>confirmations</th><th>created</th></tr>
{{range .Transactions}}<tr><td>{{.ID}}</td><td>{{.Kind}}</td><td>{{.State}}</td><td>{{.Amount}}</td><td>{{.Address}}</td><td>{{.TxID}}</td><td>{{.Confirmations}}</td><td>{{.CreatedAt.Format "2006-01-02 15:04:05Z"}}</td></tr>{{end}}
</table>
</body></html>
`))

type statusHealth struct {
	Name string
	componentState
}

type statusAccount struct {
	ID            int64
	Name, Balance string
}

type statusTx struct {
	ID                                 int64
	Kind, State, Amount, Address, TxID string
	Confirmations                      int32
	CreatedAt                          time.Time
}

// statusHandler serves the HTML status page. Browsers cannot send bearer tokens, so it also takes
// HTTP Basic authentication with the API token as the password.
func statusHandler(cfg *config.Config, l *ledger.Ledger, h *health, act *activity, token string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok {
			_, got, _ = r.BasicAuth()
		}
		if subtle.ConstantTimeCompare([]byte(got), []byte(token)) != 1 {
			w.Header().Set("WWW-Authenticate", `Basic realm="cryptoassets status (password: the API token)"`)
			http.Error(w, "authentication required", http.StatusUnauthorized)
			return
		}
		ctx := r.Context()
		dec := l.Coin().Decimals
		data := struct {
			Asset                         config.Asset
			Coin, Balance                 string
			Health                        []statusHealth
			Accounts                      []statusAccount
			MoreAccountsAfter             int64 // the last account shown, when there are more than statusAccounts
			Transactions                  []statusTx
			LastBroadcast                 *ledger.BroadcastRecord
			LastNotification, LastCatchUp time.Time
			LastTxID, LastCatchUpErr      string
		}{Asset: cfg.Asset, Coin: l.Coin().Code}
		bal, err := l.WalletBalance(ctx)
		if err != nil {
			http.Error(w, "reading the ledger: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		data.Balance = bal.Format(dec)
		states, _ := h.snapshot()
		for name, st := range states {
			data.Health = append(data.Health, statusHealth{Name: name, componentState: st})
		}
		sort.Slice(data.Health, func(i, j int) bool { return data.Health[i].Name < data.Health[j].Name })
		// A page, not every account: a ledger with a customer per account has hundreds of
		// thousands.
		accounts, err := l.Accounts(ctx, ledger.Page{Limit: statusAccounts + 1})
		if err != nil {
			http.Error(w, "reading the ledger: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		if len(accounts) > statusAccounts {
			accounts = accounts[:statusAccounts]
			data.MoreAccountsAfter = accounts[statusAccounts-1].ID
		}
		for _, a := range accounts {
			data.Accounts = append(data.Accounts, statusAccount{ID: a.ID, Name: a.Name, Balance: a.Balance.Format(dec)})
		}
		txs, err := l.Transactions(ctx, ledger.TransactionFilter{Limit: 25})
		if err != nil {
			http.Error(w, "reading the ledger: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		for _, t := range txs {
			data.Transactions = append(data.Transactions, statusTx{ID: t.ID, Kind: t.Kind, State: t.State, Amount: t.Amount.Format(dec),
				Address: t.Address, TxID: t.TxID, Confirmations: t.Confirmations, CreatedAt: t.CreatedAt})
		}
		if data.LastBroadcast, err = l.LastBroadcast(ctx); err != nil {
			http.Error(w, "reading the ledger: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		act.mu.Lock()
		data.LastNotification, data.LastTxID, data.LastCatchUp, data.LastCatchUpErr = act.lastNotification, act.lastTxID, act.lastCatchUp, act.lastCatchUpErr
		act.mu.Unlock()
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
		if err := statusTemplate.Execute(w, data); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
	})
}
