package integration

import (
	"bytes"
	"testing"
	"time"

	"github.com/culexmq/culex/internal/broker"
	"github.com/culexmq/culex/internal/brokertest"
	"github.com/culexmq/culex/internal/config"
	"github.com/culexmq/culex/internal/mqtt/packet"
	"github.com/culexmq/culex/internal/store"
	"github.com/culexmq/culex/internal/store/storetest"
)

// TestQoS1PubackAfterFsync proves the broker acknowledges a QoS 1 PUBLISH
// queued for an offline persistent session only once the Bolt store has
// the message on the device. The store's write is held: a PINGREQ sent
// after the PUBLISH is answered while the PUBACK is not (an early PUBACK
// would come first, as the broker answers a connection's packets in
// order); once released, the PUBACK comes after the store's callback,
// which checked that no page of the file was left unsynced.
func TestQoS1PubackAfterFsync(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	storetest.RequireTracking(t, dir)
	bolt, err := store.OpenBolt(dir, store.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bolt.Close() })
	st := storetest.Wrap(t, bolt, bolt.Path())
	addr, b := brokertest.Serve(t, broker.Options{Config: config.Default().MQTT, AllowAnonymous: true, Store: st})

	subscriber := connectV5(t, addr, v5Connect("fsync-sub", false, 3600))
	subscriber.subscribe(sub("fsync/q", 1))
	subscriber.disconnect(0, nil)
	waitFor(t, waitTimeout, "the subscriber to be offline", func() bool { return b.Stats().ClientsConnected == 0 })

	payload := []byte("acknowledged once on the device")
	held := st.Hold(func(ops []store.Op) bool {
		for _, op := range ops {
			if bytes.Contains(op.Value, payload) {
				return true
			}
		}
		return false
	})
	pub := dialRaw(t, addr, packet.V5)
	pub.mustConnect(rawConnect("fsync-pub", true))
	pub.send(&packet.Publish{Topic: "fsync/q", QoS: 1, PacketID: 7, Payload: payload})
	select {
	case <-held:
	case <-time.After(waitTimeout):
		t.Fatal("the broker did not write the message for the offline session to the store")
	}
	pub.send(&packet.Pingreq{})
	if p, _, err := pub.readPacket(waitTimeout); err != nil {
		t.Fatalf("waiting for PINGRESP: %v", err)
	} else if _, ok := p.(*packet.Pingresp); !ok {
		t.Fatalf("got %v while the store had not written the message, want PINGRESP", p.Type())
	}
	st.Release()
	ack := expect[*packet.Ack](pub)
	if ack.Kind != packet.PUBACK || ack.PacketID != 7 {
		t.Fatalf("got %v %d, want PUBACK 7", ack.Kind, ack.PacketID)
	}
	if !st.HeldDurable() {
		t.Fatal("PUBACK before the store acknowledged the message as synced")
	}

	subscriber = connectV5(t, addr, v5Connect("fsync-sub", false, 3600))
	if m := recv1(t, subscriber.msgs); !bytes.Equal(m.Payload, payload) {
		t.Errorf("resumed session got %v, want the acknowledged message", m)
	}
}
