package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"otrbnc/proxy/config"
)

// DefaultAuthFailDelay is the pause after a wrong client password.
const DefaultAuthFailDelay = time.Second

// Options are the run-time dependencies of a Server that do not come from
// the configuration file.
type Options struct {
	// Logger receives all logs; nil discards them. Message plaintext is
	// never logged.
	Logger *slog.Logger
	// Identities provides each network's OTR key, instance tag and trust
	// store (KeystoreIdentities). It is required: otrbnc never falls back
	// to throwaway keys.
	Identities Identities
	// Now is the clock driving OTR timers; nil means time.Now.
	Now func() time.Time
	// TickInterval is how often OTR timers run; 0 means 5 seconds.
	TickInterval time.Duration
	// AuthFailDelay slows down password guessing; 0 means none.
	AuthFailDelay time.Duration
	// ShutdownTimeout bounds the final flush; 0 means 5 seconds.
	ShutdownTimeout time.Duration
	// Version is otrbnc's version as "*otr version" shows it; empty means
	// "devel".
	Version string
	// StateDir is where the *otr settings of each network are saved
	// (settings-NETWORK.json); empty means the configuration's
	// state_dir. With neither, settings last until otrbnc stops.
	StateDir string
	// FreeOSMemory gives the memory the Go runtime freed back to the
	// system; a network calls it after a large drop of its peer state, at
	// most once a minute for the whole server (osmem.go). nil means
	// runtime/debug.FreeOSMemory in a goroutine of its own.
	FreeOSMemory func()
}

// Server is a running otrbnc: listeners plus one owner goroutine per
// network.
type Server struct {
	cfg          *config.Config
	opts         Options
	logger       *slog.Logger
	networks     []*network
	nextClientID atomic.Uint64
	// unauthenticated counts clients that have not logged in yet.
	unauthenticated atomic.Int64
	reload          reloadState // see Reload (reload.go)
	osFree          osFreer     // see osmem.go

	mu        sync.Mutex
	listeners []net.Listener
}

// NewServer checks cfg and prepares a Server; nothing runs until Serve.
func NewServer(cfg *config.Config, opts Options) (*Server, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.TickInterval <= 0 {
		opts.TickInterval = 5 * time.Second
	}
	if opts.Version == "" {
		opts.Version = "devel"
	}
	if opts.ShutdownTimeout <= 0 {
		opts.ShutdownTimeout = 5 * time.Second
	}
	if opts.Identities == nil {
		return nil, errors.New("proxy: no identity store (Options.Identities); otrbnc never uses throwaway keys")
	}
	if len(cfg.Network) == 0 {
		return nil, errors.New("no network configured")
	}
	if opts.FreeOSMemory == nil {
		opts.FreeOSMemory = freeOSMemoryAsync
	}
	s := &Server{cfg: cfg, opts: opts, logger: opts.Logger, osFree: osFreer{free: opts.FreeOSMemory}}
	for i := range cfg.Network {
		n, err := newNetwork(s, cfg.Network[i])
		if err != nil {
			return nil, err
		}
		s.networks = append(s.networks, n)
	}
	return s, nil
}

// Listen opens the configured listeners. Call it before Serve to learn
// the addresses (Addrs), or let Serve call it.
func (s *Server) Listen() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.listeners) > 0 {
		return nil
	}
	for _, lc := range s.cfg.Listen {
		ln, err := net.Listen("tcp", lc.Address)
		if err != nil {
			for _, l := range s.listeners {
				l.Close()
			}
			s.listeners = nil
			return fmt.Errorf("listening on %s: %w", lc.Address, err)
		}
		if lc.TLSCert != "" {
			cert, err := tls.LoadX509KeyPair(lc.TLSCert, lc.TLSKey)
			if err != nil {
				ln.Close()
				for _, l := range s.listeners {
					l.Close()
				}
				s.listeners = nil
				return fmt.Errorf("loading TLS certificate for %s: %w", lc.Address, err)
			}
			ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
		}
		s.listeners = append(s.listeners, ln)
	}
	return nil
}

// Addrs returns the listening addresses (after Listen).
func (s *Server) Addrs() []net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []net.Addr
	for _, l := range s.listeners {
		out = append(out, l.Addr())
	}
	return out
}

// Serve runs until ctx is cancelled, then shuts down gracefully: encrypted
// peers get OTR "disconnected", queued output is flushed, connections are
// closed.
func (s *Server) Serve(ctx context.Context) error {
	if err := s.Listen(); err != nil {
		return err
	}
	var wg sync.WaitGroup
	netCtx, cancelNets := context.WithCancel(context.Background())
	defer cancelNets()
	for _, n := range s.networks {
		wg.Go(func() { n.run(netCtx) })
	}
	clientCtx, cancelClients := context.WithCancel(context.Background())
	var cwg sync.WaitGroup
	s.mu.Lock()
	lns := append([]net.Listener(nil), s.listeners...)
	s.mu.Unlock()
	for _, ln := range lns {
		s.logger.Info("listening", "addr", ln.Addr().String())
		wg.Go(func() { s.acceptLoop(clientCtx, ln, &cwg) })
	}
	<-ctx.Done()
	s.logger.Info("shutting down")
	for _, ln := range lns {
		ln.Close()
	}
	// Networks say goodbye first (OTR disconnects, ERROR to clients), then
	// client goroutines are released.
	cancelNets()
	wg.Wait()
	cancelClients()
	cwg.Wait()
	return nil
}

func (s *Server) acceptLoop(ctx context.Context, ln net.Listener, cwg *sync.WaitGroup) {
	for {
		nc, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			s.logger.Warn("accept failed", "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		cwg.Go(func() { s.downstreamLoop(ctx, nc) })
	}
}
