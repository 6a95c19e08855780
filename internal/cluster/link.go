package cluster

import (
	"bufio"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/culexmq/culex/internal/broker"
	"github.com/culexmq/culex/internal/netpoll"
)

// Forwarded batches and their acknowledgements travel on links: one TCP
// connection from each node to each other node it forwards to, dialed by
// the sender, that carries its batches one way and their acknowledgements
// back. NATS still carries the interest, the heartbeats and everything
// else; a node that announces no link (cluster.link_listen off, or an
// older version) is sent batches through NATS as before (msg.<node>).
// Measured against NATS in docs/cluster.md ("Links"): a round trip
// through NATS crosses about fourteen goroutine hand-offs and two
// servers, one on a link three.
//
// A link opens with a handshake that proves both ends know
// cluster.secret (HMAC-SHA256 over both sides' nonces), after TLS with
// the cluster CA when cluster.tls is set; the listener never reads a
// batch from a peer that has not proved it. Then each message on it is a
// 4-byte little-endian length and a body: a batch of frames (wire.go)
// from the dialer, an acknowledgement batch (the sender's name, then
// pairs of sequence and reason code) from the listener.

// linkMagic opens a link (and names its version).
const linkMagic = "CULEXLK1"

// linkHandshakeTimeout bounds a link's handshake, on both ends.
const linkHandshakeTimeout = 5 * time.Second

// maxLinkMessage bounds one message on a link: a batch is at most
// chunkSize unless one frame is bigger, and a frame is at most an MQTT
// packet (256 MiB).
const maxLinkMessage = 1<<28 + 1<<20

// maxLinkHandshakes bounds the accepted connections in their handshake
// at once: more are closed at once (a flood of them costs nothing else).
const maxLinkHandshakes = 64

// linkBackoffMax bounds the wait between dials of a node that refused.
const linkBackoffMax = 2 * time.Second

var errLinkDown = errors.New("cluster: link down")

// links is a node's link listener and what it needs to dial others.
type links struct {
	r       *Router
	ln      net.Listener
	addr    string // what the node announces: host:port, or :port (dialers use the route's address)
	secret  []byte
	tls     *tls.Config // nil: plain TCP
	cluster string

	mu     sync.Mutex
	in     map[net.Conn]struct{} // accepted links, closed by close
	closed bool
	wg     sync.WaitGroup

	handshakes chan struct{} // a slot per accepted connection in its handshake
}

// startLinks listens for links on cluster.link_listen, when the node
// forwards on links at all (config.Cluster.LinkAddress).
func (r *Router) startLinks() error {
	cfg := r.f.Config()
	addr, ok := cfg.LinkAddress()
	if !ok {
		return nil
	}
	tc, err := r.f.LinkTLS()
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("cluster.link_listen: %w", err)
	}
	host, _, _ := net.SplitHostPort(addr)
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "" // any address: the dialers use the one they route to
	}
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	l := &links{r: r, ln: ln, addr: net.JoinHostPort(host, port), secret: []byte(cfg.Secret), tls: tc,
		cluster: cfg.Name, in: make(map[net.Conn]struct{}), handshakes: make(chan struct{}, maxLinkHandshakes)}
	r.links = l
	l.wg.Add(1)
	go l.accept()
	r.log.Info("cluster: links listening", "addr", ln.Addr().String())
	return nil
}

func (l *links) accept() {
	defer l.wg.Done()
	backoff := 5 * time.Millisecond
	for {
		c, err := l.ln.Accept()
		if err != nil {
			if l.isClosed() {
				return
			}
			// Out of file descriptors, most likely: wait, as net/http does.
			time.Sleep(backoff)
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 5 * time.Millisecond
		select {
		case l.handshakes <- struct{}{}: // released by serve once the handshake ends
		default:
			c.Close()
			continue
		}
		l.mu.Lock()
		if l.closed {
			l.mu.Unlock()
			c.Close()
			<-l.handshakes
			return
		}
		l.in[c] = struct{}{}
		l.wg.Add(1)
		l.mu.Unlock()
		go l.serve(c)
	}
}

func (l *links) isClosed() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.closed
}

