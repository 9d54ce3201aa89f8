package potrpeer

import (
	"context"
	"crypto/dsa"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"otrbnc/otrcore/otrtest/linepeer"
)

//go:embed peer.py
var script string

// Options configure a peer.
type Options struct {
	// Account is potr's account name; default "potr".
	Account string
	// Key is the peer's long-term DSA-1024 key; nil makes potr generate
	// one (slow).
	Key *dsa.PrivateKey
	// MaxMessageSize is potr's maximum message size; 0 never fragments.
	MaxMessageSize int
	// Python is the interpreter; empty means the one Require finds.
	Python string
	// Log, if set, receives a trace of the protocol (e.g. t.Logf).
	Log func(format string, args ...any)
}

// Event is one event line.
type Event = linepeer.Event

// Response is what the peer reported for one command.
type Response = linepeer.Response

// Status is potr's view of one context.
type Status struct {
	MsgState    string // "plaintext", "encrypted", "finished"
	Version     int    // 2 when encrypted, else 0
	Fingerprint string // their fingerprint, 40 hex digits
	SSID        []byte
	SMPProg     string // "", "ok", "cheated", "failed", "succeeded"
	SMPState    string
}

// CommandError is an "err" answer; the peer stays usable.
type CommandError = linepeer.CommandError

var (
	findOnce   sync.Once
	foundPy    string
	findErrStr string
)

