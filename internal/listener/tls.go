package listener

import (
	"bytes"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/culexmq/culex/internal/config"
)

// Defaults of the listener's TLS keys (config.TLS).
const (
	DefaultTicketRotation = 12 * time.Hour
	DefaultReloadInterval = 10 * time.Second
)

// loadTLS builds the server TLS configuration of an ssl or wss listener.
//
// ClientAuth none (or empty with no ClientCAFile) asks for no certificate;
// request asks for one and verifies it against ClientCAFile when given (empty
// with a ClientCAFile means request); require demands a certificate that
// verifies against ClientCAFile, which must then be set.
func loadTLS(c config.TLS) (*tls.Config, error) {
	if c.CertFile == "" || c.KeyFile == "" {
		return nil, errors.New("tls: cert_file and key_file are required")
	}
	cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("tls: load key pair: %w", err)
	}
	conf := &tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   tls.VersionTLS12,
	}
	if c.ClientCAFile != "" {
		pem, err := os.ReadFile(c.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("tls: client ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls: client ca %s: no PEM certificates", c.ClientCAFile)
		}
		conf.ClientCAs = pool
	}
	withCA := conf.ClientCAs != nil
	switch c.ClientAuth {
	case "none":
		conf.ClientAuth = tls.NoClientCert
	case "":
		if withCA {
			conf.ClientAuth = tls.VerifyClientCertIfGiven
		}
	case "request":
		conf.ClientAuth = tls.RequestClientCert
		if withCA {
			conf.ClientAuth = tls.VerifyClientCertIfGiven
		}
	case "require":
		if !withCA {
			return nil, errors.New("tls: client_auth require needs client_ca_file")
		}
		conf.ClientAuth = tls.RequireAndVerifyClientCert
	default:
		return nil, fmt.Errorf("tls: client_auth %q: want none, request or require", c.ClientAuth)
	}
	return conf, nil
}

// tlsState is a listener's TLS material: the configuration in use, which a
// reload replaces, and the session ticket keys.
type tlsState struct {
	cfg      config.TLS
	log      *slog.Logger
	secret   []byte
	rotation time.Duration
	now      func() time.Time // the ticket keys' clock; time.Now but in tests

	conf  atomic.Pointer[tls.Config]
	epoch atomic.Int64 // of the ticket keys set on conf; written with mu held

	// mu guards the fields below it, and serialises setting ticket keys.
	mu    sync.Mutex
	files [3]fileID // cert, key, client CA as last loaded
	bad   [3]fileID // the files of a reload that failed, not to log it again
}

// fileID tells a replaced file from the one loaded: cert-manager and
// Kubernetes swap a symlink, editors rename over, renewals rewrite.
type fileID struct {
	dev, ino uint64
	mtime    int64
	size     int64
}

func statID(path string) fileID {
	if path == "" {
		return fileID{}
	}
	fi, err := os.Stat(path)
	if err != nil {
		return fileID{}
	}
	id := fileID{mtime: fi.ModTime().UnixNano(), size: fi.Size()}
	id.dev, id.ino = devIno(fi)
	return id
}

func (s *tlsState) stat() [3]fileID {
	return [3]fileID{statID(s.cfg.CertFile), statID(s.cfg.KeyFile), statID(s.cfg.ClientCAFile)}
}

func newTLSState(c config.TLS, log *slog.Logger) (*tlsState, error) {
	s := &tlsState{cfg: c, log: log, rotation: c.TicketRotation, now: time.Now}
	if s.rotation <= 0 {
		s.rotation = DefaultTicketRotation
	}
	if c.TicketSecret != "" {
		s.secret = []byte(c.TicketSecret)
	} else {
		s.secret = make([]byte, 32)
		rand.Read(s.secret)
	}
	s.files = s.stat()
	conf, err := loadTLS(c)
	if err != nil {
		return nil, err
	}
	s.install(conf, time.Now())
	return s, nil
}

// install makes conf the configuration in use, with the ticket keys of now.
func (s *tlsState) install(conf *tls.Config, now time.Time) {
	e := now.UnixNano() / int64(s.rotation)
	conf.SetSessionTicketKeys(ticketKeys(s.secret, e))
	s.conf.Store(conf)
	s.epoch.Store(e)
}

// ticketKeys are the keys of epoch e: its own first (it encrypts new
// tickets), then the previous one's (tickets issued before the rotation)
// and the next one's (tickets of a node whose clock is a little ahead).
func ticketKeys(secret []byte, e int64) [][32]byte {
	keys := make([][32]byte, 0, 3)
	for _, x := range []int64{e, e - 1, e + 1} {
		var info [8]byte
		binary.BigEndian.PutUint64(info[:], uint64(x))
		k, err := hkdf.Key(sha256.New, secret, []byte("culex session ticket key"), string(info[:]), 32)
		if err != nil {
			panic(err) // 32 bytes are far below HKDF's limit
		}
		keys = append(keys, [32]byte(k))
	}
	return keys
}

