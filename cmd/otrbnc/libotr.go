package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"otrbnc/keystore"
	"otrbnc/keystore/atomicfile"
	"otrbnc/otrcore"
	"otrbnc/proxy/config"
)

var importLibotrCommand = subcommand{
	name:     "import-libotr",
	synopsis: "-key FILE -fingerprints FILE [-account NETWORK] [-from NAME [-protocol P]] [-replace-key] [-list]",
	summary:  "import an OTR key and fingerprints from irssi, HexChat, Pidgin or znc-otr",
	help: `
Imports one libotr account (the files of irssi, HexChat, Pidgin, znc-otr
and other libotr users) into the OTR account of one otrbnc network: its
private key, so that your peers keep seeing the fingerprint they know, and
its fingerprints with their trust (libotr's "smp" stays smp, any other
trust becomes manual). Instance tags are not imported: each OTR program
must have its own. Keys are checked before anything is written.

Where the files usually are:
  irssi     ~/.irssi/otr/otr.key          ~/.irssi/otr/otr.fp
  HexChat   ~/.config/hexchat/otr/otr.key ~/.config/hexchat/otr/otr.fp
  Pidgin    ~/.purple/otr.private_key     ~/.purple/otr.fingerprints
  znc-otr   <znc>/users/U/networks/N/moddata/otr/otr.key and otr.fp

A libotr file can hold several accounts (name and protocol, for example
"liberachat" and "IRC" in irssi 1.2 and later, which names accounts after
its server tags, or "alice@irc.libera.chat" and "prpl-irc" in Pidgin). With -list, the accounts are listed and
nothing is imported; when the files hold more than one, choose with -from
(and -protocol if a name appears with two protocols). -account chooses the
otrbnc network (default: the only one configured).

If the network already has a different key of its own (otrbnc generates
one when it first runs), the import stops unless -replace-key is given:
peers who verified the old key will have to verify the new one. Leave out
-key to import only fingerprints.

Nicks are case-folded like the network does (-casemapping, default rfc1459)
so that they match what otrbnc sees.

It changes the state directory, which the running otrbnc holds: stop otrbnc
first (systemctl stop otrbnc, or Ctrl-C), import, then start it again.

Examples:
  otrbnc import-libotr -list -key ~/.irssi/otr/otr.key -fingerprints ~/.irssi/otr/otr.fp
  otrbnc import-libotr -key ~/.irssi/otr/otr.key -fingerprints ~/.irssi/otr/otr.fp \
      -from liberachat -account libera -replace-key
  otrbnc import-libotr -fingerprints ~/.purple/otr.fingerprints -from alice@irc.libera.chat -protocol prpl-irc
`,
	setup: func(fs *flag.FlagSet) runFunc {
		configPath := configFlag(fs)
		pass := passphraseFlag(fs)
		keyFile := fs.String("key", "", "libotr private key `file`")
		fpFile := fs.String("fingerprints", "", "libotr fingerprints `file`")
		account := fs.String("account", "", "otrbnc `network` to import into (default: the only one)")
		from := fs.String("from", "", "libotr account `name` to import (see -list)")
		protocol := fs.String("protocol", "", "libotr `protocol` of -from, when the name is ambiguous")
		list := fs.Bool("list", false, "list the libotr accounts in the files and import nothing")
		replace := fs.Bool("replace-key", false, "replace the network's existing key with the imported one")
		casemap := fs.String("casemapping", "rfc1459", "how the network folds nicks (rfc1459, strict-rfc1459 or ascii)")
		return func(ctx context.Context, sio stdio, args []string) error {
			if len(args) > 0 {
				return fmt.Errorf("unexpected arguments %q (see: otrbnc import-libotr -h)", args)
			}
			if err := checkCasemapping(*casemap); err != nil {
				return err
			}
			l, err := readLibotrFiles(*keyFile, *fpFile)
			if err != nil {
				return err
			}
			if *list {
				printLibotrAccounts(sio.out, l)
				return nil
			}
			src, err := chooseLibotrAccount(l, *from, *protocol)
			if err != nil {
				return err
			}
			lc, nc, store, err := openNetwork(*configPath, *account, *pass, false)
			if err != nil {
				return err
			}
			defer closeStore(store, lc.stateDir())
			return importLibotr(ctx, sio.out, store, nc.Name, l, src, *replace, *casemap)
		}
	},
}

