/*
 * peer.c: a small OTR client built on libotr 4.1.1's public API, used by the
 * Go package otrbnc/otrcore/otrtest/libotrpeer as an interoperability peer and
 * as a benchmark of libotr itself.  The Go package embeds this file and
 * compiles it with the system C compiler; it is not built by cgo.
 *
 * Usage:
 *   peer serve [--account NAME] [--protocol NAME] --dir DIR
 *              [--policy BITS] [--mms N] [--instag TAG]
 *   peer bench WORKLOAD N
 *
 * The line protocol spoken in "serve" mode is documented in ../doc.go.  In
 * short: one command per input line, words separated by single spaces,
 * free-form arguments hex-encoded ("-" is the empty string); every response
 * is a sequence of "out", "event", "msg", "ignored" and "val" lines ended by
 * "ok" or "err TEXT".
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <malloc.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <gcrypt.h>
#include <libotr/proto.h>
#include <libotr/message.h>
#include <libotr/privkey.h>
#include <libotr/instag.h>
#include <libotr/userstate.h>
#include <libotr/context.h>
#include <libotr/tlv.h>
#include <libotr/sm.h>

/* Longest accepted input line, excluding the newline. */
#define MAX_LINE (1024 * 1024)
/* Most words accepted on one command line. */
#define MAX_WORDS 8

/* Where protocol output goes.  File descriptor 1 is redirected to stderr at
 * startup so that nothing but the protocol can ever reach the real stdout. */
static FILE *out;

/* One OTR user: its userstate and the settings the callbacks report. */
typedef struct side {
    const char *account;
    const char *protocol;
    OtrlUserState us;
    OtrlPolicy policy;
    int mms;

    /* Serve mode: files for the key, instance tag and fingerprints. */
    char *keyfile;
    char *instagfile;
    char *fpfile;

    /* Bench mode: nothing is printed; injected messages are queued for
     * the other side and a few events are counted. */
    int quiet;
    struct side *other;
    unsigned long secure_events;
    unsigned long delivered;
    unsigned long smp_success;
    unsigned long smp_failure;
    ConnContext *smp_ask_ctx;
} Side;

/* ------------------------------------------------------------------ */
/* Output helpers                                                      */

static void put_hex(const void *data, size_t len)
{
    static const char digits[] = "0123456789abcdef";
    const unsigned char *p = data;
    size_t i;

    for (i = 0; i < len; i++) {
	putc(digits[p[i] >> 4], out);
	putc(digits[p[i] & 0x0f], out);
    }
}

/* A positional field: hex, or "-" when empty. */
static void put_field(const void *data, size_t len)
{
    putc(' ', out);
    if (len == 0) {
	putc('-', out);
    } else {
	put_hex(data, len);
    }
}

static void kv_bytes(const char *key, const void *data, size_t len)
{
    fprintf(out, " %s=", key);
    put_hex(data, len);
}

static void kv_str(const char *key, const char *s)
{
    kv_bytes(key, s, s ? strlen(s) : 0);
}

static void kv_uint(const char *key, unsigned long v)
{
    char buf[32];

    snprintf(buf, sizeof(buf), "%lu", v);
    kv_str(key, buf);
}

static void kv_tag(const char *key, otrl_instag_t tag)
{
    char buf[16];

    snprintf(buf, sizeof(buf), "%08x", (unsigned int)tag);
    kv_str(key, buf);
}

static void kv_fpr(const char *key, const unsigned char *fpr)
{
    char buf[41];
    int i;

    buf[0] = '\0';
    if (fpr) {
	for (i = 0; i < 20; i++) {
	    snprintf(buf + 2 * i, 3, "%02x", fpr[i]);
	}
    }
    kv_str(key, buf);
}

static void finish_ok(void)
{
    fputs("ok\n", out);
    if (fflush(out) != 0) {
	exit(1);
    }
}

static void finish_err(const char *msg)
{
    fprintf(out, "err %s\n", msg);
    if (fflush(out) != 0) {
	exit(1);
    }
}

/* Starts an event line; returns 0 (and prints nothing) in bench mode. */
static int ev_begin(const Side *s, const char *name)
{
    if (s->quiet) {
	return 0;
    }
    fprintf(out, "event %s", name);
    return 1;
}

static void ev_context(const ConnContext *ctx)
{
    if (!ctx) {
	return;
    }
    kv_str("username", ctx->username);
    kv_tag("instance", ctx->their_instance);
}

static void ev_end(void)
{
    putc('\n', out);
}

static const char *msgevent_name(OtrlMessageEvent ev)
{
    static const char *const names[] = {
	"OTRL_MSGEVENT_NONE",
	"OTRL_MSGEVENT_ENCRYPTION_REQUIRED",
	"OTRL_MSGEVENT_ENCRYPTION_ERROR",
	"OTRL_MSGEVENT_CONNECTION_ENDED",
	"OTRL_MSGEVENT_SETUP_ERROR",
	"OTRL_MSGEVENT_MSG_REFLECTED",
	"OTRL_MSGEVENT_MSG_RESENT",
	"OTRL_MSGEVENT_RCVDMSG_NOT_IN_PRIVATE",
	"OTRL_MSGEVENT_RCVDMSG_UNREADABLE",
	"OTRL_MSGEVENT_RCVDMSG_MALFORMED",
	"OTRL_MSGEVENT_LOG_HEARTBEAT_RCVD",
	"OTRL_MSGEVENT_LOG_HEARTBEAT_SENT",
	"OTRL_MSGEVENT_RCVDMSG_GENERAL_ERR",
	"OTRL_MSGEVENT_RCVDMSG_UNENCRYPTED",
	"OTRL_MSGEVENT_RCVDMSG_UNRECOGNIZED",
	"OTRL_MSGEVENT_RCVDMSG_FOR_OTHER_INSTANCE",
    };
    if ((unsigned int)ev < sizeof(names) / sizeof(names[0])) {
	return names[ev];
    }
    return "OTRL_MSGEVENT_UNKNOWN";
}

static const char *smpevent_name(OtrlSMPEvent ev)
{
    static const char *const names[] = {
	"OTRL_SMPEVENT_NONE",
	"OTRL_SMPEVENT_ERROR",
	"OTRL_SMPEVENT_ABORT",
	"OTRL_SMPEVENT_CHEATED",
	"OTRL_SMPEVENT_ASK_FOR_ANSWER",
	"OTRL_SMPEVENT_ASK_FOR_SECRET",
	"OTRL_SMPEVENT_IN_PROGRESS",
	"OTRL_SMPEVENT_SUCCESS",
	"OTRL_SMPEVENT_FAILURE",
    };
    if ((unsigned int)ev < sizeof(names) / sizeof(names[0])) {
	return names[ev];
    }
    return "OTRL_SMPEVENT_UNKNOWN";
}

