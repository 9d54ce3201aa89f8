package proxy

import (
	"context"
	"strings"
	"testing"
	"time"

	"gopkg.in/irc.v4"

	"otrbnc/otrcore"
)

// TestServiceCommands runs every *otr command's happy path and its
// errors against an in-process peer.
func TestServiceCommands(t *testing.T) {
	t.Parallel()
	env, fn := startFakeNet(t, "", nil, Options{})
	bob := fn.addPeer("bob", testKey(t, 1), 0x2001)
	bobFP := testKey(t, 1).Fingerprint()
	ourFP := testKey(t, 0).Fingerprint()
	wrongFP := testKey(t, 2).Fingerprint()
	c := registerClient(t, env.addr, "alice")

	// Dispatcher errors.
	cmd(c, "bogus", `unknown command "bogus"`)
	cmd(c, "st bob", "ambiguous command \"st\": it could be start, status")
	cmd(c, "start", "usage: start <nick>")
	cmd(c, "start bob carol", "usage: start <nick>")
	cmd(c, `auth bob "open`, "unterminated quote")
	cmd(c, " ", "help")
	cmd(c, "HELP", "commands (any unique prefix")
	cmd(c, "help", "set [name] [value|unset] — show or change a setting: client_tags, fragment_size, marker, notify, whitespace_tags")
	cmd(c, "help trust", "usage: trust <nick> [fingerprint]")
	cmd(c, "help tru", "example: /msg *otr trust bob")
	cmd(c, "help nope", "unknown command")
	cmd(c, "vers", "otrbnc ")
	// Every command that needs arguments says how to use it.
	for _, sc := range serviceCommands() {
		if sc.minArgs > 0 {
			cmd(c, sc.name, "usage: "+sc.usage)
		}
	}

	// Unknown nicks.
	for _, line := range []string{"finish carol", "refresh carol", "auth carol s", "authq carol q a", "authabort carol", "release carol", "discard carol"} {
		cmd(c, line, "no conversation with carol")
	}
	for _, line := range []string{"trust carol", "fingerprint carol", "distrust carol"} {
		cmd(c, line, "no fingerprint known for carol")
	}
	cmd(c, "status carol", "[carol] no conversation; policy manual")
	cmd(c, "start #chan", `"#chan" is not a nick`)
	cmd(c, "start NickServ", "ignore list (*serv)")
	cmd(c, "start *status", `"*status" is not a nick`)
	cmd(c, "list", "no peers known yet")
	cmd(c, "status", "no private conversations")

	// A session.
	cmd(c, "start bob", "[bob] asking bob for a private conversation")
	c.expect("gone secure", serviceSays("private conversation with bob started (OTRv3, UNVERIFIED)"))
	m := c.expect("verification hint with both fingerprints", serviceSays("is not verified"))
	if !strings.Contains(m.Trailing(), ourFP.String()) || !strings.Contains(m.Trailing(), bobFP.String()) {
		t.Errorf("hint lacks a fingerprint: %q", m.Trailing())
	}
	bob.expectEvent(otrcore.EventGoneSecure)
	cmd(c, "status", "[bob] encrypted OTRv3, UNVERIFIED")
	cmd(c, "status bob", "[bob] fingerprint "+bobFP.String())
	cmd(c, "list", "[bob] encrypted OTRv3, UNVERIFIED; keys: "+bobFP.String()+" (not verified)")
	cmd(c, "fingerprint", "your fingerprint on test: "+ourFP.String())
	cmd(c, "fingerprint me", ourFP.String())
	cmd(c, "fp bob", "[bob] "+bobFP.String()+" not verified (current session)")
	cmd(c, "refresh bob", "renewing the session keys")
	c.expect("refreshed", serviceSays("[bob] private conversation refreshed"))

	// Trust: never blindly by nick, never a key bob did not present.
	cmd(c, "trust bob", "the key bob uses now is "+bobFP.String())
	c.expect("refusal", serviceSays("nothing was trusted: repeat the command with the fingerprint"))
	cmd(c, "trust bob "+wrongFP.String(), "is not the key bob uses")
	cmd(c, "trust bob 1234", "40 hexadecimal digits")
	cmd(c, "status bob", "UNVERIFIED")
	cmd(c, "trust BOB "+strings.ToLower(bobFP.Hex()), "is now trusted (verified by fingerprint)")
	cmd(c, "trust bob "+bobFP.String(), "already verified (by fingerprint)")
	cmd(c, "status bob", "encrypted OTRv3, verified")
	cmd(c, "distrust bob", bobFP.String()+" is no longer verified")
	cmd(c, "distrust bob", "nothing to do")
	cmd(c, "distrust "+wrongFP.String(), "unknown fingerprint")
	cmd(c, "trust bob "+bobFP.String(), "is now trusted")
	cmd(c, "distrust "+bobFP.String(), "["+bobFP.String()+"] "+bobFP.String()+" is no longer verified")

	// SMP started by us, answered by the peer with the same secret.
	cmd(c, "authabort bob", "no identity verification in progress")
	cmd(c, "auth bob our  shared secret", "verification started")
	ev := bob.expectEvent(otrcore.EventSMPRequest)
	if ev.HasQuestion {
		t.Errorf("auth sent a question")
	}
	bob.do(func(cv *otrcore.Conversation) (otrcore.Result, error) {
		return cv.RespondSMP(time.Now(), "our shared secret")
	})
	c.expect("verified", serviceSays("identity verified: fingerprint "+bobFP.String()+" of bob is now trusted"))
	cmd(c, "fingerprint bob", "by shared secret")
	// A failed run never un-verifies.
	cmd(c, "authq bob \"What is the colour of the sky?\" blue", "question sent")
	ev = bob.expectEvent(otrcore.EventSMPRequest)
	if ev.Question != "What is the colour of the sky?" {
		t.Errorf("question %q", ev.Question)
	}
	cmd(c, "status bob", "identity verification in progress")
	bob.do(func(cv *otrcore.Conversation) (otrcore.Result, error) { return cv.RespondSMP(time.Now(), "green") })
	c.expect("failure", serviceSays("identity verification FAILED: the secrets differ. The key stays verified (by shared secret)"))
	cmd(c, "status bob", "encrypted OTRv3, verified")
	// SMP started by the peer, with a question, answered with auth.
	bob.do(func(cv *otrcore.Conversation) (otrcore.Result, error) {
		return cv.StartSMP(time.Now(), "Our cat?", true, "Tom")
	})
	c.expect("SMP request", serviceSays(`bob wants to verify your identity and asks: "Our cat?"`))
	cmd(c, "status bob", `asks: "Our cat?"`)
	cmd(c, "auth bob Tom", "answer sent")
	c.expect("they verified us", serviceSays("bob verified your identity"))
	bob.expectEvent(otrcore.EventSMPSucceeded)
	// Abort.
	cmd(c, "auth bob x", "verification started")
	bob.expectEvent(otrcore.EventSMPRequest)
	cmd(c, "smpabort bob", "identity verification aborted")
	bob.expectEvent(otrcore.EventSMPAborted)
	cmd(c, "authq bob \"\" x", "the question is empty")

	// Policies.
	cmd(c, "policy", "default: manual (configuration file)")
	cmd(c, "policy bob always", "[bob] policy is now always")
	cmd(c, "policy bob", "[bob] policy always (policy bob)")
	cmd(c, "policy carol*  opportunistic", "[carol*] policy is now opportunistic")
	cmd(c, "policy CAROL2", "[CAROL2] policy opportunistic (policy carol*)")
	cmd(c, "policy known always", "[known] policy is now always")
	cmd(c, "policy default never", "[default] policy is now never")
	cmd(c, "policy dave", "[dave] policy never (policy default)")
	cmd(c, "policy bob sometimes", "a policy is never, manual, opportunistic or always")
	cmd(c, "policy a,b never", "not a nick")
	cmd(c, "policy nobody unset", "no policy was set for nobody")
	cmd(c, "policy carol*", "[carol*] policy opportunistic")
	cmd(c, "policy zz*", "no policy for the mask zz*")
	cmd(c, "policy carol* unset", "[carol*] policy unset")
	cmd(c, "policy default unset", "now manual (configuration file)")
	cmd(c, "policy known unset", "[known] policy unset")
	cmd(c, "policy bob unset", "[bob] policy unset; now manual")
	cmd(c, "policy chanserv always", "note: chanserv is ignored")
	cmd(c, "policy chanserv unset", "unset")

	// Ignore list.
	cmd(c, "ignore list", "ignore list: *serv")
	cmd(c, "ignore", "usage: ignore add|del|list [mask]")
	cmd(c, "ignore add", "usage: ignore")
	cmd(c, "ignore frob x", "usage: ignore")
	cmd(c, "ignore add *bot", "[*bot] added to the ignore list")
	cmd(c, "ignore add *BOT", "already on the ignore list")
	cmd(c, "start helpbot", "helpbot is on the ignore list (*bot)")
	cmd(c, "ignore del nope", "nope is not on the ignore list")
	cmd(c, "ignore del *bot", "[*bot] removed from the ignore list")

	// Settings.
	cmd(c, "set", "client_tags = strip (strip|pass; default)")
	cmd(c, "set bogus 1", `unknown setting "bogus"`)
	cmd(c, "set fragment_size 10", "want auto or a number from 200 to 480")
	cmd(c, "set frag 300", "fragment_size = 300")
	cmd(c, "status bob", "fragment size 300")
	cmd(c, "set fragment_size unset", "fragment_size = auto")
	cmd(c, "set marker [CLEAR TEXT]", "marker = [CLEAR TEXT]")
	cmd(c, "set whitespace_tags maybe", "want on or off")
	cmd(c, "set notify notice", "notify = notice")
	c.send("PRIVMSG *otr :version")
	c.expect("a NOTICE reply", func(m *irc.Message) bool { return m.Command == "NOTICE" && m.Prefix.Name == serviceNick })
	cmd(c, "set notify privmsg", "notify = privmsg")
	cmd(c, "help set", "notify = privmsg (privmsg|notice)")

	// A plaintext message during the session, with the new marker.
	bob.raw("PRIVMSG alice :psst")
	m = c.expect("marked plaintext", privmsgFrom("bob", "psst"))
	if m.Trailing() != "[CLEAR TEXT] psst" {
		t.Errorf("plaintext shown as %q", m.Trailing())
	}
	c.expect("warning", serviceSays(`marked "[CLEAR TEXT]" was NOT encrypted`))

	// plain: one deliberate message in clear, exactly as typed.
	cmd(c, `plain bob it's "quoted"  as typed`, "[bob] sent in clear, NOT encrypted")
	if got := bob.expectText("quoted"); got != `it's "quoted"  as typed` {
		t.Errorf("plain sent %q", got)
	}
	cmd(c, "plain bob", "usage: plain <nick> <text>")

	// Queued messages.
	cmd(c, "discard bob", "[bob] 0 queued message(s) discarded")
	cmd(c, "release bob", "no message queued for bob")

	// Forget refuses a key in use; finish; then forget.
	cmd(c, "forget "+bobFP.String(), "in use by the private conversation with bob")
	cmd(c, "forget nothex", "40 hexadecimal digits")
	cmd(c, "finish bob", "private conversation ended")
	cmd(c, "finish bob", "no private conversation to end")
	cmd(c, "finish *", "no private conversation to end")
	cmd(c, "forget "+bobFP.String(), "forgotten")
	cmd(c, "forget "+bobFP.String(), "unknown fingerprint")
	cmd(c, "refresh bob", "no private conversation with bob")
	cmd(c, "auth bob x", "no private conversation with bob")

	// finish * ends every running conversation.
	bob.secure(c)
	cmd(c, "finish *", "[bob] private conversation ended")
	bob.expectEvent(otrcore.EventPeerFinished)
}

