# potrpeer driver: runs python-potr (OTRv2) as a line-protocol test peer.
# See doc.go for the protocol. Written for otrbnc; not derived from potr.
import sys

PROTO = sys.stdout
sys.stdout = sys.stderr  # nothing but the protocol goes to the real stdout


def shim():
    """Make potr 1.0.2 work with pycryptodome: potr was written against
    PyCrypto's DSA key objects, DSA sign/verify(M, K) and stateful CTR
    counters, all gone from pycryptodome. Replace those four pieces."""
    from numbers import Number
    from Cryptodome.Cipher import AES
    from Cryptodome.PublicKey import DSA
    from Cryptodome.Random import random as rnd
    import potr.compatcrypto as cc
    import potr.compatcrypto.pycrypto as pc
    import potr.crypt as pcrypt

    class Params(object):
        __slots__ = ('p', 'q', 'g', 'y', 'x')

        def __init__(self, p, q, g, y, x=None):
            self.p, self.q, self.g, self.y, self.x = p, q, g, y, x

    def key_init(self, key=None, private=False):
        self.priv = self.pub = None
        if not isinstance(key, tuple):
            raise TypeError('4/5-tuple required for key')
        # potr passes PyCrypto's order: (y, g, p, q[, x]).
        if private and len(key) == 5:
            y, g, p, q, x = (int(v) for v in key)
            self.priv = Params(p, q, g, y, x)
            self.pub = Params(p, q, g, y)
        elif not private and len(key) == 4:
            y, g, p, q = (int(v) for v in key)
            self.pub = Params(p, q, g, y)
        else:
            raise TypeError('bad DSA key tuple')

    def key_sign(self, data):
        # OTR signs the 32-byte MAC as an integer reduced mod q (PyCrypto's
        # behaviour), not truncated to the leftmost bits of q.
        k = self.priv
        h = int.from_bytes(data, 'big') % k.q
        while True:
            n = rnd.randint(1, k.q - 1)
            r = pow(k.g, n, k.p) % k.q
            if r == 0:
                continue
            s = pow(n, -1, k.q) * (h + k.x * r) % k.q
            if s == 0:
                continue
            return r.to_bytes(20, 'big') + s.to_bytes(20, 'big')

    def key_verify(self, data, sig):
        k = self.pub
        if len(sig) != 40:
            return False
        r, s = int.from_bytes(sig[:20], 'big'), int.from_bytes(sig[20:], 'big')
        if not (0 < r < k.q and 0 < s < k.q):
            return False
        h = int.from_bytes(data, 'big') % k.q
        w = pow(s, -1, k.q)
        v = pow(k.g, h * w % k.q, k.p) * pow(k.y, r * w % k.q, k.p) % k.p % k.q
        return v == r

    @classmethod
    def key_generate(cls):
        k = DSA.generate(1024)
        return cls((int(k.y), int(k.g), int(k.p), int(k.q), int(k.x)), private=True)

    def aesctr(key, counter=0):
        # The 16-byte counter block is an 8-byte prefix (potr's
        # Counter.prefix, the top half of the OTR ctr) and an 8-byte
        # block counter starting at Counter.val.
        if isinstance(counter, Number):
            prefix, val = int(counter), 0
        elif isinstance(counter, pc.Counter):
            prefix, val = counter.prefix, counter.val
        else:
            raise TypeError('bad counter')
        return AES.new(key, AES.MODE_CTR, nonce=prefix.to_bytes(8, 'big'), initial_value=val)

    pc.DSAKey.__init__ = key_init
    pc.DSAKey.sign = key_sign
    pc.DSAKey.verify = key_verify
    pc.DSAKey.generate = key_generate
    pc.AESCTR = aesctr
    cc.AESCTR = aesctr
    pcrypt.AESCTR = aesctr


shim()

import potr  # noqa: E402
from potr import context as pctx  # noqa: E402
from potr import proto as pproto  # noqa: E402
from potr import crypt as pcrypt  # noqa: E402


def hx(b):
    if isinstance(b, str):
        b = b.encode('utf-8')
    return b.hex()


def unhx(s):
    if s == '-':
        return b''
    return bytes.fromhex(s)


def emit(*words):
    PROTO.write(' '.join(words) + '\n')


def field(b):
    return hx(b) if b else '-'


POLICY = {'ALLOW_V1': False, 'ALLOW_V2': True, 'REQUIRE_ENCRYPTION': False,
          'SEND_TAG': False, 'WHITESPACE_START_AKE': False, 'ERROR_START_AKE': False}
STATES = {pctx.STATE_PLAINTEXT: 'plaintext', pctx.STATE_ENCRYPTED: 'encrypted',
          pctx.STATE_FINISHED: 'finished'}
PROGS = {pcrypt.SMPPROG_OK: 'ok', pcrypt.SMPPROG_CHEATED: 'cheated',
         pcrypt.SMPPROG_FAILED: 'failed', pcrypt.SMPPROG_SUCCEEDED: 'succeeded'}


