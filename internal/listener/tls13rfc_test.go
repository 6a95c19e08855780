package listener

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/culexmq/culex/internal/config"
)

// pipePair is a server record layer and a peer speaking to it over
// net.Pipe, which is synchronous: a write waits until the other side
// reads it, so a peer that does not read holds the server's writer. The
// peer is a tls13Conn too, with the directions' secrets swapped.
func pipePair(t *testing.T) (srv, peer *tls13Conn) {
	t.Helper()
	a, b := net.Pipe()
	cs, ss := make([]byte, 32), make([]byte, 32)
	rand.Read(cs)
	rand.Read(ss)
	srv, err := newTLS13Conn(a, tls.TLS_AES_128_GCM_SHA256, cs, ss, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	peer, err = newTLS13Conn(b, tls.TLS_AES_128_GCM_SHA256, ss, cs, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	deadline := time.Now().Add(10 * time.Second)
	a.SetDeadline(deadline)
	b.SetDeadline(deadline)
	return srv, peer
}

// sealRaw has the peer send one record of typ whose plaintext is p
// followed by pad zero bytes, bypassing the record layer's own framing.
func sealRaw(t *testing.T, c *tls13Conn, typ byte, p []byte, pad int) {
	t.Helper()
	a, err := c.wr.cipher()
	if err != nil {
		t.Fatal(err)
	}
	inner := append(append(append([]byte(nil), p...), typ), make([]byte, pad)...)
	rec := []byte{recordTypeAppData, 3, 3, 0, 0}
	n := len(inner) + a.Overhead()
	rec[3], rec[4] = byte(n>>8), byte(n)
	var nonce [12]byte
	c.wr.nonce(&nonce)
	rec = a.Seal(rec, nonce[:], inner, rec[:recordHeaderLen])
	if _, err := c.conn.Write(rec); err != nil { // until the other side read it
		t.Fatal(err)
	}
}

// readErr reads c until it fails, and returns the error.
func readErr(c *tls13Conn) chan error {
	done := make(chan error, 1)
	go func() {
		b := make([]byte, 64<<10)
		for {
			if _, err := c.Read(b); err != nil {
				done <- err
				return
			}
		}
	}()
	return done
}

func wait(t *testing.T, ch chan error, what string) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: no answer", what)
		return nil
	}
}

// TestTLS13RecordErrors: records the peer should not have sent end the
// connection, and the peer is told why with a fatal alert.
func TestTLS13RecordErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		typ   byte
		plain []byte
		pad   int
		seq   uint64
		err   string
		alert string
	}{
		// [RFC 8446 5.1] the bytes after a KeyUpdate are under the next key.
		{"bytes after a KeyUpdate in its record", recordTypeHandshake, []byte{typeKeyUpdate, 0, 0, 1, 0, typeKeyUpdate}, 0, 0,
			"after a KeyUpdate", "peer alert 10"},
		// [RFC 8446 5.4] the limit counts the padding.
		{"TLSInnerPlaintext over 2^14+1 with padding", recordTypeAppData, make([]byte, maxPlaintext), 100, 0,
			"record overflow", "peer alert 22"},
		{"record that does not decrypt", recordTypeAppData, []byte("hello"), 0, 7,
			"bad record MAC", "peer alert 20"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, peer := pipePair(t)
			peerGot := readErr(peer)
			srvGot := readErr(srv)
			peer.wr.seq = tc.seq // the server expects 0
			sealRaw(t, peer, tc.typ, tc.plain, tc.pad)
			if err := wait(t, srvGot, "server read"); !strings.Contains(err.Error(), tc.err) {
				t.Errorf("server read %v, want %q", err, tc.err)
			}
			if err := wait(t, peerGot, "peer read"); !strings.Contains(err.Error(), tc.alert) {
				t.Errorf("peer read %v, want %q", err, tc.alert)
			}
		})
	}
}

// TestTLS13KeyUpdateAnswerDoesNotWait [RFC 8446 4.6.3]: a KeyUpdate that
// asks for an answer while the server's writer is stuck on a peer that
// does not read leaves reading free; the answer goes out before the
// server's next record, which the peer reads under the new key.
func TestTLS13KeyUpdateAnswerDoesNotWait(t *testing.T) {
	srv, peer := pipePair(t)
	big := make([]byte, 100<<10)
	rand.Read(big)
	wrote := make(chan error, 1)
	go func() { _, err := srv.Write(big); wrote <- err }() // stuck: the peer does not read yet
	for srv.wmu.TryLock() {
		srv.wmu.Unlock()             // the writer has not started yet
		time.Sleep(time.Millisecond) // polling interval
	}
	got := make(chan error, 1)
	go func() {
		b := make([]byte, 5)
		_, err := io.ReadFull(srv, b)
		if err == nil && string(b) != "after" {
			err = errors.New("read " + string(b))
		}
		got <- err
	}()
	// update_requested, then data under the peer's next key.
	sealRaw(t, peer, recordTypeHandshake, []byte{typeKeyUpdate, 0, 0, 1, 1}, 0)
	peer.wr.update()
	if _, err := peer.Write([]byte("after")); err != nil {
		t.Fatal(err)
	}
	if err := wait(t, got, "server read behind a stuck writer"); err != nil {
		t.Fatal(err)
	}
	// Now the peer reads: the big write, the answer, then more.
	go func() {
		if err := <-wrote; err == nil {
			_, err = srv.Write([]byte("next"))
			wrote <- err
		}
	}()
	b := make([]byte, len(big)+4)
	if _, err := io.ReadFull(peer, b); err != nil {
		t.Fatalf("peer read: %v", err)
	}
	if !bytes.Equal(b[:len(big)], big) || string(b[len(big):]) != "next" {
		t.Fatal("peer read other bytes")
	}
	if peer.rd.seq != 1 {
		t.Errorf("peer read %d records under its new read key, want 1: no KeyUpdate answer", peer.rd.seq)
	}
}

// TestTLS13ServerKeyUpdate [RFC 8446 5.5]: after keyUpdateAfter records
// under one key the server moves to the next with a KeyUpdate of its own,
// which crypto/tls's client follows.
func TestTLS13ServerKeyUpdate(t *testing.T) {
	defer keyUpdateAfter.Store(keyUpdateAfter.Swap(3))
	p := newPKI(t)
	s := startServer(t, config.Listener{URL: "ssl://127.0.0.1:0", TLS: p.tlsConfig("", false)}, nil)
	c, err := dialTLS(t, s.l, p.clientConfig()) // one echo
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		roundTrip(t, c, fmt.Sprintf("message %d", i))
	}
	a := s.next(t)
	srv := a.conn.(*tls13Conn)
	srv.wmu.Lock()
	seq := srv.wr.seq
	srv.wmu.Unlock()
	if seq > 3 {
		t.Errorf("%d records under the server's write key, want at most 3", seq)
	}
	c.Close()
	s.end(t)
}
