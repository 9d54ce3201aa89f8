// Package linepeer is the client side of the line protocol that the OTR
// test peers (libotrpeer's C program, potrpeer's Python script) speak over
// their standard input and output.
//
// One command per line, words separated by single spaces; free-form
// arguments are hex-encoded ("-" for the empty string). Each response is a
// series of lines — "out TO MSG", "event NAME k=HEX…", "msg TEXT",
// "ignored", "val k=HEX…" — ended by exactly one "ok" or "err TEXT".
package linepeer

import (
	"bufio"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"time"
)

// MaxLine is the longest command line, in bytes without the newline, that
// the peers accept.
const MaxLine = 1 << 20

// Raw is a command argument sent as is (numbers, tags); string arguments
// are hex-encoded.
type Raw string

// Event is one callback or action the peer reported while a command ran.
type Event struct {
	// Name is the event's name (see the peer package's constants).
	Name string
	// Args holds the event's arguments, decoded (values may be binary).
	Args map[string]string
}

// String formats the event for logs.
func (e Event) String() string {
	keys := make([]string, 0, len(e.Args))
	for k := range e.Args {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString(e.Name)
	for _, k := range keys {
		fmt.Fprintf(&b, " %s=%q", k, e.Args[k])
	}
	return b.String()
}

// Response is everything the peer reported for one command, in the order it
// happened within each slice.
type Response struct {
	// Delivered is set by recv when the message is for the user; Text is
	// then what the user sees.
	Delivered bool
	// Ignored is set by recv when the OTR library consumed the message
	// internally (AKE, fragment, heartbeat, SMP, disconnect…).
	Ignored bool
	// Text is the delivered plaintext (recv only).
	Text string
	// Out holds every line the peer sent to the network, in order.
	Out []string
	// OutTo holds the recipient of each line in Out (same length).
	OutTo []string
	// Events holds what the OTR library reported, in order.
	Events []Event
	// Values holds the key/value results of status and identity queries.
	Values map[string]string
}

// EventsNamed returns the events called name, in order.
func (r *Response) EventsNamed(name string) []Event {
	var evs []Event
	for _, e := range r.Events {
		if e.Name == name {
			evs = append(evs, e)
		}
	}
	return evs
}

// HasEvent reports whether an event called name occurred.
func (r *Response) HasEvent(name string) bool {
	return len(r.EventsNamed(name)) > 0
}

// EventArgs returns argument key of every event called name, in order
// (for example the OtrlSMPEvent names of libotr's handle_smp_event).
func (r *Response) EventArgs(name, key string) []string {
	var vals []string
	for _, e := range r.EventsNamed(name) {
		vals = append(vals, e.Args[key])
	}
	return vals
}

// CommandError is returned when the peer answered a command with "err".
type CommandError struct {
	// Peer names the peer kind, e.g. "libotrpeer".
	Peer string
	// Command is the command word, e.g. "send".
	Command string
	// Message is the peer's error text.
	Message string
}

// Error formats the command and the peer's message.
func (e *CommandError) Error() string {
	return fmt.Sprintf("%s: %s: %s", e.Peer, e.Command, e.Message)
}

// Conn is a running peer process. Commands are serialized; a command whose
// context ends mid-way kills the process (the stream would be out of step),
// and every later command fails.
type Conn struct {
	name   string // error and log prefix, e.g. "libotrpeer"
	logf   func(format string, args ...any)
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  chan string
	quit   chan struct{}
	exited chan struct{}
	stderr tailBuffer

	waitErr   error
	mu        sync.Mutex // serializes commands; guards broken
	broken    error
	killOnce  sync.Once
	closeOnce sync.Once
}

// Start starts cmd (which must not be started yet, nor have its standard
// input, output or error set) and returns its connection. name prefixes
// errors and log lines; logf, if not nil, receives a readable trace.
func Start(cmd *exec.Cmd, name string, logf func(format string, args ...any)) (*Conn, error) {
	c := &Conn{name: name, logf: logf, cmd: cmd, lines: make(chan string), quit: make(chan struct{}), exited: make(chan struct{})}
	cmd.Stderr = &c.stderr
	if cmd.WaitDelay == 0 {
		cmd.WaitDelay = 5 * time.Second
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	c.stdin = stdin
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: starting %s: %w", name, cmd.Path, err)
	}
	go c.readLoop(stdout)
	return c, nil
}

func (c *Conn) readLoop(stdout io.Reader) {
	r := bufio.NewReaderSize(stdout, 64*1024)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			break
		}
		select {
		case c.lines <- strings.TrimSuffix(line, "\n"):
		case <-c.quit:
		}
	}
	c.waitErr = c.cmd.Wait()
	close(c.exited)
}