// close stops accepting, closes every accepted link and waits for their
// goroutines: nothing is injected after it.
func (l *links) close() {
	l.mu.Lock()
	l.closed = true
	for c := range l.in {
		c.Close()
	}
	l.mu.Unlock()
	l.ln.Close()
	l.wg.Wait()
}

// serve reads one accepted link: the handshake, then batches, each
// injected and acknowledged on the link.
func (l *links) serve(raw net.Conn) {
	defer l.wg.Done()
	defer func() {
		l.mu.Lock()
		delete(l.in, raw)
		l.mu.Unlock()
		raw.Close()
	}()
	c := netpoll.Stream(raw) // reads and writes as raw system calls
	if l.tls != nil {
		c = tls.Server(c, l.tls)
	}
	br := bufio.NewReaderSize(c, 64<<10)
	from, err := l.accepted(c, br)
	<-l.handshakes
	if err != nil {
		l.r.log.Warn("cluster: link refused", "remote", raw.RemoteAddr().String(), "err", err)
		return
	}
	acks := &linkAcks{r: l.r, c: c, to: from}
	q := newLinkQueue(l.r.maxPending)
	src := &inbound{lk: acks}
	go l.injectQueued(q, src)
	defer q.close() // and waits for the injector, which sends the last acknowledgements
	var buf []byte
	for {
		body, err := readLinkMessage(br, &buf)
		switch {
		case err != nil:
		case q.idle() && br.Buffered() <= inlineGroupBytes:
			// Nothing waits: injected here, without a hand-off, with the
			// few batches that came with it (read already) in one group.
			err = l.injectBuffered(br, &buf, body, src)
		default:
			// Batches come faster than they are routed: read ahead, up to
			// max_pending_bytes, for the injector to route in order.
			q.push(slices.Clone(body))
		}
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && !l.isClosed() {
				l.r.log.Info("cluster: link closed", "from", from, "err", err)
			}
			return
		}
	}
}

// inlineGroupBytes bounds what may be buffered behind a batch for the
// link's reader to route it with the batches buffered, itself. More is a
// backlog: the batches then go to the injector, and the reader reads on
// while they are routed.
const inlineGroupBytes = 16 << 10

// injectBuffered routes body, and the whole batches br already holds
// after it, as one group (up to maxGroupBytes), as the injector routes
// batches queued together: one write per subscriber and one
// acknowledgement message for them all. Only an error reading a batch
// that was already buffered is returned (the link is then broken).
func (l *links) injectBuffered(br *bufio.Reader, buf *[]byte, body []byte, src *inbound) error {
	bt := l.r.b.Batch(time.Now().UnixNano())
	var err error
	for routed := 0; ; {
		l.r.sendAcks(l.r.injectIn(bt, body, src))
		routed += len(body)
		if routed >= maxGroupBytes || !linkMessageBuffered(br) {
			break
		}
		if body, err = readLinkMessage(br, buf); err != nil {
			break
		}
	}
	bt.EndHere() // before the acknowledgements: they say the copies are queued
	src.lk.flush()
	return err
}

// A link's reader reads ahead of its routing while batches come faster
// than they are routed, up to cluster.max_pending_bytes (then TCP holds
// up the sender, whose route fills: QoS 0 over it is dropped there).
// The injector goroutine routes what was read ahead, in order, and sends
// the acknowledgements. The reader routes batches itself only while the
// injector has nothing (injectBuffered): then they never both route, and
// order holds.
type linkQueue struct {
	mu      sync.Mutex
	cond    sync.Cond
	q       [][]byte
	bytes   int
	max     int
	busy    bool // the injector is routing a batch it took
	closed  bool
	stopped chan struct{}
}

func newLinkQueue(max int) *linkQueue {
	q := &linkQueue{max: max, stopped: make(chan struct{})}
	q.cond.L = &q.mu
	return q
}

// idle reports whether the injector has nothing to route: read by the
// reader, the only one to push.
func (q *linkQueue) idle() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.q) == 0 && !q.busy
}

