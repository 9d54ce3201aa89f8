// Package keystore keeps everything otrbnc must remember about OTR
// identities: per account, a long-term DSA key and an instance tag; per peer,
// the fingerprints seen (within the limits below), the nicks each was seen
// under and whether the user verified it.
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
// # Limits
//
// Any peer can show a new key at no cost, and every key shown is recorded,
// so what an account remembers is bounded ([Options]): by default 4096
// fingerprints per account, 16 per nick and 8 nicks per fingerprint, and
// peer names of at most [MaxPeerName] bytes. Making room evicts the
// untrusted fingerprint least recently seen (under the nick that is over
// its limit, or anywhere for the account's limit) and, for a fingerprint
// with too many nicks, the nick it was least recently seen under. Trusted
// fingerprints are never evicted: when only they could make room, the
// sighting is reported to the caller ([SeenResult.NotRecorded]) but not
// stored, and [Account.SetTrust] of yet another fingerprint fails with
// [ErrTooManyTrusted]. So a flood of keys can push out what the user has
// not verified, which only costs a later "new fingerprint" notice, but
// never what they have. Open refuses limits with which a file could
// outgrow the 64 MiB it reads, and brings files of earlier versions, which
// had no limits, within them.
//
// # Storage
//
// [Open] uses one directory (systemd's StateDirectory, for example). The
// directory is made mode 0700 and holds one file per account,
// "account-NAME.json", mode 0600, plus a "lock" file that keeps a second
// process from using the same directory. Every write replaces the whole
// file through [otrbnc/keystore/atomicfile]: a temporary file, flushed
// with fsync, renamed over the old file, then the directory flushed, so a
// crash or kill -9 at any moment leaves either the old or the new state,
// never a mix.
//
// When a change reaches the disk depends on who is told about it. Trust
// changes, [Account.Forget], [Account.ReplaceKey], imports and a newly
// generated key are written before the call returns: the user is told
// "trusted" only once it is on disk. Sightings ([Account.SeenFingerprint])
// arrive with every key exchange and under a flood of keys, so they only
// change memory; a background writer per account writes them, one write
// at a time, at most every two seconds and at most a tenth of the time. A
// crash loses at most the sightings of those last seconds. [Account.Flush]
// writes them at once and [Store.Close] before it releases the directory.
// A failed background write is logged through [Options.Logger] and
// retried with growing delays; [Account.Flush] and [Store.Close] return
// the error if it persists.
//
// A file that cannot be read (corrupt, too large, written by something
// else, a newer format, or sealed with another passphrase) makes Open fail
// with an error that names it, says what is wrong and what the user can
// do (restore a backup, or move the file away and lose what it held); the
// file is never modified, renamed or overwritten.
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