static const char *msgstate_name(OtrlMessageState st)
{
    switch (st) {
	case OTRL_MSGSTATE_PLAINTEXT:
	    return "plaintext";
	case OTRL_MSGSTATE_ENCRYPTED:
	    return "encrypted";
	case OTRL_MSGSTATE_FINISHED:
	    return "finished";
    }
    return "unknown";
}

/* ------------------------------------------------------------------ */
/* Bench-mode message queue                                            */

typedef struct qitem {
    struct qitem *next;
    Side *to;
    char *from;
    char *msg;
} QItem;

static QItem *q_head, *q_tail;

static char *xstrdup(const char *s)
{
    char *d = strdup(s);

    if (!d) {
	fprintf(stderr, "peer: out of memory\n");
	exit(1);
    }
    return d;
}

/* Queues a message injected by side src for recipient.  Names are mapped
 * so that recipient "<dst account><suffix>" on src's side appears as sender
 * "<src account><suffix>" on the destination side; this lets one pair of
 * userstates hold many independent conversations. */
static void queue_push(Side *src, const char *recipient, const char *msg)
{
    Side *dst = src->other;
    size_t plen = strlen(dst->account);
    const char *suffix = recipient;
    QItem *it = calloc(1, sizeof(*it));
    size_t flen;

    if (!it) {
	fprintf(stderr, "peer: out of memory\n");
	exit(1);
    }
    if (strncmp(recipient, dst->account, plen) == 0) {
	suffix = recipient + plen;
    }
    flen = strlen(src->account) + strlen(suffix) + 1;
    it->from = malloc(flen);
    if (!it->from) {
	fprintf(stderr, "peer: out of memory\n");
	exit(1);
    }
    snprintf(it->from, flen, "%s%s", src->account, suffix);
    it->to = dst;
    it->msg = xstrdup(msg);
    if (q_tail) {
	q_tail->next = it;
    } else {
	q_head = it;
    }
    q_tail = it;
}

/* ------------------------------------------------------------------ */
/* libotr callbacks                                                    */

static OtrlPolicy cb_policy(void *opdata, ConnContext *context)
{
    Side *s = opdata;

    (void)context;
    return s->policy;
}

static void cb_create_privkey(void *opdata, const char *accountname,
	const char *protocol)
{
    Side *s = opdata;

    if (ev_begin(s, "create_privkey")) {
	kv_str("account", accountname);
	kv_str("protocol", protocol);
	ev_end();
    }
    if (s->keyfile) {
	otrl_privkey_generate(s->us, s->keyfile, accountname, protocol);
    }
}

static int cb_is_logged_in(void *opdata, const char *accountname,
	const char *protocol, const char *recipient)
{
    (void)opdata;
    (void)accountname;
    (void)protocol;
    (void)recipient;
    return 1;
}

static void cb_inject_message(void *opdata, const char *accountname,
	const char *protocol, const char *recipient, const char *message)
{
    Side *s = opdata;

    (void)accountname;
    (void)protocol;
    if (message == NULL || message[0] == '\0') {
	/* libotr asks to send "" when a message is blocked (FINISHED);
	 * an IM client would not send an empty line. */
	if (ev_begin(s, "inject_empty")) {
	    kv_str("recipient", recipient);
	    ev_end();
	}
	return;
    }
    if (s->quiet) {
	queue_push(s, recipient, message);
	return;
    }
    fputs("out", out);
    put_field(recipient, strlen(recipient));
    put_field(message, strlen(message));
    putc('\n', out);
}

static void cb_update_context_list(void *opdata)
{
    Side *s = opdata;

    if (ev_begin(s, "update_context_list")) {
	ev_end();
    }
}

static void cb_new_fingerprint(void *opdata, OtrlUserState us,
	const char *accountname, const char *protocol, const char *username,
	unsigned char fingerprint[20])
{
    Side *s = opdata;

    (void)us;
    if (ev_begin(s, "new_fingerprint")) {
	kv_str("account", accountname);
	kv_str("protocol", protocol);
	kv_str("username", username);
	kv_fpr("fingerprint", fingerprint);
	ev_end();
    }
}

static void cb_write_fingerprints(void *opdata)
{
    Side *s = opdata;

    if (s->fpfile) {
	otrl_privkey_write_fingerprints(s->us, s->fpfile);
    }
    if (ev_begin(s, "write_fingerprints")) {
	ev_end();
    }
}

static void cb_gone_secure(void *opdata, ConnContext *context)
{
    Side *s = opdata;

    s->secure_events++;
    if (ev_begin(s, "gone_secure")) {
	ev_context(context);
	kv_uint("version", context->protocol_version);
	kv_fpr("fingerprint", context->active_fingerprint ?
		context->active_fingerprint->fingerprint : NULL);
	ev_end();
    }
}

static void cb_gone_insecure(void *opdata, ConnContext *context)
{
    Side *s = opdata;

    if (ev_begin(s, "gone_insecure")) {
	ev_context(context);
	ev_end();
    }
}

static void cb_still_secure(void *opdata, ConnContext *context, int is_reply)
{
    Side *s = opdata;

    s->secure_events++;
    if (ev_begin(s, "still_secure")) {
	ev_context(context);
	kv_uint("is_reply", is_reply ? 1 : 0);
	ev_end();
    }
}

static int cb_max_message_size(void *opdata, ConnContext *context)
{
    Side *s = opdata;

    (void)context;
    return s->mms;
}

static const char *cb_account_name(void *opdata, const char *account,
	const char *protocol)
{
    (void)opdata;
    (void)protocol;
    return strdup(account);
}

static void cb_account_name_free(void *opdata, const char *account_name)
{
    (void)opdata;
    free((char *)account_name);
}

static void cb_received_symkey(void *opdata, ConnContext *context,
	unsigned int use, const unsigned char *usedata, size_t usedatalen,
	const unsigned char *symkey)
{
    Side *s = opdata;

    if (ev_begin(s, "received_symkey")) {
	ev_context(context);
	kv_uint("use", use);
	kv_bytes("usedata", usedata, usedatalen);
	kv_bytes("key", symkey, OTRL_EXTRAKEY_BYTES);
	ev_end();
    }
}

static const char *cb_otr_error_message(void *opdata, ConnContext *context,
	OtrlErrorCode err_code)
{
    Side *s = opdata;
    const char *text;

    switch (err_code) {
	case OTRL_ERRCODE_ENCRYPTION_ERROR:
	    text = "Error occurred encrypting message.";
	    break;
	case OTRL_ERRCODE_MSG_NOT_IN_PRIVATE:
	    text = "You sent encrypted data to a peer who was not in a "
		"private conversation with you.";
	    break;
	case OTRL_ERRCODE_MSG_UNREADABLE:
	    text = "You transmitted an unreadable encrypted message.";
	    break;
	case OTRL_ERRCODE_MSG_MALFORMED:
	    text = "You transmitted a malformed data message.";
	    break;
	default:
	    text = "Unknown error.";
	    break;
    }
    if (ev_begin(s, "otr_error_message")) {
	ev_context(context);
	kv_uint("code", (unsigned long)err_code);
	ev_end();
    }
    return strdup(text);
}

