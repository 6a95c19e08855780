package listener

import (
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// WebSocket framing (RFC 6455 section 5) for a binary-only MQTT stream.
//
// Read returns the unmasked payload of binary frames as one byte stream: an
// MQTT packet may span frames and a frame may hold several packets. Control
// frames are answered inline. Between frames an idle conn holds no buffer,
// only the few bytes of a partly read frame header or control frame.
//
// A read of the socket that fails keeps its place: Read may be called again
// after a deadline, or after a source (SetSource) that never waits found
// nothing, and goes on where it stopped.

const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xA
)

// Close codes (RFC 6455 section 7.4.1).
const (
	closeNormal      = 1000
	closeProtocol    = 1002
	closeUnsupported = 1003
)

// wsCloseTimeout bounds the close frame Close tries to send.
const wsCloseTimeout = 100 * time.Millisecond

// wsControlTimeout bounds the write of a pong, or of the close frame that
// answers the peer's close or a protocol error: the reader writes them, and
// a peer that takes nothing for this long is cut off.
const wsControlTimeout = 5 * time.Second

// wsCoalesceMax is the largest frame Write copies into one pooled buffer
// (gathers: one write, one TLS record); larger frames go out as a vectored
// write, or gathered into records over TLS.
const wsCoalesceMax = TLSChunk

// errWSProtocol is a frame the peer should not have sent; the conn answers it
// with a close frame and fails every later Read.
var errWSProtocol = errors.New("websocket protocol error")

// wsConn is a server-side WebSocket connection carrying binary frames.
type wsConn struct {
	conn net.Conn
	pre  []byte // bytes read past the upgrade request, consumed before conn

	// Read state, touched by the reading goroutine only.
	hdr        [14]byte // the frame header being read
	hdrN       uint8    // bytes of hdr read so far
	mask       [4]byte
	maskPos    uint8
	fragmented bool   // inside a fragmented binary message
	remaining  uint64 // payload bytes left in the current data frame
	rerr       error  // sticky: close received or protocol error

	// The control frame being read: its opcode (0: none), length and the
	// payload read so far.
	ctlOp  byte
	ctlLen uint8
	ctlN   uint8
	ctl    [125]byte
	src    func([]byte) (int, error) // reads conn, if set (SetSource)

	// wmu serialises frames written by Write, by Read's answers to control
	// frames and by Close.
	wmu     sync.Mutex
	wclosed bool         // a close frame was sent; no more frames follow it
	wdl     atomic.Int64 // the write deadline for data frames (UnixNano; 0: none)
}

var (
	_ net.Conn      = (*wsConn)(nil)
	_ BuffersWriter = (*wsConn)(nil)
	_ Framed        = (*wsConn)(nil)
)

// Framed is a connection whose byte stream is framed over another one
// (WebSocket over TCP). A reader that must never wait (the broker's, for a
// parked connection) reads the socket beneath itself: it hands the conn
// the function to read it with, and Read returns that function's errors
// (such as "nothing there yet") as they are, keeping its place in the
// frame for the next call.
type Framed interface {
	net.Conn
	// NetConn returns the connection the frames travel on.
	NetConn() net.Conn
	// SetSource makes Read read NetConn with read from then on.
	SetSource(read func([]byte) (int, error))
}

// SetSource makes Read read the socket with read; see Framed.
func (c *wsConn) SetSource(read func([]byte) (int, error)) { c.src = read }

// read reads from the bytes left over from the handshake, then from conn.
func (c *wsConn) read(p []byte) (int, error) {
	if len(c.pre) > 0 {
		n := copy(p, c.pre)
		c.pre = c.pre[n:]
		if len(c.pre) == 0 {
			c.pre = nil
		}
		return n, nil
	}
	if c.src != nil {
		return c.src(p)
	}
	return c.conn.Read(p)
}

// Read reads the payload of binary frames, across frame boundaries. It
// returns io.EOF once the peer has sent a close frame.
func (c *wsConn) Read(p []byte) (int, error) {
	if c.rerr != nil {
		return 0, c.rerr
	}
	if len(p) == 0 {
		return 0, nil
	}
	if c.remaining == 0 {
		if err := c.nextFrame(); err != nil {
			return 0, err
		}
		if c.remaining == 0 {
			// A control frame, answered, or an empty data frame: return
			// rather than wait for the next frame, so that a reader that
			// must not wait for an idle client can park it.
			return 0, nil
		}
	}
	if uint64(len(p)) > c.remaining {
		p = p[:c.remaining]
	}
	n, err := c.read(p)
	c.unmask(p[:n])
	c.remaining -= uint64(n)
	if err == io.EOF {
		err = io.ErrUnexpectedEOF // the peer vanished mid-frame
	}
	return n, err
}