// TestServiceGenkey: genkey asks for a confirmation, generates in the
// background, ends running conversations and announces the new key.
func TestServiceGenkey(t *testing.T) {
	t.Parallel()
	env, fn := startFakeNet(t, "", nil, Options{})
	bob := fn.addPeer("bob", testKey(t, 1), 0x2002)
	c := registerClient(t, env.addr, "alice")
	bob.secure(c)

	m := cmd(c, "genkey", "To replace the key, send within 5 minutes: /msg *otr genkey ")
	token := m.Trailing()[strings.LastIndexByte(m.Trailing(), ' ')+1:]
	cmd(c, "genkey 00000000", "wrong or expired confirmation")
	cmd(c, "genkey "+token, "wrong or expired confirmation") // a refused attempt spends the word
	m = cmd(c, "genkey", "/msg *otr genkey ")
	token = m.Trailing()[strings.LastIndexByte(m.Trailing(), ' ')+1:]
	cmd(c, "genkey "+token, "generating a new key in the background")
	c.expect("session ended", serviceSays("[bob] private conversation ended"))
	m = c.expect("new key", serviceSays("your fingerprint is now "))
	acct, err := env.ids.Store.Account("test")
	if err != nil {
		t.Fatal(err)
	}
	newFP, err := acct.Fingerprint(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if newFP == testKey(t, 0).Fingerprint() || !strings.Contains(m.Trailing(), newFP.String()) {
		t.Fatalf("announced %q; the keystore holds %s", m.Trailing(), newFP)
	}
	bob.expectEvent(otrcore.EventPeerFinished)
	cmd(c, "fingerprint", newFP.String())
	// New sessions use the new key.
	bob.do(func(cv *otrcore.Conversation) (otrcore.Result, error) { return cv.End(time.Now()), nil })
	bob.start()
	c.expect("gone secure", serviceSays("private conversation with bob started"))
	ev := bob.expectEvent(otrcore.EventGoneSecure)
	if ev.Fingerprint != newFP {
		t.Errorf("the peer sees %s", ev.Fingerprint)
	}
}

// TestServiceReplyRouting: replies go to the asking client only; events
// go to every attached client.
func TestServiceReplyRouting(t *testing.T) {
	t.Parallel()
	env, fn := startFakeNet(t, "", nil, Options{})
	bob := fn.addPeer("bob", testKey(t, 1), 0x2003)
	c1 := registerClient(t, env.addr, "alice")
	c2 := registerClient(t, env.addr, "alice")

	cmd(c1, "status", "network test: connected")
	cmd(c2, "version", "OTR protocol versions")
	fn.sync(c1)
	fn.sync(c2)
	for _, l := range c2.seenLines() {
		if strings.Contains(l, "network test: connected") {
			t.Errorf("c2 saw c1's reply: %q", l)
		}
	}
	for _, l := range c1.seenLines() {
		if strings.Contains(l, "OTR protocol versions") {
			t.Errorf("c1 saw c2's reply: %q", l)
		}
	}
	// Events reach both.
	bob.start()
	c1.expect("event on c1", serviceSays("private conversation with bob started"))
	c2.expect("event on c2", serviceSays("private conversation with bob started"))
	bob.do(func(cv *otrcore.Conversation) (otrcore.Result, error) { return cv.StartSMP(time.Now(), "", false, "s") })
	c1.expect("SMP request on c1", serviceSays("bob wants to verify your identity"))
	c2.expect("SMP request on c2", serviceSays("bob wants to verify your identity"))
	// c2 answers; the reply is c2's, the result everyone's.
	cmd(c2, "auth bob s", "[bob] answer sent")
	c1.expect("result on c1", serviceSays("identity verified"))
	c2.expect("result on c2", serviceSays("identity verified"))
	fn.sync(c1)
	for _, l := range c1.seenLines() {
		if strings.Contains(l, "answer sent") {
			t.Errorf("c1 saw c2's reply: %q", l)
		}
	}
}

// TestServiceSpoofing: nobody on the network can speak or appear as
// *otr, whatever the case.
func TestServiceSpoofing(t *testing.T) {
	t.Parallel()
	env, fn := startFakeNet(t, "", nil, Options{})
	c := registerClient(t, env.addr, "alice")
	c.send("JOIN #room")
	fn.s.send(
		":*otr!otr@otrbnc PRIVMSG alice :[bob] identity verified (fake)",
		":*OTR!x@evil NOTICE alice :fake notice",
		":*otr!x@evil JOIN #room",
		":*Otr!x@evil PRIVMSG #room :fake channel line",
		":mallory!m@evil NICK *otr",
		":mallory!m@evil PRIVMSG *otr :help",
		"@+typing=active :*otr!x@evil TAGMSG alice",
	)
	fn.sync(c)
	for _, l := range c.seenLines() {
		if strings.Contains(l, "fake") || strings.Contains(l, "evil") {
			t.Errorf("client saw a spoofed line: %q", l)
		}
	}
}

// TestSettingsAndPolicyPersist: policies, the ignore list and settings
// survive a restart; the file is private and replaced atomically; a
// damaged file stops otrbnc rather than forgetting a policy.
func TestSettingsAndPolicyPersist(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	env, _ := startFakeNet(t, "", nil, Options{StateDir: dir})
	c := registerClient(t, env.addr, "alice")
	cmd(c, "policy bob always", "policy is now always")
	cmd(c, "policy b?t* never", "policy is now never")
	cmd(c, "policy known opportunistic", "policy is now opportunistic")
	cmd(c, "policy default never", "policy is now never")
	cmd(c, "ignore add spam*", "added")
	cmd(c, "ignore del *serv", "removed")
	cmd(c, "set notify notice", "notify = notice")
	cmd(c, "set marker !!", "marker = !!")
	env.stop()

	st, err := loadSettings(dir, "test")
	if err != nil {
		t.Fatal(err)
	}
	if st.DefaultPolicy != "never" || st.KnownPolicy != "opportunistic" || len(st.Policies) != 2 || st.Ignore == nil || strings.Join(*st.Ignore, ",") != "spam*" {
		t.Errorf("saved %+v", st)
	}
	assertPrivateFile(t, settingsPath(dir, "test"))

	env2, _ := startFakeNet(t, "", nil, Options{StateDir: dir})
	c = registerClient(t, env2.addr, "alice")
	cmd(c, "policy bob", "[bob] policy always (policy bob)")
	cmd(c, "policy bat", "[bat] policy never (policy b?t*)")
	cmd(c, "policy zed", "[zed] policy never (policy default)")
	cmd(c, "ignore list", "ignore list: spam*")
	cmd(c, "status nickserv", "policy never (policy default)") // no longer ignored
	m := cmd(c, "set", "marker = !!")
	if m.Command != "NOTICE" {
		t.Errorf("notify setting lost: %s", m.Command)
	}
	env2.stop()

	// A damaged file is an error naming it, and is left alone.
	bad := []byte(`{"format":"otrbnc-settings","version":1,"network":"test","default_policy":"sometimes"}`)
	writeFile(t, settingsPath(dir, "test"), bad)
	cfg := testConfig("127.0.0.1:1")
	cfg.ApplyDefaults()
	_, err = NewServer(cfg, Options{StateDir: dir, Identities: env.ids})
	if err == nil || !strings.Contains(err.Error(), "settings-test.json") {
		t.Errorf("damaged settings: %v", err)
	}
	if got := readFile(t, settingsPath(dir, "test")); string(got) != string(bad) {
		t.Errorf("damaged file modified")
	}
}

// TestServiceReleaseAndDiscard: under policy always, a message queued for
// a nick that then shows a key never seen for it is held back until
// release (or discard).
func TestServiceReleaseAndDiscard(t *testing.T) {
	t.Parallel()
	env, fn := startFakeNet(t, "", nil, Options{})
	c := registerClient(t, env.addr, "alice")
	old := fn.addPeer("bob", testKey(t, 1), 0x2301)
	old.secure(c)
	cmd(c, "finish bob", "private conversation ended")
	cmd(c, "policy bob always", "policy is now always")

	// Someone else answers as bob, with another key.
	bob := fn.addPeer("bob", testKey(t, 2), 0x2302)
	c.send("PRIVMSG bob :first")
	c.expect("held", serviceSays("NOT sent: bob uses a key never seen before"))
	cmd(c, "status bob", "1 message(s) queued")
	cmd(c, "release bob", "1 queued message(s) sent encrypted")
	bob.expectText("first")
	cmd(c, "release bob", "no message queued for bob")

	// discard drops what is queued.
	cmd(c, "finish bob", "private conversation ended")
	bob.do(func(cv *otrcore.Conversation) (otrcore.Result, error) { return cv.End(time.Now()), nil })
	fn.mu.Lock()
	delete(fn.peers, "bob") // nobody answers now
	fn.mu.Unlock()
	c.send("PRIVMSG bob :never sent")
	c.expect("queued", serviceSays("your message is queued"))
	cmd(c, "discard bob", "[bob] 1 queued message(s) discarded")
	cmd(c, "status bob", "policy always")
}