static void cb_otr_error_message_free(void *opdata, const char *err_msg)
{
    (void)opdata;
    free((char *)err_msg);
}

static void cb_handle_smp_event(void *opdata, OtrlSMPEvent smp_event,
	ConnContext *context, unsigned short progress_percent, char *question)
{
    Side *s = opdata;

    switch (smp_event) {
	case OTRL_SMPEVENT_SUCCESS:
	    s->smp_success++;
	    break;
	case OTRL_SMPEVENT_FAILURE:
	    s->smp_failure++;
	    break;
	case OTRL_SMPEVENT_ASK_FOR_SECRET:
	case OTRL_SMPEVENT_ASK_FOR_ANSWER:
	    s->smp_ask_ctx = context;
	    break;
	default:
	    break;
    }
    if (ev_begin(s, "handle_smp_event")) {
	ev_context(context);
	kv_str("event", smpevent_name(smp_event));
	kv_uint("progress", progress_percent);
	if (question) {
	    kv_str("question", question);
	}
	ev_end();
    }
}

static void cb_handle_msg_event(void *opdata, OtrlMessageEvent msg_event,
	ConnContext *context, const char *message, gcry_error_t err)
{
    Side *s = opdata;

    if (ev_begin(s, "handle_msg_event")) {
	ev_context(context);
	kv_str("event", msgevent_name(msg_event));
	if (message) {
	    kv_str("message", message);
	}
	if (err) {
	    kv_str("err", gcry_strerror(err));
	}
	ev_end();
    }
}

static void cb_create_instag(void *opdata, const char *accountname,
	const char *protocol)
{
    Side *s = opdata;

    if (ev_begin(s, "create_instag")) {
	kv_str("account", accountname);
	kv_str("protocol", protocol);
	ev_end();
    }
    if (s->instagfile) {
	otrl_instag_generate(s->us, s->instagfile, accountname, protocol);
    } else {
	FILE *f = tmpfile();
	if (f) {
	    otrl_instag_generate_FILEp(s->us, f, accountname, protocol);
	    fclose(f);
	}
    }
}

static void cb_timer_control(void *opdata, unsigned int interval)
{
    Side *s = opdata;

    if (ev_begin(s, "timer_control")) {
	kv_uint("interval", interval);
	ev_end();
    }
}

static OtrlMessageAppOps ops = {
    .policy = cb_policy,
    .create_privkey = cb_create_privkey,
    .is_logged_in = cb_is_logged_in,
    .inject_message = cb_inject_message,
    .update_context_list = cb_update_context_list,
    .new_fingerprint = cb_new_fingerprint,
    .write_fingerprints = cb_write_fingerprints,
    .gone_secure = cb_gone_secure,
    .gone_insecure = cb_gone_insecure,
    .still_secure = cb_still_secure,
    .max_message_size = cb_max_message_size,
    .account_name = cb_account_name,
    .account_name_free = cb_account_name_free,
    .received_symkey = cb_received_symkey,
    .otr_error_message = cb_otr_error_message,
    .otr_error_message_free = cb_otr_error_message_free,
    .resent_msg_prefix = NULL,
    .resent_msg_prefix_free = NULL,
    .handle_smp_event = cb_handle_smp_event,
    .handle_msg_event = cb_handle_msg_event,
    .create_instag = cb_create_instag,
    .convert_msg = NULL,
    .convert_free = NULL,
    .timer_control = cb_timer_control,
};

/* ------------------------------------------------------------------ */
/* Input parsing                                                       */

/* Reads one line into *bufp (NUL-terminated, newline removed).  Returns
 * the line length, -1 at end of input, or -2 if the line was longer than
 * MAX_LINE (the rest of it is consumed and discarded). */
static long read_line(FILE *in, char **bufp, size_t *capp)
{
    size_t len = 0;
    int c;
    int too_long = 0;

    for (;;) {
	c = getc_unlocked(in);
	if (c == EOF) {
	    if (len == 0 && !too_long) {
		return -1;
	    }
	    break;
	}
	if (c == '\n') {
	    break;
	}
	if (too_long) {
	    continue;
	}
	if (len >= MAX_LINE) {
	    too_long = 1;
	    continue;
	}
	if (len + 1 >= *capp) {
	    size_t ncap = *capp ? *capp * 2 : 4096;
	    char *nbuf;

	    if (ncap > MAX_LINE + 1) {
		ncap = MAX_LINE + 1;
	    }
	    nbuf = realloc(*bufp, ncap);
	    if (!nbuf) {
		fprintf(stderr, "peer: out of memory\n");
		exit(1);
	    }
	    *bufp = nbuf;
	    *capp = ncap;
	}
	(*bufp)[len++] = (char)c;
    }
    if (too_long) {
	return -2;
    }
    if (*capp == 0) {
	*bufp = malloc(1);
	if (!*bufp) {
	    exit(1);
	}
	*capp = 1;
    }
    (*bufp)[len] = '\0';
    return (long)len;
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9') {
	return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
	return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
	return c - 'A' + 10;
    }
    return -1;
}

/* A decoded argument; data is always NUL-terminated. */
typedef struct {
    unsigned char *data;
    size_t len;
} Arg;

/* Decodes a hex word ("-" is empty) into a.  Returns 0 on success. */
static int decode_hex(const char *word, Arg *a)
{
    size_t n = strlen(word);
    size_t i;

    a->data = NULL;
    a->len = 0;
    if (strcmp(word, "-") == 0) {
	n = 0;
    } else if (n % 2 != 0) {
	return -1;
    }
    a->data = malloc(n / 2 + 1);
    if (!a->data) {
	return -1;
    }
    for (i = 0; i < n / 2; i++) {
	int hi = hexval((unsigned char)word[2 * i]);
	int lo = hexval((unsigned char)word[2 * i + 1]);

	if (hi < 0 || lo < 0) {
	    free(a->data);
	    a->data = NULL;
	    return -1;
	}
	a->data[i] = (unsigned char)(hi << 4 | lo);
    }
    a->data[n / 2] = '\0';
    a->len = n / 2;
    return 0;
}

/* Decodes a hex word that must be text without NUL bytes. */
static int decode_text(const char *word, Arg *a)
{
    if (decode_hex(word, a) != 0) {
	return -1;
    }
    if (memchr(a->data, '\0', a->len) != NULL) {
	free(a->data);
	a->data = NULL;
	return -1;
    }
    return 0;
}

