package kafka

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"sync"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/eclipse/paho.golang/paho/session/state"

	"github.com/culexmq/culex/internal/broker"
	"github.com/culexmq/culex/internal/config"
	"github.com/culexmq/culex/internal/mqtt/packet"
)

// RunStandalone is `culex bridge`: the bridge as an MQTT 5 client of any
// broker. It subscribes to every route filter (through $share/<group>/
// when src.ShareGroup is set, so N bridges split the load) with a
// persistent session, and acknowledges each QoS 1/2 message only once its
// kafka-mode records are acked (PUBACKs leave in the order received
// [MQTT-4.6.0-2]). A failed record closes the connection without
// acknowledging: the broker redelivers on reconnect; a record that Kafka
// has not taken yet (an outage) just waits, with no produce_timeout, so the
// session is kept and nothing is resent. It reconnects until
// ctx ends. Command routes (Kafka -> MQTT) publish through the same
// session, each batch committed once the broker acknowledged all of it.
func (b *Bridge) RunStandalone(ctx context.Context, src config.KafkaSource) error {
	u, err := url.Parse(src.URL)
	if err != nil || u.Scheme != "tcp" || u.Host == "" {
		return fmt.Errorf("kafka source url %q: want tcp://host:port", src.URL)
	}
	if len(b.commands) > 0 {
		if !b.cfg.GroupInstanceIDSet {
			// Bridges on one host share data_dir and listeners, not client ids.
			b.cfg.GroupInstanceID = config.DefaultGroupInstanceID(src.ClientID)
		}
		if err := b.Start(ctx, &b.source); err != nil {
			return err
		}
	}
	var limitsLogged bool
	for ctx.Err() == nil {
		err := b.sourceSession(ctx, u.Host, src, &limitsLogged)
		if ctx.Err() != nil {
			break
		}
		b.log.Warn("kafka bridge: mqtt session ended; reconnecting", "broker", u.Host, "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
	return nil
}

// sourceSession runs one MQTT connection until it fails or ctx ends.
func (b *Bridge) sourceSession(ctx context.Context, addr string, src config.KafkaSource, limitsLogged *bool) error {
	var d net.Dialer
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	conn, err := d.DialContext(dctx, "tcp", addr)
	cancel()
	if err != nil {
		return err
	}
	defer conn.Close()
	failed := make(chan error, 1)
	fail := func(err error) {
		select {
		case failed <- err:
		default:
		}
	}
	var c *paho.Client
	// keep: a publish waits for Kafka however long it is away (no
	// produce_timeout). Expiring it would end the session, and the source
	// would resend what the producer still holds: one more copy in Kafka
	// per timeout during an outage. Only a record Kafka refuses ends it.
	ic := interceptor{b: b, keep: true}
	stop := make(chan struct{})
	defer close(stop)
	gate := newInflightGate(src.ReceiveMaximum, stop)
	c = paho.NewClient(paho.ClientConfig{
		ClientID:                   src.ClientID,
		Conn:                       conn,
		Session:                    gateSession{state.NewInMemory(), gate},
		EnableManualAcknowledgment: true,
		SendAcksInterval:           time.Millisecond,
		OnClientError:              fail,
		OnServerDisconnect:         func(d *paho.Disconnect) { fail(fmt.Errorf("server disconnect 0x%02x", d.ReasonCode)) },
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			p := pr.Packet
			if p.QoS > 0 && !gate.acquire(ctx, p.PacketID, func() {
				b.log.Warn("kafka bridge: the source broker sends more unacknowledged messages than kafka.source.receive_maximum allows [MQTT-3.3.4-9]; the excess waits in the bridge, not produced, until acknowledgements free room",
					"broker", addr, "receive_maximum", src.ReceiveMaximum)
			}) {
				return true, nil // session ending: not acked, redelivered
			}
			ic.Intercept(ctx, &broker.ClientInfo{}, sourceMessage(p), func(err error) {
				if err != nil {
					fail(fmt.Errorf("topic %s: %w", p.Topic, err)) // not acked: redelivered
					return
				}
				_ = c.Ack(p)
			})
			return true, nil
		}},
	})
	exp := uint32(src.SessionExpiry / time.Second)
	rm := src.ReceiveMaximum
	cp := &paho.Connect{ClientID: src.ClientID, KeepAlive: 30, CleanStart: false,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: &exp, ReceiveMaximum: &rm,
			User: paho.UserProperties{{Key: broker.LimitsRequest, Value: "1"}}}}
	if src.Username != "" {
		cp.Username, cp.UsernameFlag = src.Username, true
	}
	if src.Password != "" {
		cp.Password, cp.PasswordFlag = []byte(src.Password), true
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	ca, err := c.Connect(cctx, cp)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	if !*limitsLogged && ca.Properties != nil {
		*limitsLogged = b.logSourceLimits(addr, ca.Properties.User)
	}
	var subs []paho.SubscribeOptions
	for _, r := range b.routes.list {
		f := r.filter
		if src.ShareGroup != "" {
			f = "$share/" + src.ShareGroup + "/" + f
		}
		subs = append(subs, paho.SubscribeOptions{Topic: f, QoS: 1})
	}
	if !ca.SessionPresent && len(subs) > 0 {
		sa, err := c.Subscribe(cctx, &paho.Subscribe{Subscriptions: subs})
		if err != nil {
			return fmt.Errorf("subscribe: %w", err)
		}
		for i, rc := range sa.Reasons {
			if rc >= 0x80 {
				return fmt.Errorf("subscribe %s: reason 0x%02x", subs[i].Topic, rc)
			}
		}
	}
	b.source.set(c)
	defer b.source.set(nil)
	b.sourceReady.Store(true)
	defer b.sourceReady.Store(false)
	b.log.Info("kafka bridge: subscribed", "broker", addr, "client_id", src.ClientID, "session_present", ca.SessionPresent)
	select {
	case <-ctx.Done():
		dctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = c.Disconnect(&paho.Disconnect{})
		<-waitDone(dctx, c)
		return nil
	case err := <-failed:
		return err
	}
}