// push queues a batch, waiting while max_pending_bytes are queued.
func (q *linkQueue) push(b []byte) {
	q.mu.Lock()
	for q.bytes > 0 && q.bytes+len(b) > q.max && !q.closed {
		q.cond.Wait()
	}
	q.q = append(q.q, b)
	q.bytes += len(b)
	q.cond.Broadcast()
	q.mu.Unlock()
}

// close ends the queue once the injector has routed what it holds.
func (q *linkQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.cond.Broadcast()
	q.mu.Unlock()
	<-q.stopped
}

// injectQueued is a link's injector. The batches it finds queued together
// are routed in one broker batch, up to maxGroupBytes: each subscriber's
// copies of them leave in one write, and their acknowledgements in one
// message, after those writes are queued.
func (l *links) injectQueued(q *linkQueue, src *inbound) {
	defer close(q.stopped)
	var bt *broker.Batch
	routed := 0
	for {
		q.mu.Lock()
		q.busy = false
		q.cond.Broadcast()
		for len(q.q) == 0 && !q.closed {
			q.cond.Wait()
		}
		if len(q.q) == 0 {
			q.mu.Unlock()
			src.lk.flush()
			return
		}
		b := q.q[0]
		q.q[0] = nil
		q.q = q.q[1:]
		q.bytes -= len(b)
		q.busy = true
		more := len(q.q) > 0
		q.cond.Broadcast()
		q.mu.Unlock()
		if bt == nil {
			bt = l.r.b.Batch(time.Now().UnixNano())
		}
		// Queued on the link; written by the flush below, after bt ends.
		l.r.sendAcks(l.r.injectIn(bt, b, src))
		routed += len(b)
		// While more is queued (then the reader does not route: order
		// holds), the group stays open.
		if !more || routed >= maxGroupBytes || src.lk.pendingBytes() >= maxPendingAcks {
			bt.EndHere()
			bt, routed = nil, 0
			src.lk.flush()
		}
	}
}

// maxGroupBytes bounds the batches an injector routes before it writes
// their copies: one chunk, as a batch alone.
const maxGroupBytes = chunkSize

// maxPendingAcks bounds the acknowledgements a link holds back while
// more batches are waiting to be read.
const maxPendingAcks = 64 << 10

// linkMessageBuffered reports whether br holds a whole next message.
func linkMessageBuffered(br *bufio.Reader) bool {
	if br.Buffered() < 4 {
		return false
	}
	hdr, _ := br.Peek(4)
	return br.Buffered()-4 >= int(binary.LittleEndian.Uint32(hdr))
}

// accepted runs the listener's side of the handshake and returns the
// dialer's name.
func (l *links) accepted(c net.Conn, br *bufio.Reader) (string, error) {
	c.SetDeadline(time.Now().Add(linkHandshakeTimeout))
	defer c.SetDeadline(time.Time{})
	var magic [len(linkMagic)]byte
	if _, err := io.ReadFull(br, magic[:]); err != nil {
		return "", err
	}
	if string(magic[:]) != linkMagic {
		return "", errors.New("not a Culex link")
	}
	cluster, err := readLinkString(br)
	if err != nil {
		return "", err
	}
	if cluster != l.cluster {
		return "", fmt.Errorf("from cluster %q, not %q", cluster, l.cluster)
	}
	from, err := readLinkString(br)
	if err != nil {
		return "", err
	}
	var theirs [16]byte
	if _, err := io.ReadFull(br, theirs[:]); err != nil {
		return "", err
	}
	var ours [16]byte
	rand.Read(ours[:])
	var epoch [8]byte
	binary.LittleEndian.PutUint64(epoch[:], l.r.epoch)
	out := appendString(nil, l.r.node)
	out = append(out, epoch[:]...)
	out = append(out, ours[:]...)
	out = append(out, l.mac("listener", l.r.node, epoch[:], theirs[:], ours[:])...)
	if _, err := c.Write(out); err != nil {
		return "", err
	}
	var proof [sha256.Size]byte
	if _, err := io.ReadFull(br, proof[:]); err != nil {
		return "", err
	}
	if !hmac.Equal(proof[:], l.mac("dialer", from, nil, theirs[:], ours[:])) {
		return "", errors.New("wrong cluster.secret")
	}
	return from, nil
}