/* Parses an unsigned number (decimal, or hex with 0x). */
static int parse_uint(const char *word, unsigned long max, unsigned long *v)
{
    char *end;
    unsigned long x;

    if (word[0] == '\0' || word[0] == '-' || word[0] == '+') {
	return -1;
    }
    errno = 0;
    x = strtoul(word, &end, 0);
    if (errno != 0 || *end != '\0' || x > max) {
	return -1;
    }
    *v = x;
    return 0;
}

/* Parses an instance tag written as 8 hex digits (or 0x-prefixed / small
 * decimal meta values such as 1 for OTRL_INSTAG_BEST). */
static int parse_tag(const char *word, otrl_instag_t *tag)
{
    unsigned long v;
    char buf[24];

    if (strlen(word) == 8 && strchr(word, 'x') == NULL) {
	snprintf(buf, sizeof(buf), "0x%s", word);
	word = buf;
    }
    if (parse_uint(word, 0xffffffffUL, &v) != 0) {
	return -1;
    }
    *tag = (otrl_instag_t)v;
    return 0;
}

/* ------------------------------------------------------------------ */
/* Serve mode                                                          */

static ConnContext *find_context(Side *s, const char *user,
	otrl_instag_t tag)
{
    ConnContext *master = otrl_context_find(s->us, user, s->account,
	    s->protocol, OTRL_INSTAG_MASTER, 0, NULL, NULL, NULL);

    if (!master) {
	return NULL;
    }
    if (tag == OTRL_INSTAG_MASTER) {
	return master;
    }
    if (tag == OTRL_INSTAG_BEST) {
	return otrl_context_find_recent_secure_instance(master);
    }
    if (tag < OTRL_MIN_VALID_INSTAG) {
	return otrl_context_find_recent_instance(master, tag);
    }
    return otrl_context_find(s->us, user, s->account, s->protocol, tag, 0,
	    NULL, NULL, NULL);
}

static void free_args(Arg *args, int n)
{
    int i;

    for (i = 0; i < n; i++) {
	free(args[i].data);
	args[i].data = NULL;
    }
}

/* Checks the word count and decodes words[1..ntext] as NUL-free text. */
static int want_args(char **words, int nwords, int min, int max)
{
    char msg[96];

    if (nwords - 1 < min || nwords - 1 > max) {
	if (min == max) {
	    snprintf(msg, sizeof(msg), "%s: want %d arguments, got %d",
		    words[0], min, nwords - 1);
	} else {
	    snprintf(msg, sizeof(msg), "%s: want %d to %d arguments, got %d",
		    words[0], min, max, nwords - 1);
	}
	finish_err(msg);
	return 0;
    }
    return 1;
}

static void report_status(Side *s, ConnContext *ctx)
{
    Fingerprint *fp = ctx->active_fingerprint;
    const char *trust = (fp && fp->trust) ? fp->trust : "";

    fputs("val", out);
    kv_str("msgstate", msgstate_name(ctx->msgstate));
    kv_uint("version", ctx->protocol_version);
    kv_str("username", ctx->username);
    kv_tag("our_instance", ctx->our_instance);
    kv_tag("their_instance", ctx->their_instance);
    kv_fpr("fingerprint", fp ? fp->fingerprint : NULL);
    kv_str("trust", trust);
    kv_uint("trusted", (fp && otrl_context_is_fingerprint_trusted(fp)) ?
	    1 : 0);
    if (ctx->msgstate == OTRL_MSGSTATE_ENCRYPTED) {
	kv_bytes("ssid", ctx->sessionid, ctx->sessionid_len);
	kv_str("ssid_half",
		ctx->sessionid_half == OTRL_SESSIONID_FIRST_HALF_BOLD ?
		"first" : "second");
    } else {
	kv_str("ssid", "");
	kv_str("ssid_half", "");
    }
    kv_uint("smp_expect", ctx->smstate ?
	    (unsigned long)ctx->smstate->nextExpected + 1 : 0);
    kv_uint("master", ctx->m_context == ctx ? 1 : 0);
    (void)s;
    putc('\n', out);
}

static void cmd_recv(Side *s, char **w, int nw)
{
    Arg a[2] = {{0}};
    char *newmsg = NULL;
    OtrlTLV *tlvs = NULL, *t;
    int ignore;

    if (!want_args(w, nw, 2, 2)) {
	return;
    }
    if (decode_text(w[1], &a[0]) != 0 || a[0].len == 0 ||
	    decode_text(w[2], &a[1]) != 0) {
	free_args(a, 2);
	finish_err("recv: bad argument encoding");
	return;
    }
    ignore = otrl_message_receiving(s->us, &ops, s, s->account, s->protocol,
	    (char *)a[0].data, (char *)a[1].data, &newmsg, &tlvs, NULL,
	    NULL, NULL);
    for (t = tlvs; t; t = t->next) {
	fputs("event tlv", out);
	kv_uint("type", t->type);
	kv_bytes("data", t->data, t->len);
	putc('\n', out);
    }
    if (ignore) {
	fputs("ignored\n", out);
    } else {
	const char *shown = newmsg ? newmsg : (const char *)a[1].data;

	fputs("msg", out);
	put_field(shown, strlen(shown));
	putc('\n', out);
    }
    otrl_tlv_free(tlvs);
    otrl_message_free(newmsg);
    free_args(a, 2);
    finish_ok();
}

static void cmd_send(Side *s, char **w, int nw)
{
    Arg a[2] = {{0}};
    otrl_instag_t tag = OTRL_INSTAG_BEST;
    char *newmsg = NULL;
    gcry_error_t err;

    if (!want_args(w, nw, 2, 3)) {
	return;
    }
    if (decode_text(w[1], &a[0]) != 0 || a[0].len == 0 ||
	    decode_text(w[2], &a[1]) != 0 ||
	    (nw > 3 && parse_tag(w[3], &tag) != 0)) {
	free_args(a, 2);
	finish_err("send: bad argument encoding");
	return;
    }
    err = otrl_message_sending(s->us, &ops, s, s->account, s->protocol,
	    (char *)a[0].data, tag, (char *)a[1].data, NULL, &newmsg,
	    OTRL_FRAGMENT_SEND_ALL, NULL, NULL, NULL);
    if (err) {
	char msg[160];

	snprintf(msg, sizeof(msg), "send: otrl_message_sending: %s",
		gcry_strerror(err));
	otrl_message_free(newmsg);
	free_args(a, 2);
	finish_err(msg);
	return;
    }
    if (newmsg == NULL) {
	/* libotr left the message alone: the application sends it. */
	if (ev_begin(s, "send_unmodified")) {
	    ev_end();
	}
	cb_inject_message(s, s->account, s->protocol, (char *)a[0].data,
		(char *)a[1].data);
    }
    otrl_message_free(newmsg);
    free_args(a, 2);
    finish_ok();
}

