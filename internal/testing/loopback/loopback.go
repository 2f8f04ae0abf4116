// Package loopback finds free ports on 127.0.0.1 for the servers tests start.
package loopback

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
)

// Ports come from below Linux's ephemeral range (32768-60999 by default), so no outgoing
// connection of another process takes one between FreePort and the server's bind, and each is
// handed out once per process: the kernel's port-0 choice can return the same port to two calls
// in a row, and two servers of one test were once given one port.
const (
	lowPort  = 20000
	highPort = 32767
)

// handedOut is process-wide on purpose: the ports are a process-wide (indeed machine-wide)
// resource, and every caller in this test process must see the same record.
var handedOut = struct {
	sync.Mutex
	ports map[int]bool
}{ports: map[int]bool{}}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago and that this process has
// not handed out before.
func FreePort() (int, error) { return FreePortOn("127.0.0.1") }

// FreePortOn is FreePort for another local address, such as a node's bridge.
func FreePortOn(host string) (int, error) {
	handedOut.Lock()
	defer handedOut.Unlock()
	for range 200 {
		port := lowPort + rand.IntN(highPort-lowPort+1)
		if handedOut.ports[port] {
			continue
		}
		l, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
		if err != nil {
			continue // someone listens there
		}
		l.Close()
		handedOut.ports[port] = true
		return port, nil
	}
	return 0, fmt.Errorf("no free port on %s found in 200 tries", host)
}

// Forward accepts connections on ln and copies each to and from target, until ln is closed.
// Tests use it to put a server that listens only on loopback where pods reach it, or to make a
// server appear and disappear on a fixed address.
func Forward(ln net.Listener, target string) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			u, err := net.Dial("tcp", target)
			if err != nil {
				return
			}
			defer u.Close()
			go func() { _, _ = io.Copy(u, c) }()
			_, _ = io.Copy(c, u)
		}()
	}
}
