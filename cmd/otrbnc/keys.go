package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"otrbnc/keystore"
	"otrbnc/otrcore"
	"otrbnc/proxy/config"
)

// keyTimeout bounds waiting for an account's key (generated in the
// background the first time).
const keyTimeout = 2 * time.Minute

var hashPasswordCommand = subcommand{
	name:     "hash-password",
	synopsis: "",
	summary:  "read a client password, print its bcrypt hash for password_hash",
	help: `
Reads a password (from the terminal without echo, twice; or one line from
standard input) and prints its bcrypt hash. Put the hash in the
configuration as password_hash, then reload otrbnc (SIGHUP) or restart it:
IRC clients then log in with the password as their server password (PASS)
or with SASL PLAIN.

Examples:
  otrbnc hash-password
  printf '%s\n' 'my long password' | otrbnc hash-password
`,
	setup: func(fs *flag.FlagSet) runFunc {
		return func(ctx context.Context, sio stdio, args []string) error {
			if len(args) > 0 {
				return fmt.Errorf("unexpected arguments %q: hash-password reads the password from standard input", args)
			}
			pw, err := readPassword(sio)
			if err != nil {
				return err
			}
			h, err := config.HashPassword(pw)
			if err != nil {
				return err
			}
			fmt.Fprintln(sio.out, h)
			return nil
		}
	},
}

// readPassword reads a password: twice without echo from a terminal, or
// one line otherwise.
func readPassword(sio stdio) (string, error) {
	f, isFile := sio.in.(*os.File)
	if isFile {
		if restore, ok := noEcho(f); ok {
			defer restore()
			r := bufio.NewReader(f)
			fmt.Fprint(sio.err, "password: ")
			a, err := readLine(r)
			if err != nil {
				return "", err
			}
			fmt.Fprint(sio.err, "again: ")
			b, err := readLine(r)
			if err != nil {
				return "", err
			}
			if a != b {
				return "", errors.New("the two passwords differ; try again")
			}
			return a, nil
		}
	}
	return readLine(bufio.NewReader(sio.in))
}

func readLine(r *bufio.Reader) (string, error) {
	line, err := r.ReadString('\n')
	if err != nil && !(errors.Is(err, io.EOF) && line != "") {
		return "", fmt.Errorf("reading the password: %w", err)
	}
	pw := strings.TrimRight(line, "\r\n")
	if pw == "" {
		return "", errors.New("empty password: type one, or pipe it on standard input")
	}
	return pw, nil
}

var fingerprintsCommand = subcommand{
	name:     "fingerprints",
	synopsis: "[-config FILE] [-account NETWORK]",
	summary:  "list our own and our peers' OTR fingerprints, with their trust",
	help: `
Lists, for each network (OTR account) in the state directory, our own OTR
fingerprint (the one peers compare) and every peer fingerprint otrbnc has
seen, with the nicks it was seen under and whether it is verified ("smp",
"manual") or not ("-").

It needs the state directory, which the running otrbnc holds: stop otrbnc
first, or ask it from your IRC client: /msg *otr fingerprint

Examples:
  otrbnc fingerprints
  otrbnc fingerprints -account libera
  sudo otrbnc fingerprints -config /etc/otrbnc/config.toml -passphrase-file /etc/otrbnc/passphrase
`,
	setup: func(fs *flag.FlagSet) runFunc {
		configPath := configFlag(fs)
		pass := passphraseFlag(fs)
		account := fs.String("account", "", "only this `network`'s account")
		return func(ctx context.Context, sio stdio, args []string) error {
			if len(args) > 0 {
				return fmt.Errorf("unexpected arguments %q (see: otrbnc fingerprints -h)", args)
			}
			lc, err := loadConfig(*configPath)
			if err != nil {
				return err
			}
			if _, err := os.Stat(lc.stateDir()); errors.Is(err, os.ErrNotExist) {
				fmt.Fprintf(sio.out, "no OTR accounts yet: %s does not exist; otrbnc creates it, and one account per network, when it first runs\n", lc.stateDir())
				return nil
			}
			store, err := lc.openStore(*pass, false, nil)
			if err != nil {
				return err
			}
			defer closeStore(store, lc.stateDir())
			return listFingerprints(ctx, sio.out, lc, store, *account)
		}
	},
}