static void cmd_query(Side *s, char **w, int nw)
{
    Arg to = {0};
    char *q;

    if (!want_args(w, nw, 1, 1)) {
	return;
    }
    if (decode_text(w[1], &to) != 0 || to.len == 0) {
	free(to.data);
	finish_err("query: bad argument encoding");
	return;
    }
    q = otrl_proto_default_query_msg(s->account, s->policy);
    if (!q) {
	free(to.data);
	finish_err("query: otrl_proto_default_query_msg failed");
	return;
    }
    cb_inject_message(s, s->account, s->protocol, (char *)to.data, q);
    free(q);
    free(to.data);
    finish_ok();
}

static void cmd_end(Side *s, char **w, int nw)
{
    Arg to = {0};

    if (!want_args(w, nw, 1, 1)) {
	return;
    }
    if (decode_text(w[1], &to) != 0 || to.len == 0) {
	free(to.data);
	finish_err("end: bad argument encoding");
	return;
    }
    otrl_message_disconnect_all_instances(s->us, &ops, s, s->account,
	    s->protocol, (char *)to.data);
    free(to.data);
    finish_ok();
}

/* Looks up the context named by words[1] and the optional instance-tag
 * word at index tagidx (if present).  Reports an error and returns NULL
 * if there is none. */
static ConnContext *context_arg(Side *s, const char *cmd, char **w, int nw,
	int tagidx, int need_encrypted)
{
    Arg to = {0};
    otrl_instag_t tag = OTRL_INSTAG_BEST;
    ConnContext *ctx;
    char msg[128];

    if (decode_text(w[1], &to) != 0 || to.len == 0 ||
	    (tagidx > 0 && nw > tagidx && parse_tag(w[tagidx], &tag) != 0)) {
	free(to.data);
	snprintf(msg, sizeof(msg), "%s: bad argument encoding", cmd);
	finish_err(msg);
	return NULL;
    }
    ctx = find_context(s, (char *)to.data, tag);
    free(to.data);
    if (!ctx) {
	snprintf(msg, sizeof(msg), "%s: no such context", cmd);
	finish_err(msg);
	return NULL;
    }
    if (need_encrypted && ctx->msgstate != OTRL_MSGSTATE_ENCRYPTED) {
	snprintf(msg, sizeof(msg), "%s: context is %s, not encrypted", cmd,
		msgstate_name(ctx->msgstate));
	finish_err(msg);
	return NULL;
    }
    return ctx;
}

static void cmd_smp_start(Side *s, char **w, int nw)
{
    Arg a[2] = {{0}};
    ConnContext *ctx;

    if (!want_args(w, nw, 2, 3)) {
	return;
    }
    if (decode_hex(w[2], &a[0]) != 0 ||
	    (nw > 3 && decode_text(w[3], &a[1]) != 0)) {
	free_args(a, 2);
	finish_err("smp_start: bad argument encoding");
	return;
    }
    ctx = context_arg(s, "smp_start", w, nw, 0, 1);
    if (ctx) {
	if (nw > 3) {
	    otrl_message_initiate_smp_q(s->us, &ops, s, ctx,
		    (char *)a[1].data, a[0].data, a[0].len);
	} else {
	    otrl_message_initiate_smp(s->us, &ops, s, ctx, a[0].data,
		    a[0].len);
	}
	finish_ok();
    }
    free_args(a, 2);
}

static void cmd_smp_respond(Side *s, char **w, int nw)
{
    Arg secret = {0};
    ConnContext *ctx;

    if (!want_args(w, nw, 2, 2)) {
	return;
    }
    if (decode_hex(w[2], &secret) != 0) {
	finish_err("smp_respond: bad argument encoding");
	return;
    }
    ctx = context_arg(s, "smp_respond", w, nw, 0, 1);
    if (ctx) {
	otrl_message_respond_smp(s->us, &ops, s, ctx, secret.data,
		secret.len);
	finish_ok();
    }
    free(secret.data);
}

static void cmd_smp_abort(Side *s, char **w, int nw)
{
    ConnContext *ctx;

    if (!want_args(w, nw, 1, 1)) {
	return;
    }
    ctx = context_arg(s, "smp_abort", w, nw, 0, 0);
    if (ctx) {
	otrl_message_abort_smp(s->us, &ops, s, ctx);
	finish_ok();
    }
}

static void cmd_symkey(Side *s, char **w, int nw)
{
    Arg usedata = {0};
    unsigned long use;
    unsigned char key[OTRL_EXTRAKEY_BYTES];
    ConnContext *ctx;
    gcry_error_t err;

    if (!want_args(w, nw, 3, 4)) {
	return;
    }
    if (parse_uint(w[2], 0xffffffffUL, &use) != 0 ||
	    decode_hex(w[3], &usedata) != 0) {
	free(usedata.data);
	finish_err("symkey: bad argument encoding");
	return;
    }
    ctx = context_arg(s, "symkey", w, nw, 4, 1);
    if (ctx) {
	err = otrl_message_symkey(s->us, &ops, s, ctx, (unsigned int)use,
		usedata.data, usedata.len, key);
	if (err) {
	    char msg[160];

	    snprintf(msg, sizeof(msg), "symkey: otrl_message_symkey: %s",
		    gcry_strerror(err));
	    finish_err(msg);
	} else {
	    fputs("val", out);
	    kv_bytes("key", key, sizeof(key));
	    putc('\n', out);
	    finish_ok();
	}
    }
    free(usedata.data);
}

static void cmd_status(Side *s, char **w, int nw)
{
    ConnContext *ctx;

    if (!want_args(w, nw, 1, 2)) {
	return;
    }
    ctx = context_arg(s, "status", w, nw, 2, 0);
    if (ctx) {
	report_status(s, ctx);
	finish_ok();
    }
}

static void cmd_trust(Side *s, char **w, int nw)
{
    Arg trust = {0};
    ConnContext *ctx;

    if (!want_args(w, nw, 1, 3)) {
	return;
    }
    if (nw > 2) {
	if (decode_text(w[2], &trust) != 0) {
	    finish_err("trust: bad argument encoding");
	    return;
	}
    }
    ctx = context_arg(s, "trust", w, nw, 3, 0);
    if (ctx) {
	if (!ctx->active_fingerprint) {
	    finish_err("trust: context has no active fingerprint");
	} else {
	    otrl_context_set_trust(ctx->active_fingerprint,
		    nw > 2 ? (char *)trust.data : "verified");
	    if (s->fpfile) {
		otrl_privkey_write_fingerprints(s->us, s->fpfile);
	    }
	    finish_ok();
	}
    }
    free(trust.data);
}