class Ctx(pctx.Context):
    def getPolicy(self, key):
        return POLICY.get(key, False)

    def inject(self, msg, appdata=None):
        emit('out', field(self.peer), field(msg))

    def setState(self, newstate):
        old = self.state
        super(Ctx, self).setState(newstate)
        if old != newstate:
            emit('event', 'state', 'from=' + hx(STATES[old]), 'to=' + hx(STATES[newstate]))


class Acct(pctx.Account):
    contextclass = Ctx

    def __init__(self, name, mms, key):
        super(Acct, self).__init__(name, 'IRC', mms, privkey=key)

    def loadPrivkey(self):
        return None

    def savePrivkey(self):
        pass

    def saveTrusts(self):
        pass


def status(acct, who):
    if who not in acct.ctxs:
        raise LookupError('no such context')
    c = acct.ctxs[who]
    cr = c.crypto
    vals = {'msgstate': STATES[c.state],
            'version': '2' if c.state == pctx.STATE_ENCRYPTED else '0',
            'fingerprint': cr.theirPubkey.fingerprint().hex() if cr.theirPubkey else '',
            'ssid': (cr.sessionId or b'').hex() if c.state == pctx.STATE_ENCRYPTED else '',
            'smp_prog': PROGS.get(cr.smp.prog, '?') if cr.smp else '',
            'smp_state': str(cr.smp.state) if cr.smp else '',
            'smp_question': '1' if cr.smp and cr.smp.questionReceived else '0'}
    emit('val', *('%s=%s' % (k, hx(v)) for k, v in sorted(vals.items())))


def main():
    args = sys.argv[1:]
    opts = dict(zip(args[::2], args[1::2]))
    key = None
    if opts.get('--key', '-') != '-':
        p, q, g, y, x = (int(v, 16) for v in opts['--key'].split(':'))
        key = potr.compatcrypto.DSAKey((y, g, p, q, x), private=True)
    acct = Acct(opts.get('--account', 'potr'), int(opts.get('--mms', '0')), key)
    priv = acct.getPrivkey()
    emit('val', 'account=' + hx(acct.name), 'fingerprint=' + hx(priv.fingerprint().hex()),
         'potr=' + hx(getattr(potr, '__version__', '1.0.2')))
    emit('ok')
    PROTO.flush()
    for line in sys.stdin:
        w = line.rstrip('\n').split(' ')
        cmd = w[0]
        try:
            if cmd == 'quit':
                emit('ok')
                PROTO.flush()
                return
            elif cmd == 'recv':
                who = unhx(w[1]).decode('utf-8')
                c = acct.getContext(who)
                try:
                    text, tlvs = c.receiveMessage(unhx(w[2]))
                    for t in tlvs:
                        emit('event', 'tlv', 'type=' + hx(type(t).__name__))
                    if text:
                        emit('event', 'encrypted')
                        emit('msg', field(text))
                    else:
                        emit('ignored')
                except pctx.NotOTRMessage as e:
                    emit('msg', field(e.args[0] if e.args else b''))
                except pctx.UnencryptedMessage as e:
                    emit('event', 'unencrypted')
                    emit('msg', field(e.args[0] if e.args else b''))
                except pctx.ErrorReceived as e:
                    emit('event', 'error_received', 'message=' + hx(e.args[0].error if e.args else b''))
                except pctx.NotEncryptedError as e:
                    emit('event', 'not_encrypted', 'code=' + hx(str(e.args[0] if e.args else '')))
            elif cmd == 'send':
                who = unhx(w[1]).decode('utf-8')
                c = acct.getContext(who)
                try:
                    r = c.sendMessage(pctx.FRAGMENT_SEND_ALL, unhx(w[2]))
                except pctx.NotEncryptedError:
                    emit('err', 'refused: not encrypted (finished)')
                    PROTO.flush()
                    continue
                if r is not None:
                    emit('event', 'send_unmodified')
                    emit('out', field(who), field(r))
            elif cmd == 'query':
                who = unhx(w[1]).decode('utf-8')
                c = acct.getContext(who)
                r = c.sendMessage(pctx.FRAGMENT_SEND_ALL, b'?OTRv2?')
                if r is not None:
                    emit('out', field(who), field(r))
            elif cmd == 'end':
                who = unhx(w[1]).decode('utf-8')
                acct.getContext(who).disconnect()
            elif cmd == 'smp_start':
                who = unhx(w[1]).decode('utf-8')
                q = unhx(w[3]) if len(w) > 3 else None
                acct.getContext(who).smpInit(unhx(w[2]), question=q)
            elif cmd == 'smp_respond':
                who = unhx(w[1]).decode('utf-8')
                acct.getContext(who).smpGotSecret(unhx(w[2]))
            elif cmd == 'smp_abort':
                who = unhx(w[1]).decode('utf-8')
                acct.getContext(who).smpAbort()
            elif cmd == 'status':
                status(acct, unhx(w[1]).decode('utf-8'))
            elif cmd == 'mms':
                acct.maxMessageSize = int(w[1], 0)
            else:
                emit('err', 'unknown command')
                PROTO.flush()
                continue
            emit('ok')
        except Exception as e:  # report, stay usable
            emit('err', ('%s: %s' % (type(e).__name__, e)).replace('\n', ' '))
        PROTO.flush()


if __name__ == '__main__':
    main()