// logSourceLimits logs the queue limit a Culex source applies to the
// bridge's session (its answer to broker.LimitsRequest): a WARN when the
// bridge has only a device's limit, so that what arrives during a restart
// beyond it is dropped. False: the source did not say (not Culex).
func (b *Bridge) logSourceLimits(addr string, props paho.UserProperties) bool {
	msgs := props.Get("culex.max_queued_messages")
	if msgs == "" {
		return false
	}
	args := []any{"broker", addr, "max_queued_messages", msgs, "max_queued_bytes", props.Get("culex.max_queued_bytes")}
	if props.Get("culex.bridge_client") != "true" {
		b.log.Warn("kafka bridge: the source keeps at most a device's queue for this bridge while it is away; what arrives during a restart beyond it is dropped: name the bridge in the source's mqtt.bridge_clients", args...)
	} else {
		b.log.Info("kafka bridge: the source's queue for this bridge while it is away (it must hold message rate x restart time)", args...)
	}
	return true
}

// mqttPublisher is the Publisher of Kafka -> MQTT commands in standalone
// mode: it publishes through the current MQTT session and reports once the
// broker acknowledged (PUBACK/PUBCOMP). It is synchronous, so a batch is
// published in order.
type mqttPublisher struct {
	mu sync.Mutex
	c  *paho.Client // nil while disconnected
}

func (p *mqttPublisher) set(c *paho.Client) {
	p.mu.Lock()
	p.c = c
	p.mu.Unlock()
}

// Publish implements Publisher.
func (p *mqttPublisher) Publish(ctx context.Context, m *broker.Message, done func(error)) {
	p.mu.Lock()
	c := p.c
	p.mu.Unlock()
	if c == nil {
		done(errors.New("mqtt source not connected"))
		return
	}
	r, err := c.Publish(ctx, &paho.Publish{Topic: m.Topic, QoS: m.QoS, Retain: m.Retain, Payload: m.Payload})
	if err == nil && r != nil && r.ReasonCode >= 0x80 {
		err = fmt.Errorf("broker refused the publish: reason 0x%02x", r.ReasonCode)
	}
	done(err)
}

func waitDone(ctx context.Context, c *paho.Client) <-chan struct{} {
	ch := make(chan struct{})
	go func() {
		defer close(ch)
		select {
		case <-c.Done():
		case <-ctx.Done():
		}
	}()
	return ch
}

// sourceMessage is the broker.Message view of a received PUBLISH.
func sourceMessage(p *paho.Publish) *broker.Message {
	m := &broker.Message{Topic: p.Topic, Payload: p.Payload, QoS: p.QoS, Retain: p.Retain}
	pp := p.Properties
	if pp == nil {
		return m
	}
	pr := new(packet.Properties)
	m.Props = pr
	if pp.PayloadFormat != nil {
		pr.Present |= 1 << packet.PropPayloadFormat
		pr.PayloadFormat = *pp.PayloadFormat
	}
	if pp.ContentType != "" {
		pr.Present |= 1 << packet.PropContentType
		pr.ContentType = pp.ContentType
	}
	if pp.ResponseTopic != "" {
		pr.Present |= 1 << packet.PropResponseTopic
		pr.ResponseTopic = pp.ResponseTopic
	}
	if pp.CorrelationData != nil {
		pr.Present |= 1 << packet.PropCorrelationData
		pr.CorrelationData = pp.CorrelationData
	}
	for _, u := range pp.User {
		pr.User = append(pr.User, packet.UserProperty{Key: u.Key, Value: u.Value})
	}
	if len(pr.User) > 0 {
		pr.Present |= 1 << packet.PropUser
	}
	if pr.Present == 0 {
		m.Props = nil
	}
	return m
}
