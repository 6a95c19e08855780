package listener

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/crypto/chacha20poly1305"
)

// TLS 1.3 after the handshake (RFC 8446 section 5).
//
// crypto/tls keeps, for the life of a connection, its Conn (about a
// kilobyte), the record buffers it grew during the handshake, and two
// expanded AEAD states; Go has no way to have it let go of them while a
// connection is idle. So once crypto/tls has completed a TLS 1.3 handshake,
// the listener drops its Conn and carries the connection on with this
// record layer, from the application traffic secrets crypto/tls hands to
// the Config's KeyLogWriter. An idle tls13Conn holds the two secrets, keys
// and IVs and the record sequence numbers: no buffer and no expanded
// cipher (the AEAD is set up again when the connection next reads or
// writes, which costs far less than the system call that comes with it).
//
// It reads like the WebSocket conn: a source that never waits (SetSource)
// may find nothing, and Read returns that error as it is and goes on where
// it stopped at the next call, holding only the bytes of a partly received
// record.

const (
	recordHeaderLen = 5
	maxPlaintext    = 16384
	maxCiphertext   = maxPlaintext + 256 // TLS 1.3: plaintext + type + padding + tag

	recordTypeAlert     = 21
	recordTypeHandshake = 22
	recordTypeAppData   = 23

	typeKeyUpdate = 24

	alertCloseNotify       = 0
	alertUnexpectedMessage = 10
	alertBadRecordMAC      = 20
	alertRecordOverflow    = 22
	alertIllegalParameter  = 47
	alertDecodeError       = 50
	alertInternalError     = 80
	alertUserCanceled      = 90

	alertLevelFatal = 2
)

// keyUpdateAfter is how many records the server seals under one traffic
// key before it moves to the next with a KeyUpdate of its own: well below
// the 2^24.5 full records RFC 8446 section 5.5 allows AES-GCM. A var for
// tests, atomic since other conns read it meanwhile.
var keyUpdateAfter atomic.Uint64

func init() { keyUpdateAfter.Store(1 << 24) }

// recordBufs are the buffers a read gathers records into (one ciphertext
// record at most, plus the start of the next) and a write builds them in
// (two records).
var (
	readBufs  = sync.Pool{New: func() any { b := make([]byte, 0, 2*(recordHeaderLen+maxCiphertext)); return &b }}
	writeBufs = sync.Pool{New: func() any { b := make([]byte, 0, 2*(recordHeaderLen+maxPlaintext+1+16)); return &b }}
)

// suite13 is what the record layer needs of a TLS 1.3 cipher suite.
type suite13 struct {
	keyLen int
	hash   func() hash.Hash
	aead   func(key []byte) (cipher.AEAD, error)
}