func listFingerprints(ctx context.Context, w io.Writer, lc *loadedConfig, store *keystore.Store, only string) error {
	names := store.Accounts()
	if only != "" {
		found := ""
		for _, n := range names {
			if strings.EqualFold(n, only) {
				found = n
			}
		}
		if found == "" {
			if len(names) == 0 {
				return fmt.Errorf("no OTR account for %q in %s yet: otrbnc creates one per network when it first runs", only, lc.stateDir())
			}
			return fmt.Errorf("no OTR account for %q in %s (accounts: %s)", only, lc.stateDir(), strings.Join(names, ", "))
		}
		names = []string{found}
	}
	if len(names) == 0 {
		fmt.Fprintf(w, "no OTR accounts in %s yet: otrbnc creates one per network when it first runs\n", lc.stateDir())
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, keyTimeout)
	defer cancel()
	for i, name := range names {
		acct, err := store.Account(name)
		if err != nil {
			return err
		}
		if i > 0 {
			fmt.Fprintln(w)
		}
		own, err := acct.Fingerprint(ctx)
		if err != nil {
			return fmt.Errorf("account %s: %w", name, err)
		}
		fmt.Fprintf(w, "network %s\n  our fingerprint: %s\n", name, own)
		fps := acct.Fingerprints()
		if len(fps) == 0 {
			fmt.Fprintln(w, "  no peer fingerprints yet")
			continue
		}
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  FINGERPRINT\tTRUST\tSEEN AS")
		for _, fi := range fps {
			trust := "-"
			if fi.Trust != keystore.TrustNone {
				trust = fmt.Sprintf("%s (%s)", fi.Trust, fi.VerifiedAt.Local().Format("2006-01-02"))
			}
			var nicks []string
			for _, s := range fi.Seen {
				nicks = append(nicks, s.Nick)
			}
			seen := strings.Join(nicks, ", ")
			if seen == "" {
				seen = "(not seen yet)"
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\n", fi.Fingerprint, trust, seen)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	return nil
}

var trustCommand = subcommand{
	name:     "trust",
	synopsis: "[-config FILE] [-account NETWORK] [-nick NICK] [-distrust] FINGERPRINT",
	summary:  "mark a peer's fingerprint as verified (or no longer verified)",
	help: `
Marks a peer's OTR fingerprint as verified, after you compared it with the
peer over another channel you trust (in person, by phone, signed mail).
Type it in full: 40 hexadecimal digits, spaces allowed. Trust belongs to the
fingerprint, whichever nick presents it; -nick also records that the peer
uses that nick, so that otrbnc warns if the nick later shows another key.

-distrust removes the verification (the fingerprint stays known).

It changes the state directory, which the running otrbnc holds: stop otrbnc
first, or do it from your IRC client while it runs:
  /msg *otr trust NICK FINGERPRINT

Examples:
  otrbnc trust -nick bob 0123ABCD 4567EF01 89ABCDEF 01234567 89ABCDEF
  otrbnc trust -account libera 0123abcd4567ef0189abcdef0123456789abcdef
  otrbnc trust -distrust 0123ABCD 4567EF01 89ABCDEF 01234567 89ABCDEF
`,
	setup: func(fs *flag.FlagSet) runFunc {
		configPath := configFlag(fs)
		pass := passphraseFlag(fs)
		account := fs.String("account", "", "`network` whose OTR account to change (default: the only one)")
		nick := fs.String("nick", "", "record that `NICK` uses this fingerprint")
		distrust := fs.Bool("distrust", false, "remove the verification instead")
		casemap := fs.String("casemapping", "rfc1459", "how the network folds nicks (rfc1459, strict-rfc1459 or ascii; see its CASEMAPPING)")
		return func(ctx context.Context, sio stdio, args []string) error {
			if len(args) == 0 {
				return errors.New("give the fingerprint to trust: otrbnc trust [-nick NICK] FINGERPRINT (see: otrbnc trust -h)")
			}
			fp, err := otrcore.ParseFingerprint(strings.Join(args, ""))
			if err != nil {
				return fmt.Errorf("%w (copy the fingerprint from /msg *otr fingerprint NICK or from your peer)", err)
			}
			if err := checkCasemapping(*casemap); err != nil {
				return err
			}
			lc, nc, store, err := openNetwork(*configPath, *account, *pass, false)
			if err != nil {
				return err
			}
			defer closeStore(store, lc.stateDir())
			acct, err := store.Account(nc.Name)
			if err != nil {
				return err
			}
			if *nick != "" {
				if _, err := acct.SeenFingerprint(foldNick(*casemap, *nick), fp, time.Now()); err != nil {
					return err
				}
			}
			info, known := acct.Lookup(fp)
			if *distrust {
				if !known {
					return fmt.Errorf("fingerprint %s is not known on %s; nothing to distrust", fp, nc.Name)
				}
				if err := acct.SetTrust(fp, keystore.TrustNone, time.Now()); err != nil {
					return err
				}
				fmt.Fprintf(sio.out, "%s: fingerprint %s is no longer verified\n", nc.Name, fp)
				return nil
			}
			if err := acct.SetTrust(fp, keystore.TrustManual, time.Now()); err != nil {
				return err
			}
			var nicks []string
			for _, s := range info.Seen {
				nicks = append(nicks, s.Nick)
			}
			switch {
			case len(nicks) > 0:
				fmt.Fprintf(sio.out, "%s: fingerprint %s (seen as %s) is now verified\n", nc.Name, fp, strings.Join(nicks, ", "))
			default:
				fmt.Fprintf(sio.out, "%s: fingerprint %s is now verified; no nick has presented it yet\n", nc.Name, fp)
			}
			return nil
		}
	},
}

func checkCasemapping(cm string) error {
	switch cm {
	case "rfc1459", "strict-rfc1459", "ascii":
		return nil
	}
	return fmt.Errorf("unknown casemapping %q: want rfc1459 (the IRC default), strict-rfc1459 or ascii, as the network's CASEMAPPING says", cm)
}