static void report_identity(Side *s)
{
    unsigned char raw[20];
    char human[OTRL_PRIVKEY_FPRINT_HUMAN_LEN];
    OtrlInsTag *it = otrl_instag_find(s->us, s->account, s->protocol);

    fputs("val", out);
    kv_str("account", s->account);
    kv_str("protocol", s->protocol);
    if (otrl_privkey_fingerprint_raw(s->us, raw, s->account, s->protocol)) {
	kv_fpr("fingerprint", raw);
	otrl_privkey_hash_to_human(human, raw);
	kv_str("human", human);
    }
    if (it) {
	kv_tag("instag", it->instag);
    }
    kv_str("libotr", otrl_version());
    putc('\n', out);
}

static void cmd_setting(Side *s, char **w, int nw)
{
    unsigned long v;

    if (!want_args(w, nw, 1, 1)) {
	return;
    }
    if (strcmp(w[0], "mms") == 0) {
	if (parse_uint(w[1], INT_MAX, &v) != 0 || (v != 0 && v < 64)) {
	    finish_err("mms: want 0 or a size of at least 64");
	    return;
	}
	s->mms = (int)v;
    } else {
	if (parse_uint(w[1], 0xffffffffUL, &v) != 0) {
	    finish_err("policy: bad number");
	    return;
	}
	s->policy = (OtrlPolicy)v;
    }
    finish_ok();
}

static void dispatch(Side *s, char **w, int nw)
{
    const char *c = w[0];

    if (strcmp(c, "recv") == 0) {
	cmd_recv(s, w, nw);
    } else if (strcmp(c, "send") == 0) {
	cmd_send(s, w, nw);
    } else if (strcmp(c, "query") == 0) {
	cmd_query(s, w, nw);
    } else if (strcmp(c, "end") == 0) {
	cmd_end(s, w, nw);
    } else if (strcmp(c, "smp_start") == 0) {
	cmd_smp_start(s, w, nw);
    } else if (strcmp(c, "smp_respond") == 0) {
	cmd_smp_respond(s, w, nw);
    } else if (strcmp(c, "smp_abort") == 0) {
	cmd_smp_abort(s, w, nw);
    } else if (strcmp(c, "symkey") == 0) {
	cmd_symkey(s, w, nw);
    } else if (strcmp(c, "status") == 0) {
	cmd_status(s, w, nw);
    } else if (strcmp(c, "trust") == 0) {
	cmd_trust(s, w, nw);
    } else if (strcmp(c, "fingerprint") == 0 || strcmp(c, "instag") == 0 ||
	    strcmp(c, "whoami") == 0) {
	if (want_args(w, nw, 0, 0)) {
	    report_identity(s);
	    finish_ok();
	}
    } else if (strcmp(c, "poll") == 0) {
	if (want_args(w, nw, 0, 0)) {
	    otrl_message_poll(s->us, &ops, s);
	    finish_ok();
	}
    } else if (strcmp(c, "mms") == 0 || strcmp(c, "policy") == 0) {
	cmd_setting(s, w, nw);
    } else if (strcmp(c, "quit") == 0) {
	finish_ok();
	exit(0);
    } else {
	finish_err("unknown command");
    }
}

static char *path_join(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);

    if (!p) {
	fprintf(stderr, "peer: out of memory\n");
	exit(1);
    }
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static int startup_fail(const char *what, gcry_error_t err)
{
    char msg[256];

    snprintf(msg, sizeof(msg), "startup: %s: %s", what,
	    err ? gcry_strerror(err) : "failed");
    finish_err(msg);
    return 1;
}

static int serve(int argc, char **argv)
{
    Side s;
    const char *dir = NULL;
    unsigned long v;
    otrl_instag_t fixed_tag = 0;
    char *line = NULL;
    size_t cap = 0;
    long len;
    int i;
    gcry_error_t err;

    memset(&s, 0, sizeof(s));
    s.account = "bob";
    s.protocol = "IRC";
    s.policy = OTRL_POLICY_DEFAULT;

    for (i = 0; i < argc; i++) {
	const char *opt = argv[i];
	const char *val = (i + 1 < argc) ? argv[i + 1] : NULL;

	if (!val) {
	    fprintf(stderr, "peer: option %s needs a value\n", opt);
	    return 2;
	}
	i++;
	if (strcmp(opt, "--account") == 0) {
	    s.account = val;
	} else if (strcmp(opt, "--protocol") == 0) {
	    s.protocol = val;
	} else if (strcmp(opt, "--dir") == 0) {
	    dir = val;
	} else if (strcmp(opt, "--policy") == 0) {
	    if (parse_uint(val, 0xffffffffUL, &v) != 0) {
		fprintf(stderr, "peer: bad --policy\n");
		return 2;
	    }
	    s.policy = (OtrlPolicy)v;
	} else if (strcmp(opt, "--mms") == 0) {
	    if (parse_uint(val, INT_MAX, &v) != 0 || (v != 0 && v < 64)) {
		fprintf(stderr, "peer: bad --mms (0 or >= 64)\n");
		return 2;
	    }
	    s.mms = (int)v;
	} else if (strcmp(opt, "--instag") == 0) {
	    if (parse_tag(val, &fixed_tag) != 0 ||
		    fixed_tag < OTRL_MIN_VALID_INSTAG) {
		fprintf(stderr, "peer: bad --instag\n");
		return 2;
	    }
	} else {
	    fprintf(stderr, "peer: unknown option %s\n", opt);
	    return 2;
	}
    }
    if (!dir || s.account[0] == '\0' || s.protocol[0] == '\0') {
	fprintf(stderr, "peer: --dir is required; names must be non-empty\n");
	return 2;
    }

    s.us = otrl_userstate_create();
    s.keyfile = path_join(dir, "otr.key");
    s.instagfile = path_join(dir, "otr.instag");
    s.fpfile = path_join(dir, "otr.fp");

    /* Private key: read it, or generate one on first use. */
    if (access(s.keyfile, F_OK) == 0) {
	err = otrl_privkey_read(s.us, s.keyfile);
	if (err) {
	    return startup_fail("otrl_privkey_read", err);
	}
    }
    if (!otrl_privkey_find(s.us, s.account, s.protocol)) {
	err = otrl_privkey_generate(s.us, s.keyfile, s.account, s.protocol);
	if (err) {
	    return startup_fail("otrl_privkey_generate", err);
	}
    }

    /* Instance tag: fixed by the caller, read, or generated. */
    if (fixed_tag) {
	FILE *f = tmpfile();

	if (!f) {
	    return startup_fail("tmpfile", 0);
	}
	fprintf(f, "%s\t%s\t%08x\n", s.account, s.protocol,
		(unsigned int)fixed_tag);
	rewind(f);
	err = otrl_instag_read_FILEp(s.us, f);
	fclose(f);
	if (err) {
	    return startup_fail("otrl_instag_read_FILEp", err);
	}
	err = otrl_instag_write(s.us, s.instagfile);
	if (err) {
	    return startup_fail("otrl_instag_write", err);
	}
    } else if (access(s.instagfile, F_OK) == 0) {
	err = otrl_instag_read(s.us, s.instagfile);
	if (err) {
	    return startup_fail("otrl_instag_read", err);
	}
    }
    if (!otrl_instag_find(s.us, s.account, s.protocol)) {
	err = otrl_instag_generate(s.us, s.instagfile, s.account,
		s.protocol);
	if (err) {
	    return startup_fail("otrl_instag_generate", err);
	}
    }

    if (access(s.fpfile, F_OK) == 0) {
	err = otrl_privkey_read_fingerprints(s.us, s.fpfile, NULL, NULL);
	if (err) {
	    return startup_fail("otrl_privkey_read_fingerprints", err);
	}
    }

    report_identity(&s);
    finish_ok();

    while ((len = read_line(stdin, &line, &cap)) != -1) {
	char *words[MAX_WORDS];
	int nw = 0;
	char *p, *save = NULL;

	if (len == -2) {
	    finish_err("line too long");
	    continue;
	}
	for (p = strtok_r(line, " ", &save); p;
		p = strtok_r(NULL, " ", &save)) {
	    if (nw == MAX_WORDS) {
		nw++;
		break;
	    }
	    words[nw++] = p;
	}
	if (nw == 0) {
	    finish_err("empty command");
	    continue;
	}
	if (nw > MAX_WORDS) {
	    finish_err("too many arguments");
	    continue;
	}
	dispatch(&s, words, nw);
    }
    free(line);
    otrl_userstate_free(s.us);
    free(s.keyfile);
    free(s.instagfile);
    free(s.fpfile);
    return 0;
}