// mac is what proves cluster.secret: over the role, the cluster's and the
// prover's names, and both nonces (the dialer's first).
func (l *links) mac(role, node string, epoch, dialerNonce, listenerNonce []byte) []byte {
	h := hmac.New(sha256.New, l.secret)
	for _, s := range []string{linkMagic, role, l.cluster, node} {
		h.Write(appendString(nil, s))
	}
	h.Write(epoch)
	h.Write(dialerNonce)
	h.Write(listenerNonce)
	return h.Sum(nil)
}

// dial opens a link to node's run epoch at addr, handshake done.
func (l *links) dial(node string, epoch uint64, addr string, timeout time.Duration) (net.Conn, *bufio.Reader, error) {
	d := net.Dialer{Timeout: timeout}
	raw, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	c := netpoll.Stream(raw)
	if l.tls != nil {
		tc := l.tls.Clone()
		tc.ServerName = "" // verified against the cluster CA, not a host name (verifyChain)
		tc.InsecureSkipVerify = true
		tc.VerifyConnection = verifyChain(l.tls)
		c = tls.Client(c, tc)
	}
	c.SetDeadline(time.Now().Add(timeout))
	br := bufio.NewReaderSize(c, 16<<10)
	if err := l.handshake(c, br, node, epoch); err != nil {
		raw.Close()
		return nil, nil, err
	}
	c.SetDeadline(time.Time{})
	return c, br, nil
}

// handshake runs the dialer's side: it proves the secret only to a
// listener that proved it first, and only to the run it meant.
func (l *links) handshake(c net.Conn, br *bufio.Reader, node string, epoch uint64) error {
	var ours [16]byte
	rand.Read(ours[:])
	out := append([]byte(linkMagic), appendString(nil, l.cluster)...)
	out = appendString(out, l.r.node)
	out = append(out, ours[:]...)
	if _, err := c.Write(out); err != nil {
		return err
	}
	name, err := readLinkString(br)
	if err != nil {
		return err
	}
	var rest [8 + 16 + sha256.Size]byte
	if _, err := io.ReadFull(br, rest[:]); err != nil {
		return err
	}
	theirEpoch, theirs, proof := rest[:8], rest[8:24], rest[24:]
	if !hmac.Equal(proof, l.mac("listener", name, theirEpoch, ours[:], theirs)) {
		return errors.New("the node did not prove cluster.secret")
	}
	if name != node || binary.LittleEndian.Uint64(theirEpoch) != epoch {
		return fmt.Errorf("reached node %s of another run, not %s: it restarted", name, node)
	}
	_, err = c.Write(l.mac("dialer", l.r.node, nil, ours[:], theirs))
	return err
}

// verifyChain verifies a peer's certificate chain against the cluster CA
// (tc.RootCAs), not its host name: nodes dial each other by address.
func verifyChain(tc *tls.Config) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("cluster link: no certificate")
		}
		opts := x509.VerifyOptions{Roots: tc.RootCAs, Intermediates: x509.NewCertPool(),
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
		for _, ic := range cs.PeerCertificates[1:] {
			opts.Intermediates.AddCert(ic)
		}
		_, err := cs.PeerCertificates[0].Verify(opts)
		return err
	}
}

func readLinkString(br *bufio.Reader) (string, error) {
	n, err := binary.ReadUvarint(br)
	if err != nil {
		return "", err
	}
	if n > 1024 {
		return "", errors.New("malformed handshake")
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(br, b); err != nil {
		return "", err
	}
	return string(b), nil
}

// readLinkMessage reads one length-prefixed message into *buf (reused).
func readLinkMessage(br *bufio.Reader, buf *[]byte) ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(br, hdr[:]); err != nil {
		return nil, err
	}
	n := int(binary.LittleEndian.Uint32(hdr[:]))
	if n > maxLinkMessage {
		return nil, fmt.Errorf("a message of %d bytes", n)
	}
	if cap(*buf) < n {
		*buf = make([]byte, n)
	}
	b := (*buf)[:n]
	if _, err := io.ReadFull(br, b); err != nil {
		return nil, err
	}
	return b, nil
}

