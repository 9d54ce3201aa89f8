// Package keystore keeps everything otrbnc must remember about OTR
// identities: per account, a long-term DSA key and an instance tag; per peer,
// every fingerprint ever seen, the nicks it was seen under and whether the
// user verified it.
//
// # Model
//
// An [Account] is one IRC network identity, named by the configuration. Its
// DSA-1024 key is generated in the background the first time the account is
// used; [Account.PrivateKey] waits for it. Its instance tag is random, at
// least 0x100, and is never imported from elsewhere.
//
// Trust belongs to a fingerprint, not to a nick: a nick is only a hint of who
// is talking, and anyone can take a nick. Every fingerprint records the nicks
// it has been seen under, so the proxy can warn when a nick shows a new key
// ([SeenResult.OtherFingerprints]) or a known key appears under a new nick
// ([SeenResult.OtherNicks]). The keystore never changes trust on its own; in
// particular a failed SMP run does not remove a manual verification unless the
// caller calls [Account.SetTrust].
//
// Peer names are opaque strings. The proxy passes nicks already case-folded
// with the network's case mapping.
//
// # Storage
//
// [Open] uses one directory (systemd's StateDirectory, for example). The
// directory is made mode 0700 and holds one file per account,
// "account-NAME.json", mode 0600, plus a "lock" file that keeps a second
// process from using the same directory. Every change is written to a
// temporary file, flushed with fsync, renamed over the old file and then the
// directory is flushed, so a crash or kill -9 at any moment leaves either
// the old or the new state. A file that cannot be read (corrupt, written by
// something else, a newer format, or sealed with another passphrase) makes
// Open fail with an error naming it; the file is never modified, renamed or
// overwritten, so the user can inspect it or move it away.
//
// The account file is JSON:
//
//	{"format": "otrbnc-keystore", "version": 1, "account": "NAME", "state": {...}}
//
// where state holds "instance_tag", "private_key" (hexadecimal p, q, g, y, x)
// and "fingerprints" (each with its trust, verification time and sightings).
// When a passphrase is configured, "state" is replaced by "sealed", which
// carries the Argon2id parameters and salt, an XChaCha20-Poly1305 nonce and
// the encrypted state; the format, version and account name are authenticated
// as additional data, so a sealed state cannot be moved to another account.
//
// # Encryption at rest: threat model
//
// With [Options.Passphrase] set, account files are sealed with a key derived
// from the passphrase by Argon2id (3 passes, 64 MiB, 4 lanes) and encrypted
// with XChaCha20-Poly1305. This protects the private keys, and the list of
// contacts and their trust, in copies of the state directory made while
// otrbnc is not holding them: stolen disks and disk images, backups, and
// snapshots. It also makes tampering with such a copy detectable.
//
// It does not protect against anyone who can read the memory of the running
// process, attach a debugger, or read the passphrase source (the
// configuration's passphrase file or systemd credential, which must be kept
// elsewhere than the state directory to be of any use), nor against an
// attacker who can run code as the otrbnc user: the decrypted keys live in
// process memory for the life of the process, and Go cannot reliably wipe
// them. It does not hide which accounts exist (file names) or when the state
// changed. A weak passphrase can be guessed offline; Argon2id only makes each
// guess expensive. If plaintext state existed before a passphrase was
// configured, Open seals it, but older plaintext copies may survive on disk,
// in backups or in filesystem journals.
//
// Without the passphrase a sealed store cannot be opened: Open returns
// [ErrPassphraseRequired], or [ErrWrongPassphrase] for a wrong one, and otrbnc
// refuses to start.
//
// # libotr
//
// [ReadLibotr] reads the private key and fingerprints files of libotr (used by
// Pidgin, irssi, HexChat and znc-otr) and [Account.ImportLibotr] imports one
// libotr account into one otrbnc account. [Account.ExportLibotr] and
// [Libotr.WriteKeys] / [Libotr.WriteFingerprints] produce files libotr reads,
// so nobody is locked in.
//
// All methods are safe for concurrent use by multiple goroutines.
package keystore
