/*
 * Test harness for keystore's libotr interoperability tests.
 * keystore_test compiles it with the system C compiler against libotr.
 *
 *   harness gen KEYFILE FPFILE NAME PROTOCOL [NAME PROTOCOL ...]
 *       Generates a key per account with libotr, writes a fingerprints
 *       file with a fixed set of peers per account, then dumps both files.
 *   harness dump KEYFILE FPFILE
 *       Reads both files with libotr and prints what libotr understood:
 *         key<TAB>account<TAB>protocol<TAB>fingerprint-hex
 *         fp<TAB>peer<TAB>account<TAB>protocol<TAB>fingerprint-hex<TAB>trust
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <gcrypt.h>
#include <libotr/proto.h>
#include <libotr/userstate.h>
#include <libotr/privkey.h>
#include <libotr/context.h>

static void hex(const unsigned char *b, size_t n)
{
	size_t i;
	for (i = 0; i < n; i++)
		printf("%02x", b[i]);
}

static int dump(OtrlUserState us)
{
	OtrlPrivKey *k;
	ConnContext *c;
	Fingerprint *f;
	unsigned char h[20];

	for (k = us->privkey_root; k; k = k->next) {
		if (!otrl_privkey_fingerprint_raw(us, h, k->accountname, k->protocol)) {
			fprintf(stderr, "no fingerprint for %s\n", k->accountname);
			return 1;
		}
		printf("key\t%s\t%s\t", k->accountname, k->protocol);
		hex(h, 20);
		printf("\n");
	}
	for (c = us->context_root; c; c = c->next) {
		if (c->m_context != c)
			continue;
		for (f = c->fingerprint_root.next; f; f = f->next) {
			printf("fp\t%s\t%s\t%s\t", c->username, c->accountname, c->protocol);
			hex(f->fingerprint, 20);
			printf("\t%s\n", f->trust ? f->trust : "");
		}
	}
	return 0;
}

static void add_fp(OtrlUserState us, const char *peer, const char *acct,
		const char *proto, int seed, const char *trust)
{
	unsigned char fp[20];
	ConnContext *c;
	Fingerprint *f;
	int i;

	for (i = 0; i < 20; i++)
		fp[i] = (unsigned char)(seed * 31 + i * 7 + 1);
	c = otrl_context_find(us, peer, acct, proto, OTRL_INSTAG_MASTER, 1,
			NULL, NULL, NULL);
	f = otrl_context_find_fingerprint(c, fp, 1, NULL);
	otrl_context_set_trust(f, trust);
}

int main(int argc, char **argv)
{
	OtrlUserState us;
	gcry_error_t err;
	int i;

	OTRL_INIT;
	us = otrl_userstate_create();
	if (argc >= 4 && strcmp(argv[1], "gen") == 0 && argc % 2 == 0) {
		for (i = 4; i + 1 < argc; i += 2) {
			err = otrl_privkey_generate(us, argv[2], argv[i], argv[i + 1]);
			if (err) {
				fprintf(stderr, "generate: %s\n", gcry_strerror(err));
				return 1;
			}
			add_fp(us, "bob", argv[i], argv[i + 1], i, "");
			add_fp(us, "bob", argv[i], argv[i + 1], i + 100, "smp");
			add_fp(us, "carol[m]", argv[i], argv[i + 1], i + 200, "verified");
			add_fp(us, "dave", argv[i], argv[i + 1], i + 100, "manual");
		}
		err = otrl_privkey_write_fingerprints(us, argv[3]);
		if (err) {
			fprintf(stderr, "write fingerprints: %s\n", gcry_strerror(err));
			return 1;
		}
		otrl_userstate_free(us);
		us = otrl_userstate_create();
	} else if (argc != 4 || strcmp(argv[1], "dump") != 0) {
		fprintf(stderr, "usage: harness gen|dump KEYFILE FPFILE [NAME PROTOCOL ...]\n");
		return 2;
	}
	err = otrl_privkey_read(us, argv[2]);
	if (err) {
		fprintf(stderr, "read keys: %s\n", gcry_strerror(err));
		return 1;
	}
	err = otrl_privkey_read_fingerprints(us, argv[3], NULL, NULL);
	if (err) {
		fprintf(stderr, "read fingerprints: %s\n", gcry_strerror(err));
		return 1;
	}
	return dump(us);
}