func aesGCM(key []byte) (cipher.AEAD, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

var suites13 = map[uint16]*suite13{
	tls.TLS_AES_128_GCM_SHA256:       {16, sha256.New, aesGCM},
	tls.TLS_AES_256_GCM_SHA384:       {32, sha512.New384, aesGCM},
	tls.TLS_CHACHA20_POLY1305_SHA256: {32, sha256.New, chacha20poly1305.New},
}

// trafficKeys are one direction's secret, key, IV and sequence number.
type trafficKeys struct {
	suite  *suite13
	secret []byte
	key    []byte
	iv     [12]byte
	seq    uint64
	aead   cipher.AEAD // nil while idle
}

// expandLabel is HKDF-Expand-Label (RFC 8446 section 7.1) with an empty
// context.
func expandLabel(h func() hash.Hash, secret []byte, label string, n int) []byte {
	info := make([]byte, 0, 4+6+len(label))
	info = binary.BigEndian.AppendUint16(info, uint16(n))
	info = append(info, byte(6+len(label)))
	info = append(info, "tls13 "...)
	info = append(info, label...)
	info = append(info, 0)
	out, err := hkdf.Expand(h, secret, string(info), n)
	if err != nil {
		panic("tls13: " + err.Error()) // n is far below HKDF's limit
	}
	return out
}

func (k *trafficKeys) set(secret []byte) {
	h := k.suite.hash
	k.secret = secret
	k.key = expandLabel(h, secret, "key", k.suite.keyLen)
	copy(k.iv[:], expandLabel(h, secret, "iv", 12))
	k.seq = 0
	k.aead = nil
}

// update moves to the next traffic secret (KeyUpdate).
func (k *trafficKeys) update() {
	k.set(expandLabel(k.suite.hash, k.secret, "traffic upd", k.suite.hash().Size()))
}

func (k *trafficKeys) cipher() (cipher.AEAD, error) {
	if k.aead == nil {
		a, err := k.suite.aead(k.key)
		if err != nil {
			return nil, err
		}
		k.aead = a
	}
	return k.aead, nil
}

// nonce is the IV xor the sequence number; it then counts the record.
func (k *trafficKeys) nonce(out *[12]byte) {
	*out = k.iv
	var s [8]byte
	binary.BigEndian.PutUint64(s[:], k.seq)
	for i := range s {
		out[4+i] ^= s[i]
	}
	k.seq++
}

// errRecord is a record the peer should not have sent; the connection
// ends, with a fatal alert of that code to the peer.
type errRecord struct {
	alert byte
	msg   string
}

func (e errRecord) Error() string { return "tls: " + e.msg }

func recordErr(alert byte, format string, args ...any) errRecord {
	return errRecord{alert, fmt.Sprintf(format, args...)}
}

// tls13Conn is a server-side TLS 1.3 connection after its handshake.
type tls13Conn struct {
	conn net.Conn // the TCP connection (or what a PROXY header was read from)

	// Read state, touched by the reading goroutine only.
	rd    trafficKeys
	rbuf  *[]byte                   // pooled: raw bytes read, while a Read works
	roff  int                       // where the unparsed bytes of *rbuf start
	part  []byte                    // the start of a record, kept between Reads
	plain []byte                    // decrypted bytes not yet returned, within *rbuf
	hs    []byte                    // a post-handshake message in pieces
	rerr  error                     // sticky
	src   func([]byte) (int, error) // reads conn, if set (SetSource)

	// kuAnswer says the peer asked for a KeyUpdate (update_requested)
	// that is not yet answered: Read sets it when a writer holds wmu, and
	// the next record written goes after the answer (sendPendingLocked).
	kuAnswer atomic.Bool

	// wmu serialises records written by Write, by Read's answer to a
	// KeyUpdate and its alerts, and by Close.
	wmu  sync.Mutex
	wr   trafficKeys
	werr error
}

var (
	_ net.Conn      = (*tls13Conn)(nil)
	_ Framed        = (*tls13Conn)(nil)
	_ BuffersWriter = (*tls13Conn)(nil)
)

// newTLS13Conn continues conn with the application traffic secrets of a
// completed handshake; pending are bytes read from conn past the
// handshake, and wseq the records already sent under the server's secret
// (session tickets).
func newTLS13Conn(conn net.Conn, suite uint16, client, server, pending []byte, wseq uint64) (*tls13Conn, error) {
	s := suites13[suite]
	if s == nil {
		return nil, fmt.Errorf("tls13: cipher suite %#04x", suite)
	}
	c := &tls13Conn{conn: conn}
	c.rd.suite, c.wr.suite = s, s
	c.rd.set(client)
	c.wr.set(server)
	c.wr.seq = wseq
	if len(pending) > 0 {
		c.part = append([]byte(nil), pending...)
	}
	return c, nil
}

// SetSource makes Read read the socket with read; see Framed.
func (c *tls13Conn) SetSource(read func([]byte) (int, error)) { c.src = read }

// NetConn returns the connection the records travel on.
func (c *tls13Conn) NetConn() net.Conn { return c.conn }

func (c *tls13Conn) readRaw(p []byte) (int, error) {
	if c.src != nil {
		return c.src(p)
	}
	return c.conn.Read(p)
}

// Read returns decrypted application data. An error of the source (such
// as nothing to read yet, or a deadline) is returned as it is, and the next
// Read goes on where this one stopped.
func (c *tls13Conn) Read(p []byte) (int, error) {
	for {
		if len(c.plain) > 0 {
			n := copy(p, c.plain)
			c.plain = c.plain[n:]
			if len(c.plain) == 0 {
				c.plain = nil // it points into the read buffer
				if c.src == nil && c.roff == len(*c.rbuf) {
					c.release() // the next read may wait: not with the buffer
				}
			}
			return n, nil
		}
		if c.rerr != nil {
			c.release()
			return 0, c.rerr
		}
		if len(p) == 0 {
			return 0, nil
		}
		if c.rbuf == nil && c.src == nil && len(c.part) == 0 {
			// A read that may wait (no engine beneath, or before it takes
			// over) waits without a buffer: its first bytes go to part.
			var hb [recordHeaderLen]byte
			n, err := c.conn.Read(hb[:])
			if n > 0 {
				c.part = append([]byte(nil), hb[:n]...)
			}
			if err != nil {
				if err == io.EOF && n > 0 {
					err = io.ErrUnexpectedEOF
				}
				return 0, err
			}
			continue
		}
		if c.rbuf == nil {
			c.rbuf = readBufs.Get().(*[]byte)
			*c.rbuf = append((*c.rbuf)[:0], c.part...)
			c.part, c.roff = nil, 0
		}
		b := *c.rbuf
		if rec, ok := wholeRecord(b[c.roff:]); ok {
			c.roff += len(rec)
			if err := c.open(rec); err != nil {
				c.fail(err)
			}
			continue
		}
		if raw := b[c.roff:]; len(raw) >= recordHeaderLen && int(binary.BigEndian.Uint16(raw[3:5])) > maxCiphertext {
			c.fail(recordErr(alertRecordOverflow, "record overflow"))
			continue
		}
		// Move the start of the next record to the front and read more.
		b = b[:copy(b, b[c.roff:])]
		c.roff = 0
		n, err := c.readRaw(b[len(b):cap(b)])
		*c.rbuf = b[:len(b)+n]
		if err != nil {
			if err == io.EOF && len(*c.rbuf) > 0 {
				err = io.ErrUnexpectedEOF
			}
			c.release()
			return 0, err
		}
	}
}

// wholeRecord returns the first record of b when it is all there.
func wholeRecord(b []byte) ([]byte, bool) {
	if len(b) < recordHeaderLen {
		return nil, false
	}
	n := recordHeaderLen + int(binary.BigEndian.Uint16(b[3:5]))
	if len(b) < n {
		return nil, false
	}
	return b[:n], true
}

// release gives the read buffer back, keeping the start of a record that
// has not all arrived: an idle connection holds no buffer.
func (c *tls13Conn) release() {
	if c.rbuf == nil || len(c.plain) > 0 {
		return
	}
	if raw := (*c.rbuf)[c.roff:]; len(raw) > 0 {
		c.part = append([]byte(nil), raw...)
	}
	*c.rbuf = (*c.rbuf)[:0]
	readBufs.Put(c.rbuf)
	c.rbuf, c.roff = nil, 0
	c.rd.aead = nil
}

// open decrypts rec, a record within *c.rbuf, in place, and handles what
// it carries: application data becomes c.plain, which Read returns before
// it parses the bytes after rec.
func (c *tls13Conn) open(rec []byte) error {
	if rec[0] != recordTypeAppData {
		return recordErr(alertUnexpectedMessage, "unexpected record type %d after the handshake", rec[0])
	}
	a, err := c.rd.cipher()
	if err != nil {
		return err
	}
	var nonce [12]byte
	c.rd.nonce(&nonce)
	hdr, ct := rec[:recordHeaderLen], rec[recordHeaderLen:]
	out, err := a.Open(ct[:0], nonce[:], ct, hdr)
	if err != nil {
		return recordErr(alertBadRecordMAC, "bad record MAC")
	}
	// The TLSInnerPlaintext, padding included, is at most 2^14+1 bytes
	// (RFC 8446 section 5.4).
	if len(out) > maxPlaintext+1 {
		return recordErr(alertRecordOverflow, "record overflow")
	}
	i := len(out) - 1
	for i >= 0 && out[i] == 0 {
		i--
	}
	if i < 0 {
		return recordErr(alertUnexpectedMessage, "record without a content type")
	}
	typ, out := out[i], out[:i]
	switch typ {
	case recordTypeAppData:
		c.plain = out
		return nil
	case recordTypeAlert:
		if len(out) != 2 {
			return recordErr(alertDecodeError, "bad alert")
		}
		switch out[1] {
		case alertCloseNotify:
			return io.EOF
		case alertUserCanceled:
			return nil
		}
		return errRecord{msg: fmt.Sprintf("peer alert %d", out[1])} // no alert back
	case recordTypeHandshake:
		if len(out) == 0 {
			return recordErr(alertUnexpectedMessage, "empty handshake record")
		}
		c.hs = append(c.hs, out...)
		return c.handshakeMessages()
	}
	return recordErr(alertUnexpectedMessage, "unexpected content type %d", typ)
}

// handshakeMessages handles the post-handshake messages in c.hs, the
// bytes of the record just opened and of earlier ones: a KeyUpdate moves
// the read keys on, and is answered with one when it asks for it.
func (c *tls13Conn) handshakeMessages() error {
	for len(c.hs) >= 4 {
		n := int(c.hs[1])<<16 | int(c.hs[2])<<8 | int(c.hs[3])
		if c.hs[0] != typeKeyUpdate {
			return recordErr(alertUnexpectedMessage, "unexpected handshake message %d after the handshake", c.hs[0])
		}
		if n != 1 {
			return recordErr(alertDecodeError, "KeyUpdate of %d bytes", n)
		}
		if len(c.hs) < 5 {
			return nil
		}
		request := c.hs[4]
		c.hs = c.hs[5:]
		if request > 1 {
			return recordErr(alertIllegalParameter, "bad KeyUpdate")
		}
		// A KeyUpdate ends its record: the bytes after it are under the
		// next key (RFC 8446 section 5.1).
		if len(c.hs) > 0 {
			return recordErr(alertUnexpectedMessage, "data after a KeyUpdate in its record")
		}
		c.rd.update()
		if request == 1 {
			c.answerKeyUpdate()
		}
	}
	if len(c.hs) == 0 {
		c.hs = nil
	}
	return nil
}

// answerKeyUpdate answers a KeyUpdate that asked for one, without waiting
// for a writer: RFC 8446 section 4.6.3 wants the answer before the next
// application data record, not at once. When no one writes, it is sent
// now; when a writer holds wmu (perhaps stuck on a peer that does not
// read), the answer is left to it: it sends it before its next record,
// and before it lets go of wmu (sendPendingLocked). A failed write is the
// writer's error, and the reader's next Read sees the socket's.
func (c *tls13Conn) answerKeyUpdate() {
	c.kuAnswer.Store(true)
	if c.wmu.TryLock() {
		c.sendPendingLocked()
		c.wmu.Unlock()
	}
}

// sendPendingLocked sends what must go before the next record: the answer
// to a KeyUpdate, or the server's own KeyUpdate when its key has sealed
// keyUpdateAfter records. Each is a KeyUpdate under the current key, and
// the next key after it.
func (c *tls13Conn) sendPendingLocked() error {
	answer := c.kuAnswer.Swap(false)
	if c.werr != nil || !answer && c.wr.seq < keyUpdateAfter.Load() {
		return c.werr
	}
	if err := c.sealLocked(recordTypeHandshake, [][]byte{{typeKeyUpdate, 0, 0, 1, 0}}); err != nil {
		return err
	}
	c.wr.update()
	return nil
}

// fail ends reading with err and, when err is a record the peer should
// not have sent, tells the peer with a fatal alert if no writer holds the
// socket (RFC 8446 section 6.2). Nothing is written after it.
func (c *tls13Conn) fail(err error) {
	c.rerr = err
	var re errRecord
	if !errors.As(err, &re) || re.alert == 0 || !c.wmu.TryLock() {
		return
	}
	defer c.wmu.Unlock()
	if c.werr == nil {
		c.conn.SetWriteDeadline(time.Now().Add(closeNotifyTimeout))
		c.sealLocked(recordTypeAlert, [][]byte{{alertLevelFatal, re.alert}})
		c.werr = net.ErrClosed
	}
}

// Write sends p as application data.
func (c *tls13Conn) Write(p []byte) (int, error) {
	return c.WriteBuffers([][]byte{p})
}

// WriteBuffers sends the concatenation of bufs as application data, in
// records of up to 16 KiB, two records a system call.
func (c *tls13Conn) WriteBuffers(bufs [][]byte) (int, error) {
	total := 0
	for _, b := range bufs {
		total += len(b)
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.writeRecordsLocked(recordTypeAppData, bufs); err != nil {
		return 0, err
	}
	return total, nil
}

// writeRecordsLocked sends what is pending (sendPendingLocked), then bufs
// in records of typ, then what a reader left pending meanwhile.
func (c *tls13Conn) writeRecordsLocked(typ byte, bufs [][]byte) error {
	if err := c.sendPendingLocked(); err != nil {
		return err
	}
	if err := c.sealLocked(typ, bufs); err != nil {
		return err
	}
	return c.sendPendingLocked()
}

// sealLocked seals bufs into records of typ and writes them. A failed
// write fails every later one: the peer's record stream is broken.
func (c *tls13Conn) sealLocked(typ byte, bufs [][]byte) error {
	if c.werr != nil {
		return c.werr
	}
	a, err := c.wr.cipher()
	if err != nil {
		return err
	}
	defer func() { c.wr.aead = nil }()
	bp := writeBufs.Get().(*[]byte)
	defer writeBufs.Put(bp)
	out := (*bp)[:0]
	var off int // offset into bufs[0]
	for {
		// One record: gather up to maxPlaintext bytes.
		start := len(out)
		out = append(out, recordTypeAppData, 3, 3, 0, 0)
		for len(bufs) > 0 && len(out)-start-recordHeaderLen < maxPlaintext {
			room := maxPlaintext - (len(out) - start - recordHeaderLen)
			p := bufs[0][off:]
			if len(p) > room {
				out = append(out, p[:room]...)
				off += room
				break
			}
			out = append(out, p...)
			bufs, off = bufs[1:], 0
		}
		n := len(out) - start - recordHeaderLen
		out = append(out, typ)
		binary.BigEndian.PutUint16(out[start+3:], uint16(n+1+a.Overhead()))
		var nonce [12]byte
		c.wr.nonce(&nonce)
		hdr := out[start : start+recordHeaderLen]
		pt := out[start+recordHeaderLen:]
		sealed := a.Seal(pt[:0], nonce[:], pt, hdr) // in place: out has room for the tag
		out = out[:start+recordHeaderLen+len(sealed)]
		full := cap(out)-len(out) < recordHeaderLen+maxPlaintext+1+a.Overhead()
		if len(bufs) == 0 || full {
			if _, err := c.conn.Write(out); err != nil {
				c.werr = err
				*bp = out[:0]
				return err
			}
			out = out[:0]
		}
		if len(bufs) == 0 {
			*bp = out
			return nil
		}
	}
}

// CloseWrite sends close_notify; like tls.Conn's, it leaves the socket's
// writing side open.
func (c *tls13Conn) CloseWrite() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	err := c.writeRecordsLocked(recordTypeAlert, [][]byte{{1, alertCloseNotify}})
	c.werr = net.ErrClosed
	return err
}

// closeNotifyTimeout bounds the close_notify Close tries to send.
const closeNotifyTimeout = 100 * time.Millisecond

// Close sends close_notify if it can do so at once and closes the socket.
func (c *tls13Conn) Close() error {
	if c.wmu.TryLock() {
		if c.werr == nil {
			c.conn.SetWriteDeadline(time.Now().Add(closeNotifyTimeout))
			c.writeRecordsLocked(recordTypeAlert, [][]byte{{1, alertCloseNotify}})
		}
		c.werr = net.ErrClosed
		c.wmu.Unlock()
	}
	return c.conn.Close()
}

func (c *tls13Conn) LocalAddr() net.Addr                { return c.conn.LocalAddr() }
func (c *tls13Conn) RemoteAddr() net.Addr               { return c.conn.RemoteAddr() }
func (c *tls13Conn) SetDeadline(t time.Time) error      { return c.conn.SetDeadline(t) }
func (c *tls13Conn) SetReadDeadline(t time.Time) error  { return c.conn.SetReadDeadline(t) }
func (c *tls13Conn) SetWriteDeadline(t time.Time) error { return c.conn.SetWriteDeadline(t) }

// SyscallConn is the socket's, for a reader that waits for readability.
func (c *tls13Conn) SyscallConn() (syscall.RawConn, error) {
	if sc, ok := c.conn.(syscall.Conn); ok {
		return sc.SyscallConn()
	}
	return nil, errors.New("tls13: not a socket")
}
