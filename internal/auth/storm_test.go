package auth

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/culexmq/culex/internal/broker"
	"github.com/culexmq/culex/internal/config"
	"github.com/culexmq/culex/internal/mqtt/packet"
	"golang.org/x/crypto/bcrypt"
)

// stormUsers makes n devices with bcrypt hashes at cost.
func stormUsers(b *testing.B, n, cost int) *Users {
	u := NewUsers()
	h, err := HashBcrypt("secret", cost) // one hash: every device has the same password
	if err != nil {
		b.Fatal(err)
	}
	for i := range n {
		u.Put(&User{Name: "dev-" + strconv.Itoa(i), Hash: h})
	}
	return u
}

// BenchmarkChainStorm is n concurrent logins through the chain, cold
// (every login hashes) or warm (the devices logged in before).
func BenchmarkChainStorm(b *testing.B) {
	for _, bc := range []struct {
		n    int
		warm bool
	}{{100, false}, {10000, true}} {
		name := fmt.Sprintf("devices=%d/cost=%d/cache=%s", bc.n, bcrypt.DefaultCost, map[bool]string{false: "cold", true: "warm"}[bc.warm])
		b.Run(name, func(b *testing.B) {
			users := stormUsers(b, bc.n, bcrypt.DefaultCost)
			for b.Loop() {
				ua := NewUserAuth(users, 0, time.Hour)
				c := NewChain([]Authenticator{ua}, false, nil, nil, nil)
				if bc.warm {
					warm(ua, bc.n)
				}
				start := time.Now()
				lat := storm(b, c, bc.n)
				reportStorm(b, bc.n, time.Since(start), lat)
			}
		})
	}
}

// warm fills the verified-password cache as n earlier logins would have.
func warm(ua *UserAuth, n int) {
	for i := range n {
		u, _ := ua.Users().Get("dev-" + strconv.Itoa(i))
		ua.remember(u, ua.mac([]byte("secret")))
	}
}

func storm(b *testing.B, c *Chain, n int) []time.Duration {
	lat := make([]time.Duration, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			r := login("dev-"+strconv.Itoa(i), "secret")
			t0 := time.Now()
			if _, err := c.Authenticate(context.Background(), r); err != nil {
				b.Error(err)
			}
			lat[i] = time.Since(t0)
		})
	}
	wg.Wait()
	return lat
}

func reportStorm(b *testing.B, n int, total time.Duration, lat []time.Duration) {
	slices.Sort(lat)
	b.ReportMetric(float64(n)/total.Seconds(), "logins/s")
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}

// BenchmarkConnectStorm is n devices connecting at once over TCP to a
// broker with the users backend (bcrypt cost 10), while a connected
// bystander measures its publish round trip: the broker must not stall.
func BenchmarkConnectStorm(b *testing.B) {
	for _, bc := range []struct {
		n, checks int
		warm      bool
	}{{100, 1, false}, {100, 2, false}, {5000, 0, true}} {
		name := fmt.Sprintf("devices=%d/checks=%d/cache=%s", bc.n, bc.checks, map[bool]string{false: "cold", true: "warm"}[bc.warm])
		b.Run(name, func(b *testing.B) {
			svc, path := testService(b, "allow both devices/${username}/#\n", func(c *config.Auth) {
				c.MaxConcurrentChecks = bc.checks
				c.RateLimit = config.AuthRateLimit{}
			}, "bystander", "p")
			users := stormUsers(b, bc.n, bcrypt.DefaultCost)
			by, _ := LoadUsers(path)
			users.Put(by.List()[0])
			if err := SaveUsers(path, users); err != nil {
				b.Fatal(err)
			}
			svc.Reload()
			addr := startBroker(b, svc, func(o *broker.Options) { o.Config.ConnectTimeout = 5 * time.Minute })
			if bc.warm {
				warm(svc.users, bc.n)
			}
			for b.Loop() {
				stop := bystander(b, addr)
				start := time.Now()
				lat := connectAll(b, addr, bc.n)
				reportStorm(b, bc.n, time.Since(start), lat)
				rt := stop()
				if len(rt) > 0 {
					slices.Sort(rt)
					b.ReportMetric(float64(rt[len(rt)*99/100].Microseconds())/1000, "bystander-p99-ms")
					b.ReportMetric(float64(rt[len(rt)-1].Microseconds())/1000, "bystander-max-ms")
				}
			}
		})
	}
}

// connectAll connects n devices at once and closes them; it returns each
// CONNECT to CONNACK latency.
func connectAll(b *testing.B, addr string, n int) []time.Duration {
	lat := make([]time.Duration, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			nc, err := net.Dial("tcp", addr)
			if err != nil {
				b.Error(err)
				return
			}
			defer nc.Close()
			id := "dev-" + strconv.Itoa(i)
			p := &packet.Connect{ProtocolName: "MQTT", Version: packet.V311, CleanStart: true, KeepAlive: 60,
				ClientID: id, UsernameFlag: true, Username: id, PasswordFlag: true, Password: []byte("secret")}
			buf, _ := p.Encode(nil, packet.V311)
			t0 := time.Now()
			nc.Write(buf)
			nc.SetReadDeadline(time.Now().Add(2 * time.Minute))
			ack, err := packet.ReadPacket(nc, packet.V311, 1<<10)
			lat[i] = time.Since(t0)
			if ca, ok := ack.(*packet.Connack); err != nil || !ok || ca.ReasonCode != 0 {
				b.Errorf("connect %s: %v %+v", id, err, ack)
			}
		})
	}
	wg.Wait()
	return lat
}

// bystander publishes QoS 1 messages to itself in a loop until stopped and
// returns each round trip.
func bystander(b *testing.B, addr string) (stop func() []time.Duration) {
	c := dial(b, addr, packet.V311)
	c.connect("bystander", "bystander", "p")
	c.subscribe("devices/bystander/ping")
	done := make(chan struct{})
	var rtts []time.Duration
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-done:
				return
			default:
			}
			t0 := time.Now()
			c.send(&packet.Publish{Topic: "devices/bystander/ping", Payload: []byte("x")})
			for {
				if p, ok := c.next().(*packet.Publish); ok && p.Topic == "devices/bystander/ping" {
					break
				}
			}
			rtts = append(rtts, time.Since(t0))
		}
	})
	return func() []time.Duration { close(done); wg.Wait(); c.nc.Close(); return rtts }
}
