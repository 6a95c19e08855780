package broker

import (
	"context"
	"strconv"
	"time"
)

// sysLoop publishes the $SYS topics every SysInterval until Shutdown.
// Filters starting with a wildcard never match them [MQTT-4.7.2-1] (the
// topic index enforces it), and clients cannot publish to $ topics.
func (b *Broker) sysLoop() {
	defer b.wg.Done()
	t := time.NewTicker(b.opts.SysInterval)
	defer t.Stop()
	b.publishSys()
	for {
		select {
		case <-b.sysStop:
			return
		case <-t.C:
			b.publishSys()
		}
	}
}

// publishSys publishes one round of $SYS/broker/... as retained QoS 0
// messages, kept on this node.
func (b *Broker) publishSys() {
	st := b.Stats()
	u := func(v uint64) string { return strconv.FormatUint(v, 10) }
	i := func(v int64) string { return strconv.FormatInt(v, 10) }
	for _, kv := range [...][2]string{
		{"version", b.opts.Version},
		{"uptime", i(int64(time.Since(b.started) / time.Second))},
		{"clients/connected", i(st.ClientsConnected)},
		{"clients/total", i(st.Sessions)},
		{"messages/received", u(st.PublishesIn)},
		{"messages/sent", u(st.PublishesOut)},
		{"bytes/received", u(st.BytesIn)},
		{"bytes/sent", u(st.BytesOut)},
		{"subscriptions/count", i(st.Subscriptions)},
		{"retained messages/count", i(st.Retained)},
		{"retained messages/refused", u(st.RetainedRefused)},
		{"clients/persistent", i(st.PersistentSessions)},
		{"clients/takeover_refused", u(st.TakeoverRefused)},
		{"clients/binding_refused", u(st.BindingRefused)},
		{"clients/sessions_refused", u(st.SessionsRefused)},
		{"poll/errors", u(st.PollErrors)},
	} {
		b.publishSysValue(kv[0], kv[1])
	}
	// Every drop reason, so that a loss seen by a client can be told apart
	// from a counted overflow (queue_full) without access to the process.
	var total uint64
	for r := range numDropReasons {
		n := st.Drops[r.String()]
		total += n
		b.publishSysValue("messages/dropped/"+r.String(), u(n))
	}
	b.publishSysValue("messages/dropped", u(total))
}

func (b *Broker) publishSysValue(name, value string) {
	b.Publish(context.Background(), &Message{Topic: "$SYS/broker/" + name, Payload: []byte(value), Retain: true, Local: true}, nil)
}
