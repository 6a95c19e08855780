package bench

import (
	"bufio"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
)

// The WebSocket client is the small part of RFC 6455 an MQTT client needs:
// the opening handshake with subprotocol "mqtt", masked binary frames out,
// and unmasked frames in (data, ping, close).

const wsGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// wsHandshake upgrades nc and returns a net.Conn that carries MQTT bytes in
// binary frames.
func wsHandshake(nc net.Conn, host, path string) (net.Conn, error) {
	var k [16]byte
	rand.Read(k[:])
	key := base64.StdEncoding.EncodeToString(k[:])
	req := "GET " + path + " HTTP/1.1\r\nHost: " + host +
		"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + key +
		"\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n"
	if _, err := io.WriteString(nc, req); err != nil {
		nc.Close()
		return nil, fmt.Errorf("websocket handshake: %w", err)
	}
	br := bufio.NewReaderSize(nc, 1024)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("websocket handshake: %w", err)
	}
	resp.Body.Close()
	sum := sha1.Sum([]byte(key + wsGUID))
	switch {
	case resp.StatusCode != http.StatusSwitchingProtocols:
		err = fmt.Errorf("websocket handshake: status %s", resp.Status)
	case !strings.EqualFold(resp.Header.Get("Upgrade"), "websocket"):
		err = errors.New("websocket handshake: no Upgrade: websocket")
	case resp.Header.Get("Sec-WebSocket-Accept") != base64.StdEncoding.EncodeToString(sum[:]):
		err = errors.New("websocket handshake: bad Sec-WebSocket-Accept")
	}
	if err != nil {
		nc.Close()
		return nil, err
	}
	return &wsConn{Conn: nc, br: br}, nil
}

// wsConn frames writes and unframes reads. Reads come from one goroutine
// (the reader); writes are serialized by wmu because the reader answers pings.
type wsConn struct {
	net.Conn
	br     *bufio.Reader
	remain int64 // payload bytes left in the current data frame

	wmu  sync.Mutex
	wbuf []byte
}

// Write sends b as one masked binary frame [RFC 6455 5.3: client frames are masked].
func (c *wsConn) Write(b []byte) (int, error) {
	if err := c.writeFrame(0x2, b); err != nil {
		return 0, err
	}
	return len(b), nil
}

func (c *wsConn) writeFrame(op byte, b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	f := append(c.wbuf[:0], 0x80|op)
	switch n := len(b); {
	case n < 126:
		f = append(f, 0x80|byte(n))
	case n <= 0xFFFF:
		f = append(f, 0x80|126, byte(n>>8), byte(n))
	default:
		f = append(f, 0x80|127)
		f = binary.BigEndian.AppendUint64(f, uint64(n))
	}
	var mask [4]byte
	rand.Read(mask[:])
	f = append(f, mask[:]...)
	start := len(f)
	f = append(f, b...)
	for i := range f[start:] {
		f[start+i] ^= mask[i&3]
	}
	_, err := c.Conn.Write(f)
	if cap(f) <= 64<<10 {
		c.wbuf = f[:0]
	}
	return err
}

// Read returns payload bytes of data frames, answering pings and ending
// with io.EOF at a close frame.
func (c *wsConn) Read(b []byte) (int, error) {
	for c.remain == 0 {
		op, n, err := c.readFrameHeader()
		if err != nil {
			return 0, err
		}
		switch op {
		case 0x0, 0x1, 0x2:
			c.remain = n
		case 0x8:
			c.writeFrame(0x8, nil)
			return 0, io.EOF
		case 0x9, 0xA:
			p := make([]byte, n)
			if _, err := io.ReadFull(c.br, p); err != nil {
				return 0, err
			}
			if op == 0x9 {
				c.writeFrame(0xA, p)
			}
		default:
			return 0, fmt.Errorf("websocket: unknown opcode %#x", op)
		}
	}
	if int64(len(b)) > c.remain {
		b = b[:c.remain]
	}
	n, err := c.br.Read(b)
	c.remain -= int64(n)
	return n, err
}

func (c *wsConn) readFrameHeader() (op byte, n int64, err error) {
	var h [14]byte
	if _, err = io.ReadFull(c.br, h[:2]); err != nil {
		return 0, 0, err
	}
	op, n = h[0]&0x0F, int64(h[1]&0x7F)
	masked := h[1]&0x80 != 0
	switch n {
	case 126:
		if _, err = io.ReadFull(c.br, h[2:4]); err != nil {
			return 0, 0, err
		}
		n = int64(binary.BigEndian.Uint16(h[2:4]))
	case 127:
		if _, err = io.ReadFull(c.br, h[2:10]); err != nil {
			return 0, 0, err
		}
		n = int64(binary.BigEndian.Uint64(h[2:10]))
	}
	if masked || n < 0 {
		return 0, 0, errors.New("websocket: masked or oversized frame from server")
	}
	return op, n, nil
}
