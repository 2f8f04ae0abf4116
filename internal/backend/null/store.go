package null

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// PGStore keeps the simulator's state in one row of the ledger database, so a restarted helper
// finds the payments it booked still in its simulated wallet. The table is the simulator's, not
// the ledger's: it is created here rather than by the ledger's migrations.
type PGStore struct {
	Pool  *pgxpool.Pool
	Asset string
}

// Load reads the saved state; nil when there is none.
func (s PGStore) Load(ctx context.Context) ([]byte, error) {
	if _, err := s.Pool.Exec(ctx, `CREATE TABLE IF NOT EXISTS cryptoassets_null_backend (
		asset text PRIMARY KEY, state jsonb NOT NULL, updated_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return nil, err
	}
	var raw []byte
	err := s.Pool.QueryRow(ctx, `SELECT state FROM cryptoassets_null_backend WHERE asset = $1`, s.Asset).Scan(&raw)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	return raw, err
}

// Save writes the state.
func (s PGStore) Save(ctx context.Context, state []byte) error {
	_, err := s.Pool.Exec(ctx, `INSERT INTO cryptoassets_null_backend (asset, state) VALUES ($1, $2)
		ON CONFLICT (asset) DO UPDATE SET state = EXCLUDED.state, updated_at = now()`, s.Asset, state)
	return err
}