// Find returns a python3 that can import potr and pycryptodome. It tries
// $POTR_PYTHON, /usr/bin/python3 (Debian's packages are only visible to the
// system interpreter, not to a pyenv/venv python3 earlier in PATH), then
// python3 from PATH.
func Find() (string, error) {
	findOnce.Do(func() {
		var cands []string
		if p := os.Getenv("POTR_PYTHON"); p != "" {
			cands = append(cands, p)
		}
		cands = append(cands, "/usr/bin/python3")
		if p, err := exec.LookPath("python3"); err == nil {
			cands = append(cands, p)
		}
		var errs []string
		for _, c := range cands {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			out, err := exec.CommandContext(ctx, c, "-c", "import potr.context, Cryptodome.Cipher.AES").CombinedOutput()
			cancel()
			if err == nil {
				foundPy = c
				return
			}
			errs = append(errs, fmt.Sprintf("%s: %v %s", c, err, strings.TrimSpace(lastLine(string(out)))))
		}
		if len(errs) == 0 {
			errs = append(errs, "no python3 found")
		}
		findErrStr = "python3 with potr (Debian python3-potr) not found: " + strings.Join(errs, "; ")
	})
	if foundPy == "" {
		return "", errors.New(findErrStr)
	}
	return foundPy, nil
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

// Require returns the python path, or skips tb if python3 or potr is
// missing; under CI=true it fails tb instead.
func Require(tb testing.TB) string {
	tb.Helper()
	py, err := Find()
	if err != nil {
		if os.Getenv("CI") == "true" {
			tb.Fatalf("interop peer missing under CI=true: %v", err)
		}
		tb.Skip(err)
	}
	return py
}

// Peer is one running potr driver.
type Peer struct {
	opts        Options
	conn        *linepeer.Conn
	fingerprint string
}

// Start runs a peer. ctx bounds the process's lifetime. Call Close.
func Start(ctx context.Context, opts Options) (*Peer, error) {
	if opts.Account == "" {
		opts.Account = "potr"
	}
	if opts.MaxMessageSize < 0 || (opts.MaxMessageSize > 0 && opts.MaxMessageSize < 40) {
		return nil, fmt.Errorf("potrpeer: MaxMessageSize %d: want 0 or at least 40", opts.MaxMessageSize)
	}
	if opts.Python == "" {
		py, err := Find()
		if err != nil {
			return nil, err
		}
		opts.Python = py
	}
	key := "-"
	if k := opts.Key; k != nil {
		key = fmt.Sprintf("%x:%x:%x:%x:%x", k.P, k.Q, k.G, k.Y, k.X)
	}
	cmd := exec.CommandContext(ctx, opts.Python, "-c", script,
		"--account", opts.Account, "--mms", strconv.Itoa(opts.MaxMessageSize), "--key", key)
	cmd.Env = append(os.Environ(), "PYTHONDONTWRITEBYTECODE=1", "PYTHONUNBUFFERED=1")
	var logf func(string, ...any)
	if opts.Log != nil {
		logf = func(format string, args ...any) { opts.Log("potr "+format, args...) }
	}
	conn, err := linepeer.Start(cmd, "potrpeer", logf)
	if err != nil {
		return nil, err
	}
	p := &Peer{opts: opts, conn: conn}
	resp, err := p.exchange(ctx, "start", "")
	if err != nil {
		p.Close()
		return nil, err
	}
	p.fingerprint = resp.Values["fingerprint"]
	if len(p.fingerprint) != 40 {
		p.Close()
		return nil, fmt.Errorf("potrpeer: bad identity from peer: %v", resp.Values)
	}
	return p, nil
}

// Fingerprint returns potr's own fingerprint, 40 lower-case hex digits.
func (p *Peer) Fingerprint() string { return p.fingerprint }

// Stderr returns the tail of the peer's standard error (Python tracebacks,
// potr's log warnings).
func (p *Peer) Stderr() string { return p.conn.Stderr() }

// Recv passes a line received from `from` to potr.
func (p *Peer) Recv(ctx context.Context, from, line string) (Response, error) {
	return p.do(ctx, "recv", from, line)
}

// Send has potr send text to `to`. In the FINISHED state potr refuses, and
// Send returns a *CommandError.
func (p *Peer) Send(ctx context.Context, to, text string) (Response, error) {
	return p.do(ctx, "send", to, text)
}

// Query sends potr's default query message to `to`.
func (p *Peer) Query(ctx context.Context, to string) (Response, error) {
	return p.do(ctx, "query", to)
}

// End ends the private conversation with `to` (Context.disconnect).
func (p *Peer) End(ctx context.Context, to string) (Response, error) {
	return p.do(ctx, "end", to)
}

// SMPStart starts SMP with `to`; question may be empty.
func (p *Peer) SMPStart(ctx context.Context, to, secret, question string) (Response, error) {
	if question == "" {
		return p.do(ctx, "smp_start", to, secret)
	}
	return p.do(ctx, "smp_start", to, secret, question)
}

// SMPRespond answers an SMP request from `to`.
func (p *Peer) SMPRespond(ctx context.Context, to, secret string) (Response, error) {
	return p.do(ctx, "smp_respond", to, secret)
}

// SMPAbort aborts SMP with `to`.
func (p *Peer) SMPAbort(ctx context.Context, to string) (Response, error) {
	return p.do(ctx, "smp_abort", to)
}

// SetMaxMessageSize changes potr's maximum message size.
func (p *Peer) SetMaxMessageSize(ctx context.Context, n int) error {
	_, err := p.do(ctx, "mms", rawWord(strconv.Itoa(n)))
	return err
}

// Status returns potr's view of the context with `to`.
func (p *Peer) Status(ctx context.Context, to string) (Status, error) {
	r, err := p.do(ctx, "status", to)
	if err != nil {
		return Status{}, err
	}
	v := r.Values
	st := Status{MsgState: v["msgstate"], Fingerprint: v["fingerprint"], SMPProg: v["smp_prog"], SMPState: v["smp_state"]}
	st.Version, _ = strconv.Atoi(v["version"])
	if v["ssid"] != "" {
		if st.SSID, err = hex.DecodeString(v["ssid"]); err != nil {
			return st, fmt.Errorf("potrpeer: status: bad ssid")
		}
	}
	return st, nil
}

// Close asks the peer to exit and kills it if it does not. Safe to call
// more than once.
func (p *Peer) Close() error {
	p.conn.Close()
	return nil
}

type rawWord = linepeer.Raw

func (p *Peer) do(ctx context.Context, name string, args ...any) (Response, error) {
	return p.conn.Do(ctx, name, args...)
}

func (p *Peer) exchange(ctx context.Context, name, line string) (Response, error) {
	return p.conn.Exchange(ctx, name, line)
}
