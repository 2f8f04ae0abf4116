package ledger

import (
	"errors"
	"net"
	"syscall"

	"github.com/jackc/pgx/v5"
)

// connState is what one look at an idle connection's socket tells.
type connState int

const (
	// connUnknown: the socket cannot be looked at.
	connUnknown connState = iota
	// connQuiet: open, and nothing arrived while it sat idle.
	connQuiet
	// connClosed: the server closed it, or the network reset it.
	connClosed
	// connSpoke: the server sent something while it sat idle (a notice, a parameter's new
	// value, or the message that says it ends the session).
	connSpoke
)

// idleState peeks at the socket of an idle connection without waiting and without sending
// anything: the pool's way to find a connection the server ended while it sat idle (a restart)
// before it hands it out, for the price of one system call where a ping costs a round trip.
// pgx's own CheckConn does the same with a read that waits a millisecond, and is deprecated for
// Ping; this peek says more (closed, quiet or spoke) and lets the caller ping when it cannot
// tell. Bytes pgx has already read off the socket are not seen, and need not be: what the server
// sends to end a session comes after the connection went idle.
func idleState(c *pgx.Conn) connState {
	if c == nil || c.IsClosed() {
		return connUnknown
	}
	nc := c.PgConn().Conn()
	if t, ok := nc.(interface{ NetConn() net.Conn }); ok {
		// TLS (*tls.Conn): what arrives is the socket's as much as in the clear, a record the
		// server sent or its end of the stream.
		nc = t.NetConn()
	}
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return connUnknown
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return connUnknown
	}
	state := connUnknown
	var b [1]byte
	err = raw.Read(func(fd uintptr) bool {
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch {
		case n > 0:
			state = connSpoke
		case errors.Is(err, syscall.EAGAIN), errors.Is(err, syscall.EWOULDBLOCK):
			state = connQuiet
		case errors.Is(err, syscall.EINTR):
			state = connUnknown
		default:
			// No bytes and no error is the server's end of the stream; any other error
			// (a reset) leaves the socket no better.
			state = connClosed
		}
		return true // looked once: never wait for the socket to become readable
	})
	if err != nil {
		return connUnknown
	}
	return state
}