// writeLinkMessage writes body with its length, within timeout.
func writeLinkMessage(c net.Conn, hdr *[4]byte, body []byte, timeout time.Duration) error {
	binary.LittleEndian.PutUint32(hdr[:], uint32(len(body)))
	c.SetWriteDeadline(time.Now().Add(timeout))
	bufs := net.Buffers{hdr[:], body}
	if w, ok := c.(buffersWriter); ok {
		_, err := w.WriteBuffers(&bufs) // one writev (netpoll.Stream)
		return err
	}
	_, err := bufs.WriteTo(c)
	return err
}

// buffersWriter writes several buffers at once: netpoll.Stream.
type buffersWriter interface {
	WriteBuffers(*net.Buffers) (int64, error)
}

// linkAcks sends the acknowledgements of the batches read from an
// accepted link back on it, those of batches read together in one
// message. The link's reader and its injector use it, one at a time.
type linkAcks struct {
	r  *Router
	c  net.Conn
	to string // the dialer

	mu      sync.Mutex // the reader's and the injector's, one at a time
	hdr     [4]byte
	pending []byte // this node's name, then pairs of sequence and code
	broken  bool
}

// add queues an acknowledgement batch (this node's name, then pairs).
func (a *linkAcks) add(b []byte) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.pending) == 0 {
		a.pending = append(a.pending, b...)
		return
	}
	rd := &reader{b: b}
	rd.string() // the name, already there
	a.pending = append(a.pending, rd.b...)
}

func (a *linkAcks) pendingBytes() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.pending)
}

// flush sends what add queued: on the link, or through NATS once the
// link failed (the dialer redials).
func (a *linkAcks) flush() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.pending) == 0 {
		return
	}
	if !a.broken {
		if err := writeLinkMessage(a.c, &a.hdr, a.pending, a.r.nodeTO); err != nil {
			a.broken = true
			a.c.Close() // the reader stops
		}
	}
	if a.broken {
		a.r.nc.Publish(a.r.prefix+"ack."+a.to, a.pending)
	}
	if cap(a.pending) > maxPendingAcks {
		a.pending = nil
	} else {
		a.pending = a.pending[:0]
	}
}

// routeLink is a node route's end of its link: the flusher sends on it,
// a goroutine of its own reads the acknowledgements.
type routeLink struct {
	addr string // as the node announced it

	mu       sync.Mutex
	c        net.Conn // nil: not dialed, or broken
	released bool
	hdr      [4]byte
	// The flusher's: when to try again after a failed dial or write, and
	// the wait after the next failure.
	retryAt  time.Time
	backoff  time.Duration
	failures uint64 // dials failed (metrics)
	down     bool   // the last dial failed (logged once per outage)
}

// linkPublish sends a batch on the route's link, dialing it first when
// it is not up. A failed dial or write returns an error and sets when to
// try again (waitLink): 50 ms after the first failure, doubling to 2 s,
// until a batch is written. A batch whose write failed was not read
// whole by the node (a batch is routed only once it has all come), so
// sending it again on the next link delivers it once.
func (n *nodeRoute) linkPublish(batch []byte) error {
	lk := n.link
	lk.mu.Lock()
	c := lk.c
	lk.mu.Unlock()
	if c == nil {
		var err error
		if c, err = n.dialLink(); err != nil {
			n.linkFailed()
			return err
		}
	}
	if err := writeLinkMessage(c, &lk.hdr, batch, n.r.nodeTO); err != nil {
		n.dropLink(c)
		n.linkFailed()
		n.r.log.Warn("cluster: link write failed", "node", n.name, "err", err)
		return err
	}
	lk.backoff = 0
	return nil
}