// Stderr returns the last few KiB the peer wrote to its standard error.
func (c *Conn) Stderr() string { return c.stderr.String() }

// Do sends one command and collects its response. Arguments are string
// (hex-encoded) or Raw (sent as is).
func (c *Conn) Do(ctx context.Context, name string, args ...any) (Response, error) {
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
		case Raw:
			b.WriteString(string(a))
		default:
			panic(fmt.Sprintf("%s: bad argument type %T", c.name, a))
		}
	}
	if b.Len() > MaxLine {
		return Response{}, fmt.Errorf("%s: %s: command line of %d bytes exceeds %d", c.name, name, b.Len(), MaxLine)
	}
	if c.logf != nil {
		var words []string
		for _, a := range args {
			words = append(words, short(fmt.Sprint(a)))
		}
		c.logf("%s> %s %q", c.name, name, words)
	}
	b.WriteByte('\n')
	return c.Exchange(ctx, name, b.String())
}

// Exchange writes line (if not empty; it must end in a newline) and reads
// the response up to "ok" or "err". With an empty line it only reads, as
// for the identity response a peer writes when it starts.
func (c *Conn) Exchange(ctx context.Context, name, line string) (Response, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.broken != nil {
		return Response{}, c.broken
	}
	if err := ctx.Err(); err != nil {
		return Response{}, fmt.Errorf("%s: %s: %w", c.name, name, err)
	}
	// If ctx ends mid-command the protocol stream is out of step: kill
	// the process, which also unblocks any pending write.
	stop := context.AfterFunc(ctx, c.kill)
	defer func() {
		if !stop() && c.broken == nil {
			c.broken = fmt.Errorf("%s: peer killed: %w", c.name, context.Cause(ctx))
		}
	}()
	fail := func(err error) (Response, error) {
		c.broken = err
		c.kill()
		return Response{}, err
	}
	if line != "" {
		if _, err := io.WriteString(c.stdin, line); err != nil {
			if ctx.Err() != nil {
				return fail(fmt.Errorf("%s: %s: %w", c.name, name, ctx.Err()))
			}
			return fail(fmt.Errorf("%s: %s: writing to peer: %w%s", c.name, name, err, c.stderrNote()))
		}
	}
	var resp Response
	for {
		var l string
		select {
		case l = <-c.lines:
		case <-c.exited:
			if ctx.Err() != nil {
				return fail(fmt.Errorf("%s: %s: %w", c.name, name, ctx.Err()))
			}
			return fail(fmt.Errorf("%s: %s: peer exited (%v)%s", c.name, name, c.waitErr, c.stderrNote()))
		case <-ctx.Done():
			return fail(fmt.Errorf("%s: %s: %w", c.name, name, ctx.Err()))
		}
		if c.logf != nil {
			c.logf("%s< %s", c.name, describe(l))
		}
		switch word, rest, _ := strings.Cut(l, " "); word {
		case "ok":
			return resp, nil
		case "err":
			return resp, &CommandError{Peer: c.name, Command: name, Message: rest}
		}
		if err := parseLine(&resp, l); err != nil {
			return fail(fmt.Errorf("%s: %s: %w", c.name, name, err))
		}
	}
}