/* ------------------------------------------------------------------ */
/* Bench mode                                                          */

static Side alice, bob;
static const char bench_secret[] = "correct horse battery staple";

static uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void die(const char *msg)
{
    fprintf(stderr, "peer bench: %s\n", msg);
    fprintf(out, "err %s\n", msg);
    fflush(out);
    exit(1);
}

/* Delivers queued messages until the queue is empty.  Answers SMP
 * requests with the shared secret, as a user would. */
static void pump(void)
{
    while (q_head) {
	QItem *it = q_head;
	Side *to = it->to;
	char *newmsg = NULL;
	OtrlTLV *tlvs = NULL;
	int ignore;

	q_head = it->next;
	if (!q_head) {
	    q_tail = NULL;
	}
	ignore = otrl_message_receiving(to->us, &ops, to, to->account,
		to->protocol, it->from, it->msg, &newmsg, &tlvs, NULL, NULL,
		NULL);
	if (!ignore) {
	    to->delivered++;
	}
	otrl_tlv_free(tlvs);
	otrl_message_free(newmsg);
	free(it->from);
	free(it->msg);
	free(it);
	if (to->smp_ask_ctx) {
	    ConnContext *ctx = to->smp_ask_ctx;

	    to->smp_ask_ctx = NULL;
	    otrl_message_respond_smp(to->us, &ops, to, ctx,
		    (const unsigned char *)bench_secret,
		    strlen(bench_secret));
	}
    }
}

static void bench_side(Side *s, const char *account, Side *other)
{
    FILE *f;
    gcry_error_t err;

    memset(s, 0, sizeof(*s));
    s->account = account;
    s->protocol = "IRC";
    s->policy = OTRL_POLICY_DEFAULT;
    s->quiet = 1;
    s->other = other;
    s->us = otrl_userstate_create();
    f = tmpfile();
    if (!f) {
	die("tmpfile failed");
    }
    err = otrl_privkey_generate_FILEp(s->us, f, account, s->protocol);
    fclose(f);
    if (err) {
	die("otrl_privkey_generate_FILEp failed");
    }
    f = tmpfile();
    if (!f) {
	die("tmpfile failed");
    }
    err = otrl_instag_generate_FILEp(s->us, f, account, s->protocol);
    fclose(f);
    if (err) {
	die("otrl_instag_generate_FILEp failed");
    }
}

/* Runs a full AKE between alice and "bob<suffix>", started by a query. */
static void establish(const char *suffix)
{
    char name[64];
    char *q;
    unsigned long a0 = alice.secure_events, b0 = bob.secure_events;

    snprintf(name, sizeof(name), "%s%s", bob.account, suffix);
    q = otrl_proto_default_query_msg(alice.account, alice.policy);
    if (!q) {
	die("otrl_proto_default_query_msg failed");
    }
    queue_push(&alice, name, q);
    free(q);
    pump();
    if (alice.secure_events == a0 || bob.secure_events == b0) {
	die("AKE did not complete");
    }
}

/* Sends text from one side to the other in conversation "suffix" (see
 * queue_push) and delivers everything that results. */
static void send_and_deliver(Side *from, const char *suffix,
	const char *text)
{
    Side *to = from->other;
    char name[64];
    char *newmsg = NULL;
    unsigned long d0 = to->delivered;
    gcry_error_t err;

    snprintf(name, sizeof(name), "%s%s", to->account, suffix);
    err = otrl_message_sending(from->us, &ops, from, from->account,
	    from->protocol, name, OTRL_INSTAG_BEST, text, NULL, &newmsg,
	    OTRL_FRAGMENT_SEND_ALL, NULL, NULL, NULL);
    if (err || !newmsg) {
	die("otrl_message_sending did not encrypt");
    }
    otrl_message_free(newmsg);
    pump();
    if (to->delivered != d0 + 1) {
	die("message was not delivered");
    }
}

static ConnContext *bench_context(Side *s, const char *user)
{
    ConnContext *ctx = find_context(s, user, OTRL_INSTAG_BEST);

    if (!ctx || ctx->msgstate != OTRL_MSGSTATE_ENCRYPTED) {
	die("no encrypted context");
    }
    return ctx;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return (x > y) - (x < y);
}

static void forget_all(void)
{
    otrl_context_forget_all(alice.us);
    otrl_context_forget_all(bob.us);
}

static char *make_text(size_t n)
{
    char *t = malloc(n + 1);
    size_t i;

    if (!t) {
	die("out of memory");
    }
    for (i = 0; i < n; i++) {
	t[i] = (char)('a' + (i % 26));
    }
    t[n] = '\0';
    return t;
}