// linkFailed sets when the flusher tries the link again.
func (n *nodeRoute) linkFailed() {
	lk := n.link
	lk.backoff = min(max(2*lk.backoff, 50*time.Millisecond), linkBackoffMax)
	lk.retryAt = time.Now().Add(lk.backoff)
}

// waitLink waits until the link may be tried again; false once the
// route is released or the router stopped.
func (n *nodeRoute) waitLink() bool {
	t := time.NewTimer(time.Until(n.link.retryAt))
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-n.quit:
		return false
	case <-n.r.stop:
		return false
	}
}

// dialLink dials the route's node.
func (n *nodeRoute) dialLink() (net.Conn, error) {
	lk := n.link
	addr, err := n.r.linkAddr(n.name, lk.addr)
	if fn := n.r.testDial.Load(); fn != nil && err == nil {
		err = (*fn)()
	}
	var c net.Conn
	var br *bufio.Reader
	if err == nil {
		c, br, err = n.r.links.dial(n.name, n.epoch, addr, min(n.r.nodeTO, linkHandshakeTimeout))
	}
	if err != nil {
		lk.mu.Lock()
		lk.failures++
		first := !lk.down
		lk.down = true
		lk.mu.Unlock()
		if first {
			n.r.log.Warn("cluster: cannot reach node's link; messages for it wait until it can, or until it is gone (cluster.link_listen, firewall)",
				"node", n.name, "addr", addr, "err", err)
		}
		return nil, err
	}
	lk.mu.Lock()
	if lk.released {
		lk.mu.Unlock()
		c.Close()
		return nil, errLinkDown
	}
	lk.c = c
	if lk.down {
		n.r.log.Info("cluster: link up again", "node", n.name)
	}
	lk.down = false
	lk.mu.Unlock()
	go n.readAcks(c, br)
	return c, nil
}

// dropLink closes c and forgets it, if it is still the route's link.
func (n *nodeRoute) dropLink(c net.Conn) {
	lk := n.link
	lk.mu.Lock()
	if lk.c == c {
		lk.c = nil
	}
	lk.mu.Unlock()
	c.Close()
}

// closeLink closes the route's link for good (release).
func (n *nodeRoute) closeLink() {
	lk := n.link
	if lk == nil {
		return
	}
	lk.mu.Lock()
	lk.released = true
	c := lk.c
	lk.c = nil
	lk.mu.Unlock()
	if c != nil {
		c.Close()
	}
}

// readAcks completes the waits the node acknowledges on link c, until it
// fails. The messages sent on it and not acknowledged wait as through
// NATS: for a later acknowledgement, or ack_timeout.
func (n *nodeRoute) readAcks(c net.Conn, br *bufio.Reader) {
	defer n.dropLink(c)
	var buf []byte
	var scratch []codedAck
	for {
		body, err := readLinkMessage(br, &buf)
		if err != nil {
			return
		}
		rd := &reader{b: body}
		if rd.string(); rd.err != nil {
			return
		}
		scratch = n.ackedBatch(rd.b, scratch)
	}
}

// linkState is the route's link as the metrics say it: "up", "down"
// (not dialed yet, or broken) or "nats" (the node announced no link),
// and the dials that failed.
func (n *nodeRoute) linkState() (string, uint64) {
	lk := n.link
	if lk == nil {
		return "nats", 0
	}
	lk.mu.Lock()
	defer lk.mu.Unlock()
	if lk.c != nil {
		return "up", lk.failures
	}
	return "down", lk.failures
}

// linkAddr is where to dial node's link, announced as announced: its
// host, or (announced without one) the address of this node's NATS route
// to it.
func (r *Router) linkAddr(node, announced string) (string, error) {
	if r.links == nil {
		return "", errors.New("this node has no links (cluster.link_listen off)")
	}
	host, port, err := net.SplitHostPort(announced)
	if err != nil {
		return "", fmt.Errorf("announced link address %q: %w", announced, err)
	}
	if host == "" {
		if host = r.f.PeerIP(node); host == "" {
			return "", errors.New("no NATS route to the node to take its address from")
		}
	}
	return net.JoinHostPort(host, port), nil
}