// readLibotrFiles reads the libotr files; at least one is needed.
func readLibotrFiles(keyFile, fpFile string) (*keystore.Libotr, error) {
	if keyFile == "" && fpFile == "" {
		return nil, errors.New("give the libotr files: -key FILE and/or -fingerprints FILE (irssi: ~/.irssi/otr/otr.key and ~/.irssi/otr/otr.fp; see: otrbnc import-libotr -h)")
	}
	var keys, fps io.Reader
	for _, f := range []struct {
		path string
		r    *io.Reader
	}{{keyFile, &keys}, {fpFile, &fps}} {
		if f.path == "" {
			continue
		}
		file, err := os.Open(f.path)
		if err != nil {
			return nil, fmt.Errorf("reading libotr file: %w", err)
		}
		defer file.Close()
		*f.r = file
	}
	l, err := keystore.ReadLibotr(keys, fps)
	if err != nil {
		return nil, fmt.Errorf("%w (is it a libotr file? -key takes the private key file, -fingerprints the fingerprints file)", err)
	}
	return l, nil
}

// describeLibotrAccount says what the files hold for a.
func describeLibotrAccount(l *keystore.Libotr, a keystore.LibotrAccount) string {
	key := "no key"
	for _, k := range l.Keys {
		if k.Account == a {
			key = "key " + otrcore.FingerprintOf(&k.Key.PublicKey).String()
		}
	}
	n := 0
	for _, f := range l.Fingerprints {
		if f.Account == a {
			n++
		}
	}
	return fmt.Sprintf("-from %q -protocol %q: %s, %d fingerprint line(s)", a.Name, a.Protocol, key, n)
}

func printLibotrAccounts(w io.Writer, l *keystore.Libotr) {
	accts := l.Accounts()
	if len(accts) == 0 {
		fmt.Fprintln(w, "the files hold no libotr account")
		return
	}
	fmt.Fprintln(w, "libotr accounts in the files:")
	for _, a := range accts {
		fmt.Fprintln(w, "  "+describeLibotrAccount(l, a))
	}
}

// chooseLibotrAccount picks the libotr account to import; with several
// and no choice, the error lists them.
func chooseLibotrAccount(l *keystore.Libotr, name, protocol string) (keystore.LibotrAccount, error) {
	accts := l.Accounts()
	if len(accts) == 0 {
		return keystore.LibotrAccount{}, errors.New("the files hold no libotr account: nothing to import")
	}
	var match []keystore.LibotrAccount
	for _, a := range accts {
		if (name == "" || a.Name == name) && (protocol == "" || a.Protocol == protocol) {
			match = append(match, a)
		}
	}
	if len(match) == 1 {
		return match[0], nil
	}
	var b strings.Builder
	for _, a := range accts {
		b.WriteString("\n  " + describeLibotrAccount(l, a))
	}
	switch {
	case len(match) == 0:
		return keystore.LibotrAccount{}, fmt.Errorf("no libotr account %q in the files; they hold:%s", strings.TrimSpace(name+" "+protocol), b.String())
	case name == "":
		return keystore.LibotrAccount{}, fmt.Errorf("the files hold several libotr accounts; choose one with -from NAME (and -protocol P):%s", b.String())
	default:
		return keystore.LibotrAccount{}, fmt.Errorf("libotr account %q exists with several protocols; add -protocol P:%s", name, b.String())
	}
}

// importLibotr imports src from l into network's account.
func importLibotr(ctx context.Context, w io.Writer, store *keystore.Store, network string, l *keystore.Libotr, src keystore.LibotrAccount, replace bool, casemap string) error {
	sub := &keystore.Libotr{}
	var newKey *otrcore.Fingerprint
	for _, k := range l.Keys {
		if k.Account == src {
			sub.Keys = append(sub.Keys, k)
			fp := otrcore.FingerprintOf(&k.Key.PublicKey)
			newKey = &fp
		}
	}
	for _, f := range l.Fingerprints {
		if f.Account == src {
			f.Peer = foldNick(casemap, f.Peer)
			sub.Fingerprints = append(sub.Fingerprints, f)
		}
	}
	existed := slices.Contains(store.Accounts(), network)
	acct, err := store.Account(network)
	if err != nil {
		return err
	}
	if existed && newKey != nil {
		kctx, cancel := context.WithTimeout(ctx, keyTimeout)
		old, err := acct.Fingerprint(kctx)
		cancel()
		if err != nil {
			return fmt.Errorf("reading the current key of %s: %w", network, err)
		}
		if old != *newKey && !replace {
			return fmt.Errorf("network %s already has its own OTR key (fingerprint %s); importing would replace it with the libotr key (fingerprint %s), and peers who verified the old one would have to verify you again.\nTo replace it, run the same command with -replace-key; to import only the fingerprints, leave out -key. Nothing was changed", network, old, *newKey)
		}
	}
	res, err := acct.ImportLibotr(sub, src, time.Now())
	if err != nil {
		return err
	}
	if res.KeyImported {
		fmt.Fprintf(w, "%s: imported the key of libotr account %v; our fingerprint is now %s\n", network, src, *newKey)
	} else {
		fmt.Fprintf(w, "%s: the files hold no key for %v; the network keeps its own key\n", network, src)
	}
	fmt.Fprintf(w, "%s: imported %d fingerprint line(s), %d verified fingerprint(s)\n", network, res.Sightings, res.Trusted)
	if res.Dropped > 0 {
		fmt.Fprintf(w, "%s: %d unverified line(s) left out by the keystore's limits (%d fingerprints per network, %d per nick, %d nicks per fingerprint)\n",
			network, res.Dropped, keystore.DefaultMaxFingerprints, keystore.DefaultMaxFingerprintsPerNick, keystore.DefaultMaxNicksPerFingerprint)
	}
	fmt.Fprintln(w, "Start otrbnc again to use them; check with: otrbnc fingerprints")
	return nil
}

