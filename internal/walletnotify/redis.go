package walletnotify

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/go-logr/logr"
	"github.com/redis/go-redis/v9"

	"github.com/cryptoassets/cryptoassets-operator/internal/backoff"
)

// DefaultRedisChannel is the channel cryptoassets.core used: `redis-cli publish
// bitcoind_walletnotify_pubsub %s` in bitcoind's walletnotify.
const DefaultRedisChannel = "bitcoind_walletnotify_pubsub"

// Redis subscribes to a Redis channel whose messages are txids. Redis pub/sub keeps nothing for
// a subscriber that is away, so after every (re)subscription Connected runs a catch-up: whatever
// was published during the gap is found at the backend.
type Redis struct {
	Options *redis.Options
	Channel string
	Notify  Handler
	// Connected is called after every subscription, the first included.
	Connected func()
	// Health is told nil when subscribed and the error while not.
	Health   func(error)
	Rejected func(reason string)
	Log      logr.Logger
}

// Run subscribes until ctx ends, reconnecting with backoff.
func (s *Redis) Run(ctx context.Context) error {
	client := redis.NewClient(s.Options)
	defer client.Close()
	sub := client.Subscribe(ctx, s.Channel)
	// A blocked read does not watch ctx; closing the subscription ends it at once.
	stopped := make(chan struct{})
	defer close(stopped)
	go func() {
		select {
		case <-ctx.Done():
		case <-stopped:
		}
		_ = sub.Close()
	}()
	wait := backoff.New(30 * time.Second)
	for {
		// A bounded wait with a ping after it: a Redis that vanished without closing the
		// connection is noticed within a minute rather than never.
		msg, err := sub.ReceiveTimeout(ctx, 30*time.Second)
		if ctx.Err() != nil {
			return nil
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			if err := sub.Ping(ctx); err != nil && ctx.Err() == nil {
				s.Log.V(1).Info("redis ping failed", "error", err.Error())
			}
			continue
		}
		if err != nil {
			// go-redis drops the broken connection; the next Receive dials and subscribes again.
			d := wait.Next()
			err = fmt.Errorf("redis %s channel %s: %w", s.Options.Addr, s.Channel, err)
			s.health(err)
			s.Log.Error(err, "redis subscription lost; reconnecting", "in", d)
			if !backoff.Sleep(ctx, d) {
				return nil
			}
			continue
		}
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind == "subscribe" {
				wait.Reset()
				s.health(nil)
				s.Log.Info("subscribed to redis walletnotify channel", "address", s.Options.Addr, "channel", m.Channel)
				if s.Connected != nil {
					s.Connected()
				}
			}
		case *redis.Message:
			if len(m.Payload) > maxLine {
				s.reject(fmt.Sprintf("message of %d bytes", len(m.Payload)))
				continue
			}
			txid, err := ParseTxID(m.Payload)
			if err != nil {
				s.reject(err.Error())
				continue
			}
			if err := s.Notify(ctx, txid); err != nil && ctx.Err() == nil {
				s.Log.Error(err, "notification not processed yet", "txid", txid)
			}
		case *redis.Pong:
		default:
			s.Log.V(1).Info("unexpected redis message", "type", fmt.Sprintf("%T", msg))
		}
	}
}

func (s *Redis) health(err error) {
	if s.Health != nil {
		s.Health(err)
	}
}

func (s *Redis) reject(reason string) {
	s.Log.Info("ignored a redis walletnotify message", "reason", reason)
	if s.Rejected != nil {
		s.Rejected(reason)
	}
}