// config is the configuration for the next handshake: the one in use,
// with the ticket keys of the current epoch.
func (s *tlsState) config(now time.Time) *tls.Config {
	conf := s.conf.Load()
	if now.UnixNano()/int64(s.rotation) != s.epoch.Load() {
		s.mu.Lock()
		conf = s.conf.Load() // a reload may have replaced it
		if e := now.UnixNano() / int64(s.rotation); e != s.epoch.Load() {
			conf.SetSessionTicketKeys(ticketKeys(s.secret, e))
			s.epoch.Store(e)
		}
		s.mu.Unlock()
	}
	return conf
}

// reload loads the certificate, key and client CA files again when one
// of them changed. A pair that does not load is logged (once per change)
// and the old one kept; connections are never touched.
func (s *tlsState) reload() {
	ids := s.stat()
	s.mu.Lock()
	defer s.mu.Unlock()
	if ids == s.files || ids == s.bad {
		return
	}
	conf, err := loadTLS(s.cfg)
	if err != nil {
		s.bad = ids
		s.log.Error("tls: new certificate files do not load; serving the old certificate", "cert_file", s.cfg.CertFile, "err", err)
		return
	}
	s.files, s.bad = ids, [3]fileID{}
	e := s.now().UnixNano() / int64(s.rotation)
	conf.SetSessionTicketKeys(ticketKeys(s.secret, e))
	s.conf.Store(conf)
	s.epoch.Store(e)
	leaf := conf.Certificates[0].Leaf
	if leaf != nil {
		s.log.Info("tls: certificate reloaded", "cert_file", s.cfg.CertFile, "subject", leaf.Subject.String(), "not_after", leaf.NotAfter)
	} else {
		s.log.Info("tls: certificate reloaded", "cert_file", s.cfg.CertFile)
	}
}

// secrets takes the TLS 1.3 application traffic secrets crypto/tls writes
// to a Config's KeyLogWriter, for the record layer (tls13.go), and adds up
// the length of the NewSessionTicket messages sent under the server's.
type secrets struct {
	client, server []byte
	ticketLen      int // bytes of NewSessionTicket messages, headers included
}

func (s *secrets) Write(line []byte) (int, error) {
	// "LABEL <client random hex> <secret hex>\n"
	f := bytes.Fields(line)
	if len(f) != 3 {
		return len(line), nil
	}
	var dst *[]byte
	switch string(f[0]) {
	case "CLIENT_TRAFFIC_SECRET_0":
		dst = &s.client
	case "SERVER_TRAFFIC_SECRET_0":
		dst = &s.server
	default:
		return len(line), nil
	}
	b := make([]byte, hex.DecodedLen(len(f[2])))
	if _, err := hex.Decode(b, f[2]); err != nil {
		return 0, err
	}
	*dst = b
	return len(line), nil
}

// handshakeTLS runs the server handshake on raw. A TLS 1.3 connection
// continues on the listener's own record layer, without crypto/tls's
// Conn; TLS 1.2 keeps the *tls.Conn.
func (s *tlsState) handshakeTLS(raw net.Conn) (net.Conn, *tls.ConnectionState, error) {
	var sec secrets
	conf := s.config(s.now()).Clone()
	conf.KeyLogWriter = &sec
	conf.WrapSession = func(cs tls.ConnectionState, ss *tls.SessionState) ([]byte, error) {
		t, err := conf.EncryptTicket(cs, ss)
		sec.ticketLen += newSessionTicketLen(len(t))
		return t, err
	}
	hc := &recordReader{Conn: raw}
	tc := tls.Server(hc, conf)
	if err := tc.Handshake(); err != nil {
		return nil, nil, err
	}
	st := tc.ConnectionState()
	kept := &tls.ConnectionState{
		Version: st.Version, HandshakeComplete: true, DidResume: st.DidResume, CipherSuite: st.CipherSuite,
		NegotiatedProtocol: st.NegotiatedProtocol, ServerName: st.ServerName,
		PeerCertificates: st.PeerCertificates, VerifiedChains: st.VerifiedChains,
	}
	if st.Version == tls.VersionTLS13 && sec.client != nil && sec.server != nil {
		if wseq, ok := hc.ticketRecords(sec.ticketLen); ok {
			if c, err := newTLS13Conn(raw, st.CipherSuite, sec.client, sec.server, nil, wseq); err == nil {
				return c, kept, nil
			}
		}
	}
	hc.whole = true
	return tc, kept, nil
}

