package auth

import (
	"bufio"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/culexmq/culex/internal/broker"
	"github.com/culexmq/culex/internal/brokertest"
	"github.com/culexmq/culex/internal/config"
	"github.com/culexmq/culex/internal/mqtt/packet"
)

// waitTime bounds every wait of the broker tests.
const waitTime = 5 * time.Second

// startBroker serves a broker using svc on a loopback port and stops it at
// the end of the test.
func startBroker(t testing.TB, svc *Service, mods ...func(*broker.Options)) string {
	t.Helper()
	opts := broker.Options{Config: config.Default().MQTT}
	opts.Config.ConnectTimeout = 2 * time.Second
	for _, m := range mods {
		m(&opts)
	}
	svc.Apply(&opts)
	t.Cleanup(func() { svc.Close() }) // after the broker's shutdown
	addr, _ := brokertest.Serve(t, opts)
	return addr
}

// testService writes a users file and an ACL file and builds a Service.
func testService(t testing.TB, acl string, mod func(*config.Auth), users ...string) (*Service, string) {
	t.Helper()
	dir := t.TempDir()
	cfg := config.Default().Auth
	cfg.AllowAnonymous = false
	cfg.Backends = "users,scram"
	cfg.UsersFile = filepath.Join(dir, "users")
	cfg.ACLFile = filepath.Join(dir, "acl")
	cfg.ACLDefault = "deny"
	cfg.WatchInterval = 0
	if err := SaveUsers(cfg.UsersFile, scramTestUsers(t, users...)); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg.ACLFile, []byte(acl), 0o600); err != nil {
		t.Fatal(err)
	}
	if mod != nil {
		mod(&cfg)
	}
	svc, err := New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Close() })
	return svc, cfg.UsersFile
}

// scramTestUsers makes name/password pairs; "!" before a name makes a
// superuser. Every user also gets SCRAM credentials.
func scramTestUsers(t testing.TB, pairs ...string) *Users {
	u := NewUsers()
	for i := 0; i+1 < len(pairs); i += 2 {
		name, super := pairs[i], false
		if name[0] == '!' {
			name, super = name[1:], true
		}
		creds, err := NewSCRAMCreds(pairs[i+1])
		if err != nil {
			t.Fatal(err)
		}
		u.Put(&User{Name: name, Hash: hashFor(t, pairs[i+1]), Superuser: super, SCRAM: creds})
	}
	return u
}

// client is a minimal MQTT client over the codec, so that tests see the
// exact reason codes.
type client struct {
	t    testing.TB
	nc   net.Conn
	r    *bufio.Reader
	v    packet.Version
	pid  uint16
	got  chan packet.Packet
	err  chan error
	pubs []*packet.Publish // received while waiting for something else
}

func dial(t testing.TB, addr string, v packet.Version) *client {
	t.Helper()
	return dialFrom(t, "", addr, v)
}

// dialFrom is dial from the loopback address from ("": any).
func dialFrom(t testing.TB, from, addr string, v packet.Version) *client {
	t.Helper()
	d := net.Dialer{}
	if from != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(from)}
	}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c := &client{t: t, nc: nc, r: bufio.NewReader(nc), v: v, got: make(chan packet.Packet, 64), err: make(chan error, 1)}
	go func() {
		for {
			p, err := packet.ReadPacket(c.r, v, 1<<20)
			if err != nil {
				c.err <- err
				close(c.got)
				return
			}
			c.got <- p
		}
	}()
	t.Cleanup(func() { nc.Close() })
	return c
}

func (c *client) send(p packet.Packet) {
	c.t.Helper()
	b, err := p.Encode(nil, c.v)
	if err != nil {
		c.t.Fatalf("encode %T: %v", p, err)
	}
	if _, err := c.nc.Write(b); err != nil {
		c.t.Fatalf("write %T: %v", p, err)
	}
}

// next returns the next packet, or fails the test after waitTime.
func (c *client) next() packet.Packet {
	c.t.Helper()
	select {
	case p, ok := <-c.got:
		if !ok {
			c.t.Fatalf("connection closed: %v", <-c.err)
		}
		if pub, ok := p.(*packet.Publish); ok && pub.QoS > 0 {
			c.send(&packet.Ack{Kind: packet.PUBACK, PacketID: pub.PacketID})
		}
		return p
	case <-time.After(waitTime):
		c.t.Fatal("no packet within the wait time")
	}
	return nil
}

// nextAck returns the next packet that is not a PUBLISH, keeping those.
func (c *client) nextAck() packet.Packet {
	c.t.Helper()
	for {
		p := c.next()
		if pub, ok := p.(*packet.Publish); ok {
			c.pubs = append(c.pubs, pub)
			continue
		}
		return p
	}
}

// closed waits for the broker to close the connection.
func (c *client) closed() bool {
	c.t.Helper()
	deadline := time.After(waitTime)
	for {
		select {
		case _, ok := <-c.got:
			if !ok {
				return true
			}
		case <-deadline:
			return false
		}
	}
}

type connectOpt func(*packet.Connect)

func withWill(topic string) connectOpt {
	return func(p *packet.Connect) { p.WillFlag, p.WillTopic, p.WillPayload = true, topic, []byte("gone") }
}

func (c *client) connect(id, user, pw string, opts ...connectOpt) *packet.Connack {
	c.t.Helper()
	p := &packet.Connect{ProtocolName: "MQTT", Version: c.v, CleanStart: true, KeepAlive: 30, ClientID: id}
	if user != "" {
		p.UsernameFlag, p.Username = true, user
	}
	if pw != "" {
		p.PasswordFlag, p.Password = true, []byte(pw)
	}
	for _, o := range opts {
		o(p)
	}
	c.send(p)
	ack, ok := c.nextAck().(*packet.Connack)
	if !ok {
		c.t.Fatal("no CONNACK")
	}
	return ack
}

func (c *client) subscribe(filter string) byte {
	c.t.Helper()
	c.pid++
	c.send(&packet.Subscribe{PacketID: c.pid, Subscriptions: []packet.Subscription{{Filter: filter, QoS: 1}}})
	for {
		if ack, ok := c.nextAck().(*packet.Suback); ok {
			return ack.ReasonCodes[0]
		}
	}
}

// publish sends a QoS 1 PUBLISH and returns the PUBACK's reason code.
func (c *client) publish(topic string, retain bool) byte {
	c.t.Helper()
	c.pid++
	c.send(&packet.Publish{QoS: 1, Retain: retain, Topic: topic, PacketID: c.pid, Payload: []byte(topic)})
	for {
		if ack, ok := c.nextAck().(*packet.Ack); ok && ack.Kind == packet.PUBACK && ack.PacketID == c.pid {
			return ack.ReasonCode
		}
	}
}

// until drains the PUBLISHes received until a marker topic arrives and
// returns their topics.
func (c *client) until(marker string) []string {
	c.t.Helper()
	var topics []string
	for {
		var pub *packet.Publish
		if len(c.pubs) > 0 {
			pub, c.pubs = c.pubs[0], c.pubs[1:]
		} else if p, ok := c.next().(*packet.Publish); ok {
			pub = p
		} else {
			continue
		}
		if pub.Topic == marker {
			return topics
		}
		topics = append(topics, pub.Topic)
	}
}
