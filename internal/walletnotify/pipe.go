package walletnotify

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"

	"github.com/go-logr/logr"
)

// maxLine bounds one line in the pipe; a txid line is 65 bytes.
const maxLine = 4 << 10

// Pipe reads txids from a named pipe (FIFO), one per line, as written by bitcoind's
// `walletnotify=echo %s >> FIFO`. The FIFO is created owner-only and removed on shutdown. The
// reader holds the FIFO open for writing too, so writers coming and going never end the stream.
type Pipe struct {
	Path   string
	Notify Handler
	// Rejected is told about every line that is not a txid.
	Rejected func(reason string)
	Log      logr.Logger
}

// Run reads until ctx ends.
func (p *Pipe) Run(ctx context.Context) error {
	if err := makeFIFO(p.Path); err != nil {
		return err
	}
	defer os.Remove(p.Path)
	// O_RDWR: opening does not wait for a writer, and the last writer closing is not EOF.
	f, err := os.OpenFile(p.Path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("opening the walletnotify pipe %s: %w", p.Path, err)
	}
	go func() { <-ctx.Done(); f.Close() }()
	p.Log.Info("reading walletnotify pipe", "path", p.Path)
	r := bufio.NewReaderSize(f, maxLine)
	for {
		line, err := readLine(r)
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			p.reject(fmt.Sprintf("line longer than %d bytes", maxLine))
			continue
		}
		if err != nil {
			return fmt.Errorf("reading the walletnotify pipe %s: %w", p.Path, err)
		}
		if len(line) == 0 {
			continue
		}
		txid, err := ParseTxID(string(line))
		if err != nil {
			p.reject(err.Error())
			continue
		}
		if err := p.Notify(ctx, txid); err != nil && ctx.Err() == nil {
			// The poll timer catches up anyway.
			p.Log.Error(err, "notification not processed yet", "txid", txid)
		}
	}
}

func (p *Pipe) reject(reason string) {
	p.Log.Info("ignored a line in the walletnotify pipe", "reason", reason)
	if p.Rejected != nil {
		p.Rejected(reason)
	}
}

// readLine returns the next line without its newline. A line longer than the buffer is skipped
// through its end and reported as bufio.ErrBufferFull.
func readLine(r *bufio.Reader) ([]byte, error) {
	line, err := r.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		for errors.Is(err, bufio.ErrBufferFull) {
			_, err = r.ReadSlice('\n')
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, err
		}
		return nil, bufio.ErrBufferFull
	}
	if err != nil {
		return nil, err
	}
	return line[:len(line)-1], nil
}

// makeFIFO creates the FIFO, or takes over one left behind by a helper that died. Anything else
// at the path is refused rather than deleted.
func makeFIFO(path string) error {
	st, err := os.Lstat(path)
	switch {
	case err == nil && st.Mode()&fs.ModeNamedPipe != 0:
		if err := os.Chmod(path, 0o600); err != nil {
			return fmt.Errorf("walletnotify pipe %s: %w", path, err)
		}
		return nil
	case err == nil:
		return fmt.Errorf("walletnotify pipe %s: something that is not a named pipe is in the way (%s)", path, st.Mode().Type())
	case !errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("walletnotify pipe %s: %w", path, err)
	}
	// The umask can only take bits away from 0600; the chmod puts back any it took from the
	// owner. (Changing the umask instead would race with every other goroutine creating files.)
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		return fmt.Errorf("creating the walletnotify pipe %s: %w", path, err)
	}
	return os.Chmod(path, 0o600)
}