var exportLibotrCommand = subcommand{
	name:     "export-libotr",
	synopsis: "-key FILE -fingerprints FILE [-account NETWORK] [-as NAME] [-protocol P] [-force]",
	summary:  "export a network's OTR key and fingerprints as libotr files",
	help: `
Writes the OTR key and the known fingerprints (with their trust) of one
otrbnc network as a libotr private key file and fingerprints file (mode
0600), for use by irssi, HexChat, Pidgin or any libotr program. Nobody is
locked in: export-libotr followed by the client's import keeps your
fingerprint and your peers' verifications.

libotr files name the account; -as and -protocol choose the name and
protocol the target program uses (run "otrbnc import-libotr -list" on its
existing files to see them). The default is NICK@SERVER and IRC, built from
the network's configuration. Existing files are not overwritten without
-force; most programs keep all accounts in one file, so export to new files
and merge by hand if the program already has keys.

It reads the state directory, which the running otrbnc holds: stop otrbnc
first.

Examples:
  otrbnc export-libotr -key otr.key -fingerprints otr.fp
  otrbnc export-libotr -account libera -as alice@irc.libera.chat -protocol IRC \
      -key ~/.irssi/otr/otr.key -fingerprints ~/.irssi/otr/otr.fp
`,
	setup: func(fs *flag.FlagSet) runFunc {
		configPath := configFlag(fs)
		pass := passphraseFlag(fs)
		keyFile := fs.String("key", "", "private key `file` to write")
		fpFile := fs.String("fingerprints", "", "fingerprints `file` to write")
		account := fs.String("account", "", "otrbnc `network` to export (default: the only one)")
		as := fs.String("as", "", "libotr account `name` to write (default NICK@SERVER from the configuration)")
		protocol := fs.String("protocol", "IRC", "libotr `protocol` to write")
		force := fs.Bool("force", false, "overwrite existing files")
		return func(ctx context.Context, sio stdio, args []string) error {
			if len(args) > 0 {
				return fmt.Errorf("unexpected arguments %q (see: otrbnc export-libotr -h)", args)
			}
			if *keyFile == "" || *fpFile == "" {
				return errors.New("give both files to write: -key FILE -fingerprints FILE (see: otrbnc export-libotr -h)")
			}
			if !*force {
				for _, p := range []string{*keyFile, *fpFile} {
					if _, err := os.Lstat(p); err == nil {
						return fmt.Errorf("%s exists: choose another file, or add -force to overwrite it", p)
					}
				}
			}
			lc, nc, store, err := openNetwork(*configPath, *account, *pass, true)
			if err != nil {
				return err
			}
			defer closeStore(store, lc.stateDir())
			name := *as
			if name == "" {
				_, host, _, err := config.ParseServerAddress(nc.Address)
				if err != nil {
					return err
				}
				name = nc.Nick + "@" + host
			}
			if !slices.Contains(store.Accounts(), nc.Name) {
				return fmt.Errorf("no OTR account for %s in %s yet: otrbnc creates it when it first runs", nc.Name, lc.stateDir())
			}
			acct, err := store.Account(nc.Name)
			if err != nil {
				return err
			}
			kctx, cancel := context.WithTimeout(ctx, keyTimeout)
			defer cancel()
			l, err := acct.ExportLibotr(kctx, keystore.LibotrAccount{Name: name, Protocol: *protocol})
			if err != nil {
				return err
			}
			if err := writePrivateFile(*keyFile, l.WriteKeys); err != nil {
				return err
			}
			if err := writePrivateFile(*fpFile, l.WriteFingerprints); err != nil {
				return err
			}
			fmt.Fprintf(sio.out, "%s: wrote the key (fingerprint %s) to %s and %d fingerprint line(s) to %s, as libotr account %q protocol %q\n",
				nc.Name, otrcore.FingerprintOf(&l.Keys[0].Key.PublicKey), *keyFile, len(l.Fingerprints), *fpFile, name, *protocol)
			return nil
		}
	},
}

// writePrivateFile writes a file readable only by its owner (mode 0600),
// replacing path atomically.
func writePrivateFile(path string, write func(io.Writer) error) error {
	var b bytes.Buffer
	if err := write(&b); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return atomicfile.Write(path, b.Bytes())
}
