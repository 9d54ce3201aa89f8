package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestSighupReload runs otrbnc in this process and sends the process a
// real SIGHUP: the new client password and policy apply, attached clients
// stay, settings that need a restart are logged, and a broken file keeps
// the running configuration.
func TestSighupReload(t *testing.T) {
	dir := t.TempDir()
	listen := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	path := filepath.Join(dir, "config.toml")
	write := func(hash, level, policy, addr string) {
		t.Helper()
		conf := fmt.Sprintf("password_hash = %q\nlog_level = %q\nstate_dir = \"state\"\n[[listen]]\naddress = %q\n[[network]]\nname = \"t\"\naddress = \"irc+insecure://127.0.0.1:1\"\nnick = \"me\"\npolicy = %q\n", hash, level, addr, policy)
		if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(cheapHash(t, "old pw"), "info", "manual", listen)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var logs syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- runBouncer(ctx, stdio{in: strings.NewReader(""), out: &bytes.Buffer{}, err: &logs}, path, hupSignals)
	}()
	waitFor(t, "the listener", func() bool { return strings.Contains(logs.String(), "msg=listening") })

	first := login(t, listen, "old pw", "me", "t")
	first.expect(" 001 ")

	write(cheapHash(t, "new pw"), "debug", "opportunistic", "127.0.0.1:1")
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the reload", func() bool { return strings.Contains(logs.String(), "msg=\"configuration reloaded\" needs_restart=1") })
	if !strings.Contains(logs.String(), "setting=listen") {
		t.Errorf("the listener change is not reported as needing a restart:\n%s", logs.String())
	}

	login(t, listen, "new pw", "me2", "t").expect(" 001 ")
	login(t, listen, "old pw", "me3", "t").expect(" 464 ")
	first.send("PRIVMSG *otr :policy")
	first.expect(":*otr!", "opportunistic")
	// "otrbnc version" and "/msg *otr version" show the same version.
	first.send("PRIVMSG *otr :version")
	first.expect(":*otr!", "otrbnc "+versionString()+":")
	if !strings.Contains(logs.String(), "debug logging is on") {
		t.Errorf("log_level debug not applied:\n%s", logs.String())
	}

	// A broken file is reported and changes nothing.
	os.WriteFile(path, []byte("password_hash = \n"), 0o600)
	syscall.Kill(os.Getpid(), syscall.SIGHUP)
	waitFor(t, "the failed reload", func() bool {
		return strings.Contains(logs.String(), "reload failed; the running configuration stays in effect")
	})
	login(t, listen, "new pw", "me4", "t").expect(" 001 ")
	first.send("PING :alive")
	first.expect("PONG", "alive")

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("run: %v", err)
		}
	case <-time.After(testTimeout):
		t.Fatal("no graceful shutdown")
	}
}

// TestSchedulerThreads: one thread per network, never more than the
// runtime's default, never none.
func TestSchedulerThreads(t *testing.T) {
	for _, c := range []struct{ networks, available, want int }{
		{1, 2, 1}, {2, 2, 2}, {3, 2, 2}, {1, 16, 1}, {5, 16, 5}, {0, 4, 1}, {4, 1, 1},
	} {
		if got := schedulerThreads(c.networks, c.available); got != c.want {
			t.Errorf("schedulerThreads(%d, %d) = %d, want %d", c.networks, c.available, got, c.want)
		}
	}
}
