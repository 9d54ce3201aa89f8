package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"otrbnc/keystore"
	"otrbnc/otrcore"
)

// libotrTestdata is keystore's sample libotr files: accounts "libera"
// (IRC), "alice@irc.example" (prpl-irc) and a weird name, with keys and
// fingerprints.
const libotrTestdata = "../../keystore/testdata/libotr/"

// run runs otrbnc with args and returns its output and error.
func run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	err := dispatch(context.Background(), args, strings.NewReader(""), &out, &out)
	return out.String(), err
}

// mustRun runs otrbnc and fails the test on error.
func mustRun(t *testing.T, args ...string) string {
	t.Helper()
	out, err := run(t, args...)
	if err != nil {
		t.Fatalf("otrbnc %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// wantErr runs otrbnc, expects an error containing every one of subs.
func wantErr(t *testing.T, args []string, subs ...string) {
	t.Helper()
	out, err := run(t, args...)
	if err == nil {
		t.Fatalf("otrbnc %s succeeded:\n%s", strings.Join(args, " "), out)
	}
	for _, s := range subs {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("otrbnc %s: error %q does not say %q", strings.Join(args, " "), err, s)
		}
	}
}

// writeConfig writes a configuration with the given networks (name, nick)
// and extra top-level lines into a new directory; it returns its path.
func writeConfig(t *testing.T, top string, networks ...string) string {
	t.Helper()
	dir := t.TempDir()
	var b strings.Builder
	fmt.Fprintf(&b, "password_hash = %q\nstate_dir = \"state\"\n%s\n[[listen]]\naddress = \"127.0.0.1:%d\"\n", cheapHash(t, "pw"), top, freePort(t))
	for _, n := range networks {
		fmt.Fprintf(&b, "[[network]]\nname = %q\naddress = \"irc+insecure://127.0.0.1:1\"\nnick = \"me\"\n", n)
	}
	path := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestHelpForEverySubcommand(t *testing.T) {
	t.Parallel()
	out := mustRun(t, "help")
	if h := mustRun(t, "-h"); h != out {
		t.Errorf("otrbnc -h differs from otrbnc help:\n%s", h)
	}
	for _, c := range subcommands() {
		if !strings.Contains(out, "  "+c.name+" ") {
			t.Errorf("otrbnc help does not list %s", c.name)
		}
		for _, args := range [][]string{{c.name, "-h"}, {c.name, "--help"}, {"help", c.name}} {
			h := mustRun(t, args...)
			if !strings.HasPrefix(h, "usage: otrbnc "+c.name) {
				t.Errorf("otrbnc %s: no usage line:\n%s", strings.Join(args, " "), h)
			}
			if !strings.Contains(h, "Examples:") {
				t.Errorf("otrbnc %s: no examples", strings.Join(args, " "))
			}
		}
	}
	wantErr(t, []string{"frobnicate"}, "unknown subcommand", "otrbnc help")
	wantErr(t, []string{"help", "frobnicate"}, "unknown subcommand")
	wantErr(t, []string{"trust", "-bogus"}, "-bogus", "otrbnc trust -h")
}

func TestParseInterleaved(t *testing.T) {
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	a := fs.String("a", "", "")
	b := fs.Bool("b", false, "")
	rest, err := parseInterleaved(fs, []string{"one", "-a", "x", "two", "-b", "--", "-three"})
	if err != nil || *a != "x" || !*b || !slices.Equal(rest, []string{"one", "two", "-three"}) {
		t.Errorf("got %q %q %v, %v", rest, *a, *b, err)
	}
}

func TestImportListFingerprintsTrustExport(t *testing.T) {
	t.Parallel()
	cfg := writeConfig(t, "", "libera", "oftc")
	key, fp := libotrTestdata+"otr.key", libotrTestdata+"otr.fp"

	// -list needs no configuration and shows every account.
	out := mustRun(t, "import-libotr", "-list", "-key", key, "-fingerprints", fp)
	for _, s := range []string{`-from "libera" -protocol "IRC"`, `-from "alice@irc.example" -protocol "prpl-irc"`, "5BE2ED8F B12B3167"} {
		if !strings.Contains(out, s) {
			t.Errorf("-list output lacks %q:\n%s", s, out)
		}
	}
	wantErr(t, []string{"import-libotr", "-config", cfg}, "-key FILE", "-fingerprints FILE")
	wantErr(t, []string{"import-libotr", "-config", cfg, "-key", key, "-fingerprints", fp, "-account", "libera"},
		"several libotr accounts", "-from", `-from "alice@irc.example" -protocol "prpl-irc"`)
	wantErr(t, []string{"import-libotr", "-config", cfg, "-key", key, "-fingerprints", fp, "-from", "nobody"}, "no libotr account", "they hold")
	wantErr(t, []string{"import-libotr", "-config", cfg, "-key", key, "-fingerprints", fp, "-from", "libera"}, "several networks", "-account")
	wantErr(t, []string{"import-libotr", "-config", cfg, "-key", key, "-fingerprints", fp, "-from", "libera", "-account", "efnet"}, `no network named "efnet"`, "libera, oftc")

	out = mustRun(t, "import-libotr", "--config", cfg, "--key", key, "--fingerprints", fp, "--from", "libera", "--account", "Libera")
	if !strings.Contains(out, "our fingerprint is now 5BE2ED8F B12B3167 D068599E 19691FE4 64167384") || !strings.Contains(out, "verified fingerprint(s)") {
		t.Errorf("import output:\n%s", out)
	}

	out = mustRun(t, "fingerprints", "-config", cfg, "-account", "libera")
	for _, s := range []string{
		"network libera", "our fingerprint: 5BE2ED8F B12B3167 D068599E 19691FE4 64167384",
		"D7DEE5EC F3FA0108 0F161D24 2B323940 474E555C  smp (",
		"F3FA0108 0F161D24 2B323940 474E555C 636A7178  manual (",
		"carol{m}", // folded with rfc1459, as the proxy will look it up
	} {
		if !strings.Contains(out, s) {
			t.Errorf("fingerprints output lacks %q:\n%s", s, out)
		}
	}

	// Importing another key over the network's own key needs -replace-key.
	other := []string{"import-libotr", "-config", cfg, "-key", key, "-fingerprints", fp, "-from", "alice@irc.example", "-account", "libera"}
	wantErr(t, other, "already has its own OTR key", "-replace-key", "Nothing was changed")
	out = mustRun(t, append(other, "-replace-key")...)
	if !strings.Contains(out, "our fingerprint is now 3EC5D635") {
		t.Errorf("replace output:\n%s", out)
	}
	// Fingerprints only, with no key file: no question asked.
	mustRun(t, "import-libotr", "-config", cfg, "-fingerprints", fp, "-from", "libera", "-account", "libera")

	// trust and distrust, by full fingerprint, with flags after it too.
	const peer = "0123ABCD 4567EF01 89ABCDEF 01234567 89ABCDEF"
	wantErr(t, []string{"trust", "-config", cfg, "-account", "oftc", "0123"}, "40 hexadecimal digits")
	wantErr(t, []string{"trust", "-config", cfg, "0123ABCD4567EF0189ABCDEF0123456789ABCDEF"}, "several networks", "-account")
	wantErr(t, []string{"trust", "-config", cfg, "-account", "oftc", "-distrust", peer}, "not known")
	out = mustRun(t, append(append([]string{"trust", "-config", cfg}, strings.Fields(peer)...), "-account", "oftc", "-nick", "Bob[away]")...)
	if !strings.Contains(out, "(seen as bob{away}) is now verified") {
		t.Errorf("trust output: %s", out)
	}
	out = mustRun(t, "fingerprints", "-config", cfg, "-account", "oftc")
	if !strings.Contains(out, peer+"  manual (") {
		t.Errorf("after trust:\n%s", out)
	}
	mustRun(t, "trust", "-config", cfg, "-account", "oftc", "-distrust", peer)
	out = mustRun(t, "fingerprints", "-config", cfg)
	if !strings.Contains(out, peer+"  -") || !strings.Contains(out, "network libera") {
		t.Errorf("after distrust:\n%s", out)
	}

	// export-libotr writes files libotr (and our reader) accept.
	dir := t.TempDir()
	outKey, outFP := filepath.Join(dir, "otr.key"), filepath.Join(dir, "otr.fp")
	out = mustRun(t, "export-libotr", "-config", cfg, "-account", "libera", "-key", outKey, "-fingerprints", outFP)
	if !strings.Contains(out, `as libotr account "me@127.0.0.1" protocol "IRC"`) {
		t.Errorf("export output: %s", out)
	}
	for _, p := range []string{outKey, outFP} {
		if st, err := os.Stat(p); err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v %v", p, err, st)
		}
	}
	kf, _ := os.Open(outKey)
	ff, _ := os.Open(outFP)
	l, err := keystore.ReadLibotr(kf, ff)
	kf.Close()
	ff.Close()
	if err != nil || len(l.Keys) != 1 || otrcore.FingerprintOf(&l.Keys[0].Key.PublicKey).String() != "3EC5D635 801C5F95 8FBB89B4 14849ABF CBD594F7" {
		t.Errorf("exported files: %v %+v", err, l)
	}
	wantErr(t, []string{"export-libotr", "-config", cfg, "-account", "libera", "-key", outKey, "-fingerprints", outFP}, "exists", "-force")
	mustRun(t, "export-libotr", "-config", cfg, "-account", "libera", "-key", outKey, "-fingerprints", outFP, "-force", "-as", "x@y")
}

func TestStateDirInUse(t *testing.T) {
	t.Parallel()
	cfg := writeConfig(t, "", "libera")
	store, err := keystore.Open(filepath.Join(filepath.Dir(cfg), "state"), keystore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	for _, args := range [][]string{
		{"trust", "-config", cfg, "0123ABCD4567EF0189ABCDEF0123456789ABCDEF"},
		{"fingerprints", "-config", cfg},
		{"import-libotr", "-config", cfg, "-key", libotrTestdata + "otr.key", "-from", "libera"},
		{"export-libotr", "-config", cfg, "-key", t.TempDir() + "/k", "-fingerprints", t.TempDir() + "/f"},
	} {
		wantErr(t, args, "otrbnc is running", "Stop it first", "systemctl stop otrbnc", "/msg *otr")
	}
	wantErr(t, []string{"run", "-config", cfg}, "already running")
	out := mustRun(t, "check-config", "-config", cfg)
	if !strings.Contains(out, "in use by the running otrbnc") {
		t.Errorf("check-config:\n%s", out)
	}
}

func TestPassphrase(t *testing.T) {
	t.Parallel() // Argon2id is slow under the race detector
	cfg := writeConfig(t, `passphrase_file = "pass.txt"`, "libera")
	dir := filepath.Dir(cfg)
	os.WriteFile(filepath.Join(dir, "pass.txt"), []byte("correct horse\n"), 0o600)
	mustRun(t, "trust", "-config", cfg, "0123ABCD4567EF0189ABCDEF0123456789ABCDEF")
	data, err := os.ReadFile(filepath.Join(dir, "state", "account-libera.json"))
	if err != nil || !strings.Contains(string(data), `"sealed"`) || strings.Contains(string(data), "0123abcd") {
		t.Fatalf("account file not sealed: %v\n%s", err, data)
	}

	// Without the passphrase, the store does not open, and otrbnc says why
	// and what to do; run refuses to start.
	noPass := writeConfig(t, "", "libera")
	os.Remove(filepath.Join(filepath.Dir(noPass), "state"))
	os.Rename(filepath.Join(dir, "state"), filepath.Join(filepath.Dir(noPass), "state"))
	wantErr(t, []string{"fingerprints", "-config", noPass}, "encrypted with a passphrase", "set passphrase_file", "-passphrase-file")
	wantErr(t, []string{"run", "-config", noPass}, "encrypted with a passphrase", "set passphrase_file")
	out, err := run(t, "check-config", "-config", noPass)
	if err == nil || !strings.Contains(out, "ERROR") || !strings.Contains(out, "no passphrase_file") {
		t.Errorf("check-config without passphrase: %v\n%s", err, out)
	}
	bad := filepath.Join(t.TempDir(), "bad")
	os.WriteFile(bad, []byte("wrong horse"), 0o600)
	wantErr(t, []string{"fingerprints", "-config", noPass, "-passphrase-file", bad}, "does not open the keystore")
	out = mustRun(t, "fingerprints", "-config", noPass, "-passphrase-file", filepath.Join(dir, "pass.txt"))
	if !strings.Contains(out, "0123ABCD") {
		t.Errorf("fingerprints with -passphrase-file:\n%s", out)
	}
}

// TestPassphraseFromCredentials checks that passphrase_file expands
// systemd's ${CREDENTIALS_DIRECTORY}, with a clear error outside systemd.
func TestPassphraseFromCredentials(t *testing.T) {
	cred := writeConfig(t, `passphrase_file = "${CREDENTIALS_DIRECTORY}/passphrase"`, "libera")
	t.Setenv("CREDENTIALS_DIRECTORY", "")
	const fp = "0123ABCD4567EF0189ABCDEF0123456789ABCDEF"
	wantErr(t, []string{"trust", "-config", cred, fp}, "CREDENTIALS_DIRECTORY", "-passphrase-file")
	out := mustRun(t, "check-config", "-config", cred)
	if !strings.Contains(out, "warning  passphrase") {
		t.Errorf("check-config outside systemd:\n%s", out)
	}
	credDir := t.TempDir()
	os.WriteFile(filepath.Join(credDir, "passphrase"), []byte("s3cret"), 0o600)
	t.Setenv("CREDENTIALS_DIRECTORY", credDir)
	mustRun(t, "trust", "-config", cred, fp)
	out = mustRun(t, "check-config", "-config", cred)
	if !strings.Contains(out, "ok       passphrase file "+credDir) || !strings.Contains(out, "keystore opens (accounts: libera)") || !strings.Contains(out, "configuration OK") {
		t.Errorf("check-config with credentials:\n%s", out)
	}
}

func TestCheckConfig(t *testing.T) {
	t.Parallel()
	cfg := writeConfig(t, "", "libera")
	out := mustRun(t, "check-config", "-config", cfg)
	for _, s := range []string{"syntax and values", "will be created", "without TLS", "configuration OK"} {
		if !strings.Contains(out, s) {
			t.Errorf("check-config output lacks %q:\n%s", s, out)
		}
	}
	data, _ := os.ReadFile(cfg)
	broken := filepath.Join(filepath.Dir(cfg), "broken.toml")
	os.WriteFile(broken, append(data, "[[listen]]\naddress = \"127.0.0.1:1\"\ntls_cert = \"/nonexistent.pem\"\ntls_key = \"/nonexistent.key\"\n"...), 0o600)
	out, err := run(t, "check-config", "-config", broken)
	if err == nil || !strings.Contains(out, "ERROR    listen 127.0.0.1:1: TLS certificate") || !strings.Contains(err.Error(), "1 problem(s)") {
		t.Errorf("broken TLS: %v\n%s", err, out)
	}
	os.WriteFile(broken, append(data, "colour = \"blue\"\n"...), 0o600)
	wantErr(t, []string{"check-config", "-config", broken}, "unknown key", "colour")
	wantErr(t, []string{"check-config", "-config", filepath.Join(t.TempDir(), "none.toml")}, "none.toml")
}

func TestNoConfiguration(t *testing.T) {
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	for _, sub := range []string{"check-config", "fingerprints", "trust -nick x 0123ABCD4567EF0189ABCDEF0123456789ABCDEF", "export-libotr -key k -fingerprints f"} {
		wantErr(t, strings.Fields(sub), "no configuration at", "-config", systemdConfig)
	}
}

func TestFoldNick(t *testing.T) {
	for _, c := range []struct{ cm, in, want string }{
		{"rfc1459", "Bob[A]~\\", "bob{a}^|"},
		{"strict-rfc1459", "Bob[A]~", "bob{a}~"},
		{"ascii", "Bob[A]~", "bob[a]~"},
	} {
		if got := foldNick(c.cm, c.in); got != c.want {
			t.Errorf("foldNick(%s, %q) = %q, want %q", c.cm, c.in, got, c.want)
		}
	}
	if err := checkCasemapping("utf8"); err == nil {
		t.Error("unknown casemapping accepted")
	}
	wantErr(t, []string{"trust", "-casemapping", "utf8", "0123ABCD4567EF0189ABCDEF0123456789ABCDEF"}, "casemapping")
}

// TestRootGivesFilesBack checks that, run as root on the service's state
// directory, a subcommand leaves the files to the directory's owner.
func TestRootGivesFilesBack(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	t.Parallel()
	cfg := writeConfig(t, "", "libera")
	state := filepath.Join(filepath.Dir(cfg), "state")
	if err := os.Mkdir(state, 0o700); err != nil {
		t.Fatal(err)
	}
	const uid, gid = 65534, 65534 // nobody, nogroup
	if err := os.Chown(state, uid, gid); err != nil {
		t.Fatal(err)
	}
	mustRun(t, "trust", "-config", cfg, "0123ABCD4567EF0189ABCDEF0123456789ABCDEF")
	entries, err := os.ReadDir(state)
	if err != nil || len(entries) < 2 {
		t.Fatalf("state directory: %v %v", entries, err)
	}
	for _, e := range entries {
		info, _ := e.Info()
		if st := info.Sys().(*syscall.Stat_t); st.Uid != uid || st.Gid != gid {
			t.Errorf("%s belongs to %d:%d, want %d:%d", e.Name(), st.Uid, st.Gid, uid, gid)
		}
	}
}