// newSessionTicketLen is the length of a TLS 1.3 NewSessionTicket message
// (RFC 8446 section 4.6.1) with a ticket of n bytes as crypto/tls sends it:
// the handshake header (4), ticket_lifetime (4), ticket_age_add (4), an
// empty ticket_nonce (1), the ticket (2+n) and no extensions (2).
func newSessionTicketLen(n int) int { return 4 + 4 + 4 + 1 + 2 + n + 2 }

// aeadOverhead is the tag of every TLS 1.3 AEAD (AES-GCM, ChaCha20-Poly1305).
const aeadOverhead = 16

// ticketRecords is how many of the records crypto/tls wrote last carry the
// msgLen bytes of session tickets: the records sent under the server's
// application traffic secret, whose count is the record layer's first
// sequence number. A ticket longer than a record (a client certificate
// chain over 16 KiB) takes several.
//
// Counting the records written after crypto/tls logged the secret would
// not do: without client certificates it buffers its whole flight, the
// ticket included, and writes it at once after the log line. So the
// records are counted back from the last one written, each holding its
// plaintext, a content type byte and the tag and no padding, until they
// hold the tickets exactly. If they do not add up, crypto/tls framed them
// some other way and false says to keep its Conn.
func (r *recordReader) ticketRecords(msgLen int) (uint64, bool) {
	if r.whdrN != 0 || r.wleft != 0 {
		return 0, false // a record written in part
	}
	var n uint64
	for i := len(r.written) - 1; i >= 0 && msgLen > 0; i-- {
		body := r.written[i] - 1 - aeadOverhead
		if body <= 0 || body > maxPlaintext || body > msgLen {
			return 0, false
		}
		msgLen -= body
		n++
	}
	if msgLen != 0 {
		return 0, false
	}
	return n, true
}

// recordReader is the socket beneath crypto/tls during the handshake. It
// never reads past the end of the record crypto/tls is reading, so that
// when the handshake is done crypto/tls holds none of the client's bytes
// and the record layer takes over at the next record. After the handshake
// (TLS 1.2, which stays on crypto/tls) it reads whole.
type recordReader struct {
	net.Conn
	hdr   [recordHeaderLen]byte
	hdrN  int
	left  int // bytes of the current record's body still to read
	whole bool

	// The records crypto/tls wrote during the handshake, by length, for
	// ticketRecords; whdr and wleft parse the stream as Read does.
	written []int
	whdr    [recordHeaderLen]byte
	whdrN   int
	wleft   int
}

// Write notes the length of each record in p on the way to the socket.
func (r *recordReader) Write(p []byte) (int, error) {
	if r.whole {
		return r.Conn.Write(p)
	}
	for b := p; len(b) > 0; {
		if r.wleft > 0 {
			k := min(len(b), r.wleft)
			b, r.wleft = b[k:], r.wleft-k
			continue
		}
		k := copy(r.whdr[r.whdrN:], b)
		b, r.whdrN = b[k:], r.whdrN+k
		if r.whdrN == recordHeaderLen {
			r.wleft = int(binary.BigEndian.Uint16(r.whdr[3:5]))
			r.written = append(r.written, r.wleft)
			r.whdrN = 0
		}
	}
	return r.Conn.Write(p)
}

func (r *recordReader) Read(p []byte) (int, error) {
	if r.whole {
		return r.Conn.Read(p)
	}
	if r.hdrN < recordHeaderLen {
		n, err := r.Conn.Read(p[:min(len(p), recordHeaderLen-r.hdrN)])
		copy(r.hdr[r.hdrN:], p[:n])
		r.hdrN += n
		if r.hdrN == recordHeaderLen {
			r.left = int(binary.BigEndian.Uint16(r.hdr[3:5]))
			if r.left == 0 {
				r.hdrN = 0
			}
		}
		return n, err
	}
	n, err := r.Conn.Read(p[:min(len(p), r.left)])
	if r.left -= n; r.left == 0 {
		r.hdrN = 0
	}
	return n, err
}

// NetConn returns the socket.
func (r *recordReader) NetConn() net.Conn { return r.Conn }

// SyscallConn is the socket's, for a reader that waits for readability.
func (r *recordReader) SyscallConn() (syscall.RawConn, error) {
	if sc, ok := r.Conn.(syscall.Conn); ok {
		return sc.SyscallConn()
	}
	return nil, errors.New("tls: not a socket")
}