// headerLen is the length of the frame header being read, as far as the
// bytes read so far tell: 2 until the mask and length byte is in.
func (c *wsConn) headerLen() int {
	if c.hdrN < 2 {
		return 2
	}
	n := 2
	if c.hdr[1]&0x80 != 0 {
		n += 4 // masking key
	}
	switch c.hdr[1] & 0x7f {
	case 126:
		n += 2
	case 127:
		n += 8
	}
	return n
}

// unmask XORs p with the masking key, continuing where the last call left
// off, eight bytes at a time where it can.
func (c *wsConn) unmask(p []byte) {
	pos, i := int(c.maskPos), 0
	for ; i < len(p) && pos != 0; i++ {
		p[i] ^= c.mask[pos]
		pos = (pos + 1) & 3
	}
	if len(p)-i >= 8 {
		k := uint64(binary.LittleEndian.Uint32(c.mask[:]))
		k |= k << 32
		for ; len(p)-i >= 8; i += 8 {
			binary.LittleEndian.PutUint64(p[i:], binary.LittleEndian.Uint64(p[i:])^k)
		}
	}
	for ; i < len(p); i++ {
		p[i] ^= c.mask[pos]
		pos = (pos + 1) & 3
	}
	c.maskPos = uint8(pos)
}

// nextFrame reads one frame header, handles control frames whole, and sets up
// the payload of a data frame for Read. A read that fails (a deadline, say)
// keeps its progress, in the header or in a control frame, for the next call.
func (c *wsConn) nextFrame() error {
	if c.ctlOp != 0 {
		return c.control()
	}
	for need := c.headerLen(); int(c.hdrN) < need; need = c.headerLen() {
		n, err := c.read(c.hdr[c.hdrN:need])
		c.hdrN += uint8(n)
		if err != nil && int(c.hdrN) < need {
			if err == io.EOF && c.hdrN > 0 {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
	}
	c.hdrN = 0
	b0, b1 := c.hdr[0], c.hdr[1]
	fin, op := b0&0x80 != 0, b0&0x0f
	if b0&0x70 != 0 {
		return c.fail(closeProtocol, "reserved bits set")
	}
	if b1&0x80 == 0 {
		return c.fail(closeProtocol, "unmasked client frame")
	}
	length, m := uint64(b1&0x7f), 2
	switch length {
	case 126:
		length, m = uint64(binary.BigEndian.Uint16(c.hdr[2:])), 4
	case 127:
		length, m = binary.BigEndian.Uint64(c.hdr[2:]), 10
		if length>>63 != 0 {
			return c.fail(closeProtocol, "frame length overflows")
		}
	}
	copy(c.mask[:], c.hdr[m:m+4])
	c.maskPos = 0
	switch op {
	case opBinary, opContinuation:
		if (op == opContinuation) != c.fragmented {
			return c.fail(closeProtocol, "unexpected continuation frame")
		}
		c.fragmented = !fin
		c.remaining = length
		return nil
	case opText:
		return c.fail(closeUnsupported, "text frame")
	case opClose, opPing, opPong:
		if !fin || length > 125 {
			return c.fail(closeProtocol, "fragmented or long control frame")
		}
		c.ctlOp, c.ctlLen, c.ctlN = op, uint8(length), 0
		return c.control()
	default:
		return c.fail(closeProtocol, fmt.Sprintf("opcode %#x", op))
	}
}

// control reads the rest of the control frame being read and answers it.
func (c *wsConn) control() error {
	for c.ctlN < c.ctlLen {
		m, err := c.read(c.ctl[c.ctlN:c.ctlLen])
		c.ctlN += uint8(m)
		if err != nil && c.ctlN < c.ctlLen {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF // the peer vanished mid-frame
			}
			return err
		}
	}
	op, p := c.ctlOp, c.ctl[:c.ctlLen]
	c.ctlOp = 0
	c.unmask(p)
	switch op {
	case opPing:
		if err := c.writeControl(opPong, p); err != nil {
			return fmt.Errorf("write pong: %w", err)
		}
	case opClose:
		code := uint16(closeNormal)
		switch {
		case len(p) == 1:
			return c.fail(closeProtocol, "one-byte close payload")
		case len(p) >= 2:
			code = binary.BigEndian.Uint16(p)
		}
		var reply [2]byte
		binary.BigEndian.PutUint16(reply[:], code)
		c.writeControl(opClose, reply[:]) // best effort: the peer is leaving
		c.rerr = io.EOF
		return io.EOF
	}
	return nil
}

// fail sends a close frame with code and makes every later Read fail.
func (c *wsConn) fail(code uint16, reason string) error {
	var p [2]byte
	binary.BigEndian.PutUint16(p[:], code)
	c.writeControl(opClose, p[:]) // best effort: the conn is done
	c.rerr = fmt.Errorf("%w: %s", errWSProtocol, reason)
	return c.rerr
}

// writeControl writes a control frame (payload at most 125 bytes).
func (c *wsConn) writeControl(op byte, payload []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.writeControlLocked(op, payload, wsControlTimeout)
}

// writeControlLocked writes a control frame within timeout, whatever the
// write deadline of data frames (which may have passed long ago: it is set
// for each batch of data), and then puts that deadline back.
func (c *wsConn) writeControlLocked(op byte, payload []byte, timeout time.Duration) error {
	if c.wclosed {
		return net.ErrClosed
	}
	var frame [2 + 125]byte
	frame[0], frame[1] = 0x80|op, byte(len(payload))
	n := 2 + copy(frame[2:], payload)
	c.wclosed = op == opClose
	c.conn.SetWriteDeadline(time.Now().Add(timeout))
	_, err := c.conn.Write(frame[:n])
	var dl time.Time
	if ns := c.wdl.Load(); ns != 0 {
		dl = time.Unix(0, ns)
	}
	c.conn.SetWriteDeadline(dl)
	return err
}

// Write sends p as one binary frame.
func (c *wsConn) Write(p []byte) (int, error) {
	return c.WriteBuffers([][]byte{p})
}

// WriteBuffers sends the concatenation of bufs as one binary frame: one
// write when it is small, a vectored write (writev on TCP) otherwise.
func (c *wsConn) WriteBuffers(bufs [][]byte) (int, error) {
	total := 0
	for _, b := range bufs {
		total += len(b)
	}
	var hdr [10]byte
	h := frameHeader(hdr[:], opBinary, total)
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.wclosed {
		return 0, net.ErrClosed
	}
	var n int64
	var err error
	if len(h)+total <= wsCoalesceMax {
		bp := gathers.Get().(*[]byte)
		b := append((*bp)[:0], h...)
		for _, p := range bufs {
			b = append(b, p...)
		}
		var m int
		m, err = c.conn.Write(b)
		n = int64(m)
		*bp = b[:0]
		gathers.Put(bp)
	} else {
		vec := make(net.Buffers, 0, 1+len(bufs))
		vec = append(append(vec, h), bufs...)
		if bw, ok := c.conn.(BuffersWriter); ok { // TLS 1.3 records
			var m int
			m, err = bw.WriteBuffers(vec)
			n = int64(m)
		} else if _, isTLS := c.conn.(*tls.Conn); isTLS {
			n, err = WriteGathered(c.conn, &vec) // a record per slice otherwise
		} else {
			n, err = vec.WriteTo(c.conn) // writev
		}
	}
	if err != nil && n > 0 {
		c.wclosed = true // a partial frame: nothing can follow it
	}
	return max(0, int(n)-len(h)), err
}

// frameHeader encodes an unmasked server frame header into b.
func frameHeader(b []byte, op byte, n int) []byte {
	b[0] = 0x80 | op
	switch {
	case n <= 125:
		b[1] = byte(n)
		return b[:2]
	case n <= 0xffff:
		b[1] = 126
		binary.BigEndian.PutUint16(b[2:], uint16(n))
		return b[:4]
	default:
		b[1] = 127
		binary.BigEndian.PutUint64(b[2:], uint64(n))
		return b[:10]
	}
}

// Close sends a normal close frame if it can do so at once and closes the
// underlying connection.
func (c *wsConn) Close() error {
	if c.wmu.TryLock() {
		if !c.wclosed {
			var p [2]byte
			binary.BigEndian.PutUint16(p[:], closeNormal)
			c.writeControlLocked(opClose, p[:], wsCloseTimeout)
		}
		c.wclosed = true
		c.wmu.Unlock()
	}
	return c.conn.Close()
}

// NetConn returns the underlying connection (a *net.TCPConn or *tls.Conn).
func (c *wsConn) NetConn() net.Conn { return c.conn }

// LocalAddr returns the underlying connection's local address.
func (c *wsConn) LocalAddr() net.Addr { return c.conn.LocalAddr() }

// RemoteAddr returns the underlying connection's peer address (not the PROXY
// header's source: see ConnInfo.Remote).
func (c *wsConn) RemoteAddr() net.Addr { return c.conn.RemoteAddr() }

// SetDeadline sets the underlying connection's deadlines.
func (c *wsConn) SetDeadline(t time.Time) error {
	c.SetReadDeadline(t)
	return c.SetWriteDeadline(t)
}

// SetReadDeadline sets the underlying connection's read deadline.
func (c *wsConn) SetReadDeadline(t time.Time) error { return c.conn.SetReadDeadline(t) }

// SetWriteDeadline sets the write deadline of data frames (control frames
// have their own; see writeControlLocked).
func (c *wsConn) SetWriteDeadline(t time.Time) error {
	var ns int64
	if !t.IsZero() {
		ns = t.UnixNano()
	}
	c.wdl.Store(ns)
	return c.conn.SetWriteDeadline(t)
}