/* Runs one workload; returns 0 on success, 1 if the name is unknown. */
static int run_workload(const char *wl, unsigned long n)
{
    uint64_t *samples = calloc(n, sizeof(uint64_t));
    uint64_t t0, sum = 0;
    unsigned long i, size = 0;
    double bytes_per_pair = -1;
    const char *op;
    char extra[32];

    if (!samples) {
	die("out of memory");
    }
    alice.mms = 0;
    bob.mms = 0;
    forget_all();

    if (strcmp(wl, "ake") == 0) {
	op = "full AKE, both sides";
	establish(""); /* warm-up */
	for (i = 0; i < n; i++) {
	    forget_all();
	    t0 = now_ns();
	    establish("");
	    samples[i] = now_ns() - t0;
	}
    } else if (strcmp(wl, "alternating") == 0) {
	char *text = make_text(100);

	op = "100 B data message, alternating direction";
	establish("");
	send_and_deliver(&alice, "", text);
	send_and_deliver(&bob, "", text);
	for (i = 0; i < n; i++) {
	    Side *from = (i % 2 == 0) ? &alice : &bob;

	    t0 = now_ns();
	    send_and_deliver(from, "", text);
	    samples[i] = now_ns() - t0;
	}
	free(text);
    } else if (sscanf(wl, "burst%lu%31s", &size, extra) == 1 &&
	    size > 0 && size <= 65536) {
	char *text = make_text(size);

	op = "data message, one direction";
	establish("");
	send_and_deliver(&alice, "", text);
	send_and_deliver(&alice, "", text);
	for (i = 0; i < n; i++) {
	    t0 = now_ns();
	    send_and_deliver(&alice, "", text);
	    samples[i] = now_ns() - t0;
	}
	free(text);
    } else if (sscanf(wl, "frag%lu%31s", &size, extra) == 1 &&
	    size > 0 && size <= 65536) {
	char *text = make_text(size);

	op = "data message fragmented at 400, one direction, incl. reassembly";
	establish("");
	alice.mms = 400;
	send_and_deliver(&alice, "", text);
	send_and_deliver(&alice, "", text);
	for (i = 0; i < n; i++) {
	    t0 = now_ns();
	    send_and_deliver(&alice, "", text);
	    samples[i] = now_ns() - t0;
	}
	free(text);
    } else if (strcmp(wl, "smp") == 0) {
	op = "full SMP run, both sides";
	establish("");
	for (i = 0; i <= n; i++) {
	    ConnContext *ctx = bench_context(&alice, bob.account);
	    unsigned long a0 = alice.smp_success, b0 = bob.smp_success;

	    t0 = now_ns();
	    otrl_message_initiate_smp(alice.us, &ops, &alice, ctx,
		    (const unsigned char *)bench_secret,
		    strlen(bench_secret));
	    pump();
	    if (alice.smp_success != a0 + 1 || bob.smp_success != b0 + 1) {
		die("SMP did not succeed on both sides");
	    }
	    if (i > 0) { /* the first run is a warm-up */
		samples[i - 1] = now_ns() - t0;
	    }
	}
    } else if (strcmp(wl, "heap") == 0) {
	struct mallinfo2 before, after;
	char suffix[32];

	op = "session pair: AKE plus one 11-byte message each way "
	    "(heap bytes per pair)";
	establish("warmup");
	forget_all();
	malloc_trim(0);
	before = mallinfo2();
	for (i = 0; i < n; i++) {
	    snprintf(suffix, sizeof(suffix), "%lu", i);
	    t0 = now_ns();
	    establish(suffix);
	    send_and_deliver(&alice, suffix, "hello there");
	    send_and_deliver(&bob, suffix, "hello again");
	    samples[i] = now_ns() - t0;
	}
	after = mallinfo2();
	bytes_per_pair = ((double)(after.uordblks + after.hblkhd) -
		(double)(before.uordblks + before.hblkhd)) / (double)n;
    } else {
	free(samples);
	return 1;
    }

    for (i = 0; i < n; i++) {
	sum += samples[i];
    }
    qsort(samples, n, sizeof(uint64_t), cmp_u64);
    fprintf(out, "bench workload=%s n=%lu median_ns=%llu mean_ns=%llu "
	    "min_ns=%llu max_ns=%llu", wl, n,
	    (unsigned long long)(n % 2 ? samples[n / 2] :
		(samples[n / 2 - 1] + samples[n / 2]) / 2),
	    (unsigned long long)(sum / n),
	    (unsigned long long)samples[0],
	    (unsigned long long)samples[n - 1]);
    if (bytes_per_pair >= 0) {
	fprintf(out, " heap_bytes_per_pair=%.0f", bytes_per_pair);
    }
    fprintf(out, " op=");
    put_hex(op, strlen(op));
    putc('\n', out);
    fflush(out);
    free(samples);
    return 0;
}

static int bench(int argc, char **argv)
{
    static const char *const all[] = {
	"ake", "alternating", "burst100", "burst400", "frag2000", "smp",
	"heap",
    };
    unsigned long n;
    size_t i;

    if (argc != 2 || parse_uint(argv[1], 10000000UL, &n) != 0 || n == 0) {
	fprintf(stderr, "usage: peer bench WORKLOAD N (N >= 1)\n");
	return 2;
    }
    bench_side(&alice, "alice", &bob);
    bench_side(&bob, "bob", &alice);

    if (strcmp(argv[0], "all") == 0) {
	for (i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
	    run_workload(all[i], n);
	}
    } else if (run_workload(argv[0], n) != 0) {
	finish_err("unknown workload (want ake, alternating, burstSIZE, "
		"fragSIZE, smp, heap or all)");
	return 2;
    }
    finish_ok();
    forget_all();
    otrl_userstate_free(alice.us);
    otrl_userstate_free(bob.us);
    return 0;
}

int main(int argc, char **argv)
{
    int fd;

    /* Keep the protocol stream private: anything else that writes to
     * file descriptor 1 (libotr, libgcrypt) ends up on stderr. */
    fd = dup(STDOUT_FILENO);
    if (fd < 0 || dup2(STDERR_FILENO, STDOUT_FILENO) < 0) {
	perror("peer: dup");
	return 1;
    }
    out = fdopen(fd, "w");
    if (!out) {
	perror("peer: fdopen");
	return 1;
    }
    signal(SIGPIPE, SIG_IGN);

    OTRL_INIT;

    if (argc >= 2 && strcmp(argv[1], "serve") == 0) {
	return serve(argc - 2, argv + 2);
    }
    if (argc >= 2 && strcmp(argv[1], "bench") == 0) {
	return bench(argc - 2, argv + 2);
    }
    fprintf(stderr, "usage: peer serve [--account NAME] [--protocol NAME] "
	    "--dir DIR [--policy BITS] [--mms N] [--instag TAG]\n"
	    "       peer bench WORKLOAD N\n");
    return 2;
}
