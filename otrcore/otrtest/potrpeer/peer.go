package potrpeer

import (
	"bufio"
	"context"
	"crypto/dsa"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
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
type Event struct {
	Name string
	Args map[string]string
}

// Response is what the peer reported for one command.
type Response struct {
	Delivered bool   // recv: text for the user
	Text      string // recv: the delivered text
	Ignored   bool   // recv: consumed internally
	Out       []string
	OutTo     []string
	Events    []Event
	Values    map[string]string
}

// HasEvent reports whether an event called name occurred.
func (r *Response) HasEvent(name string) bool {
	for _, e := range r.Events {
		if e.Name == name {
			return true
		}
	}
	return false
}

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
type CommandError struct{ Command, Message string }

func (e *CommandError) Error() string {
	return fmt.Sprintf("potrpeer: %s: %s", e.Command, e.Message)
}

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
	opts   Options
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stderr tailBuffer
	lines  chan string
	exited chan struct{}
	quit   chan struct{}

	fingerprint string

	mu        sync.Mutex
	broken    error
	waitErr   error
	closeOnce sync.Once
	killOnce  sync.Once
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
	p := &Peer{opts: opts, lines: make(chan string), exited: make(chan struct{}), quit: make(chan struct{})}
	p.cmd = exec.CommandContext(ctx, opts.Python, "-c", script,
		"--account", opts.Account, "--mms", strconv.Itoa(opts.MaxMessageSize), "--key", key)
	p.cmd.Stderr = &p.stderr
	p.cmd.WaitDelay = 5 * time.Second
	p.cmd.Env = append(os.Environ(), "PYTHONDONTWRITEBYTECODE=1", "PYTHONUNBUFFERED=1")
	var err error
	if p.stdin, err = p.cmd.StdinPipe(); err != nil {
		return nil, fmt.Errorf("potrpeer: %w", err)
	}
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("potrpeer: %w", err)
	}
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("potrpeer: starting %s: %w", opts.Python, err)
	}
	go p.readLoop(stdout)
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

func (p *Peer) readLoop(stdout io.Reader) {
	r := bufio.NewReaderSize(stdout, 64*1024)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			break
		}
		select {
		case p.lines <- strings.TrimSuffix(line, "\n"):
		case <-p.quit:
		}
	}
	p.waitErr = p.cmd.Wait()
	close(p.exited)
}

// Fingerprint returns potr's own fingerprint, 40 lower-case hex digits.
func (p *Peer) Fingerprint() string { return p.fingerprint }

// Stderr returns the tail of the peer's standard error (Python tracebacks,
// potr's log warnings).
func (p *Peer) Stderr() string { return p.stderr.String() }

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
	p.closeOnce.Do(func() {
		p.mu.Lock()
		if p.broken == nil {
			p.broken = errors.New("potrpeer: peer closed")
			_, _ = io.WriteString(p.stdin, "quit\n")
		}
		p.mu.Unlock()
		p.stdin.Close()
		close(p.quit)
		select {
		case <-p.exited:
		case <-time.After(5 * time.Second):
			p.kill()
			<-p.exited
		}
	})
	return nil
}

func (p *Peer) kill() {
	p.killOnce.Do(func() {
		if p.cmd.Process != nil {
			_ = p.cmd.Process.Kill()
		}
	})
}

type rawWord string

func (p *Peer) do(ctx context.Context, name string, args ...any) (Response, error) {
	var b strings.Builder
	b.WriteString(name)
	for _, a := range args {
		b.WriteByte(' ')
		switch a := a.(type) {
		case string:
			if a == "" {
				b.WriteString("-")
			} else {
				b.WriteString(hex.EncodeToString([]byte(a)))
			}
		case rawWord:
			b.WriteString(string(a))
		}
	}
	if p.opts.Log != nil {
		p.opts.Log("potr> %s %q", name, args)
	}
	b.WriteByte('\n')
	return p.exchange(ctx, name, b.String())
}

func (p *Peer) exchange(ctx context.Context, name, line string) (Response, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.broken != nil {
		return Response{}, p.broken
	}
	if err := ctx.Err(); err != nil {
		return Response{}, fmt.Errorf("potrpeer: %s: %w", name, err)
	}
	stop := context.AfterFunc(ctx, p.kill)
	defer func() {
		if !stop() && p.broken == nil {
			p.broken = fmt.Errorf("potrpeer: peer killed: %w", context.Cause(ctx))
		}
	}()
	fail := func(err error) (Response, error) {
		p.broken = err
		p.kill()
		return Response{}, err
	}
	if line != "" {
		if _, err := io.WriteString(p.stdin, line); err != nil {
			return fail(fmt.Errorf("potrpeer: %s: writing to peer: %w; stderr: %s", name, err, p.stderr.String()))
		}
	}
	var resp Response
	for {
		var l string
		select {
		case l = <-p.lines:
		case <-p.exited:
			return fail(fmt.Errorf("potrpeer: %s: peer exited (%v); stderr: %s", name, p.waitErr, p.stderr.String()))
		case <-ctx.Done():
			return fail(fmt.Errorf("potrpeer: %s: %w", name, ctx.Err()))
		}
		if p.opts.Log != nil {
			p.opts.Log("potr< %.300s", l)
		}
		words := strings.Split(l, " ")
		switch words[0] {
		case "ok":
			return resp, nil
		case "err":
			return resp, &CommandError{Command: name, Message: strings.TrimPrefix(strings.TrimPrefix(l, "err"), " ")}
		}
		if err := parseLine(&resp, words); err != nil {
			return fail(fmt.Errorf("potrpeer: %s: %w in %.80q", name, err, l))
		}
	}
}

func decodeField(s string) (string, error) {
	if s == "-" {
		return "", nil
	}
	b, err := hex.DecodeString(s)
	if err != nil || s == "" {
		return "", errors.New("bad hex field")
	}
	return string(b), nil
}

func decodeKV(m map[string]string, words []string) error {
	for _, w := range words {
		k, v, ok := strings.Cut(w, "=")
		b, err := hex.DecodeString(v)
		if !ok || k == "" || err != nil {
			return errors.New("bad key=value word")
		}
		m[k] = string(b)
	}
	return nil
}

func parseLine(r *Response, words []string) error {
	switch words[0] {
	case "out":
		if len(words) != 3 {
			return errors.New("malformed out line")
		}
		to, err1 := decodeField(words[1])
		msg, err2 := decodeField(words[2])
		if err := errors.Join(err1, err2); err != nil {
			return err
		}
		r.Out, r.OutTo = append(r.Out, msg), append(r.OutTo, to)
	case "event":
		if len(words) < 2 {
			return errors.New("malformed event line")
		}
		e := Event{Name: words[1], Args: map[string]string{}}
		if err := decodeKV(e.Args, words[2:]); err != nil {
			return err
		}
		r.Events = append(r.Events, e)
	case "msg":
		if len(words) != 2 {
			return errors.New("malformed msg line")
		}
		text, err := decodeField(words[1])
		if err != nil {
			return err
		}
		r.Delivered, r.Text = true, text
	case "ignored":
		r.Ignored = true
	case "val":
		if r.Values == nil {
			r.Values = map[string]string{}
		}
		return decodeKV(r.Values, words[1:])
	default:
		return errors.New("unexpected line from peer")
	}
	return nil
}

// tailBuffer keeps the last few KiB written to it.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (t *tailBuffer) Write(b []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, b...)
	if len(t.buf) > 8<<10 {
		t.buf = append(t.buf[:0:0], t.buf[len(t.buf)-8<<10:]...)
	}
	return len(b), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}