// Close asks the peer to exit ("quit"), kills it if it does not within a
// few seconds, and waits for it. It is safe to call more than once.
func (c *Conn) Close() {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		if c.broken == nil {
			c.broken = fmt.Errorf("%s: peer closed", c.name)
			_, _ = io.WriteString(c.stdin, "quit\n")
		}
		c.mu.Unlock()
		c.stdin.Close()
		close(c.quit)
		select {
		case <-c.exited:
		case <-time.After(5 * time.Second):
			c.kill()
			<-c.exited
		}
	})
}

func (c *Conn) kill() {
	c.killOnce.Do(func() {
		if c.cmd.Process != nil {
			_ = c.cmd.Process.Kill()
		}
	})
}

func (c *Conn) stderrNote() string {
	if s := strings.TrimSpace(c.stderr.String()); s != "" {
		return "; stderr: " + s
	}
	return ""
}

// decodeField decodes a positional hex field ("-" is empty).
func decodeField(s string) (string, error) {
	if s == "-" {
		return "", nil
	}
	b, err := hex.DecodeString(s)
	if err != nil || s == "" {
		return "", fmt.Errorf("bad hex field %.40q", s)
	}
	return string(b), nil
}

// decodeKV decodes "key=hex" words into m.
func decodeKV(m map[string]string, words []string) error {
	for _, w := range words {
		k, v, ok := strings.Cut(w, "=")
		if !ok || k == "" {
			return fmt.Errorf("bad key=value word %.40q", w)
		}
		b, err := hex.DecodeString(v)
		if err != nil {
			return fmt.Errorf("bad hex value for %s", k)
		}
		m[k] = string(b)
	}
	return nil
}

// parseLine adds one response line (not "ok" or "err") to r.
func parseLine(r *Response, line string) error {
	words := strings.Split(line, " ")
	switch words[0] {
	case "out":
		if len(words) != 3 {
			return fmt.Errorf("malformed out line %.80q", line)
		}
		to, err1 := decodeField(words[1])
		msg, err2 := decodeField(words[2])
		if err := errors.Join(err1, err2); err != nil {
			return err
		}
		r.Out = append(r.Out, msg)
		r.OutTo = append(r.OutTo, to)
	case "event":
		if len(words) < 2 {
			return fmt.Errorf("malformed event line %.80q", line)
		}
		e := Event{Name: words[1], Args: map[string]string{}}
		if err := decodeKV(e.Args, words[2:]); err != nil {
			return err
		}
		r.Events = append(r.Events, e)
	case "msg":
		if len(words) != 2 {
			return fmt.Errorf("malformed msg line %.80q", line)
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
		return fmt.Errorf("unexpected line from peer %.80q", line)
	}
	return nil
}

// describe renders a response line readably for logs.
func describe(line string) string {
	words := strings.Split(line, " ")
	if len(words) == 0 || words[0] == "err" || words[0] == "ok" {
		return line
	}
	var b strings.Builder
	b.WriteString(words[0])
	for i, w := range words[1:] {
		b.WriteByte(' ')
		if words[0] == "event" && i == 0 {
			b.WriteString(w)
			continue
		}
		if k, v, ok := strings.Cut(w, "="); ok {
			if d, err := hex.DecodeString(v); err == nil {
				fmt.Fprintf(&b, "%s=%q", k, short(string(d)))
				continue
			}
		} else if d, err := decodeField(w); err == nil {
			fmt.Fprintf(&b, "%q", short(d))
			continue
		}
		b.WriteString(w)
	}
	return b.String()
}

// short truncates long values for logs.
func short(s string) string {
	const max = 240
	if len(s) <= max {
		return s
	}
	return fmt.Sprintf("%s...(%d bytes)", s[:max], len(s))
}

// tailBuffer keeps the last few KiB written to it.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
}

const tailMax = 8 << 10

// Write appends b, keeping only the last tailMax bytes.
func (t *tailBuffer) Write(b []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, b...)
	if len(t.buf) > tailMax {
		t.buf = append(t.buf[:0:0], t.buf[len(t.buf)-tailMax:]...)
	}
	return len(b), nil
}

// String returns the bytes kept.
func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}
