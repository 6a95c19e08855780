package kafka

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/culexmq/culex/internal/testcert"
)

// TestRecordIdentityThroughNode: a device authenticated by its certificate
// (CN device-42) that writes "admin" in CONNECT's username field and sends
// user properties named like the bridge's own headers, through a real
// `culex serve`. The records carry the certificate's identity as
// mqtt.username, in the envelope and as the ${username} key; the forged
// properties are not headers (the broker's reserved mqtt.* names win),
// while the device's other properties are.
func TestRecordIdentityThroughNode(t *testing.T) {
	kc := startKafka(t, kfake.SeedTopics(1, "telemetry", "telemetry-json"))
	brokers := kc.ListenAddrs()[0]
	dir := t.TempDir()
	ca := testcert.NewCA(t, "test CA")
	caFile := ca.WriteFile(t, dir, "ca.pem")
	certFile, keyFile := testcert.WriteFiles(t, dir, "server", ca.Server(t, "culex"))
	cfgFile := filepath.Join(dir, "culex.yaml")
	cfg := fmt.Sprintf(`data_dir: ""
listeners:
  - url: ssl://127.0.0.1:0
    tls: {cert_file: %q, key_file: %q, client_ca_file: %q, client_auth: require}
auth:
  backends: cert
  allow_anonymous: false
  cert: {ca_file: %q}
kafka:
  brokers: %q
  routes:
    - {name: raw, filter: devices/+/telemetry, topic: telemetry, key: "${username}", headers: true}
    - {name: json, filter: devices/+/telemetry, topic: telemetry-json, payload: json}
`, certFile, keyFile, caFile, caFile, brokers)
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	node := startCulex(t, cfgFile)

	conn, err := tls.Dial("tcp", node.addr, &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost",
		Certificates: []tls.Certificate{ca.Client(t, "device-42")}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// paho writes a packet in pieces, from several goroutines (its pinger
	// sends a PINGREQ right after CONNACK): over TLS, where a write is
	// not one system call, they interleave unless the conn is locked.
	c := paho.NewClient(paho.ClientConfig{ClientID: "dev-1", Conn: packets.NewThreadSafeConn(conn), PacketTimeout: time.Minute})
	// Longer than the node's produce_timeout (30 s by default), so that a
	// produce request Kafka was slow to answer, which the client times out
	// (10 s) and sends again, still ends in the PUBACK this test is about.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if ca, err := c.Connect(ctx, &paho.Connect{ClientID: "dev-1", CleanStart: true, KeepAlive: 60,
		Username: "admin", UsernameFlag: true}); err != nil || ca.ReasonCode != 0 {
		t.Fatalf("connect with a certificate: %v %v", ca, err)
	}
	defer c.Disconnect(&paho.Disconnect{})
	r, err := c.Publish(ctx, &paho.Publish{Topic: "devices/dev-1/telemetry", QoS: 1, Payload: []byte("21.5"),
		Properties: &paho.PublishProperties{User: paho.UserProperties{
			{Key: "mqtt.username", Value: "admin"},
			{Key: "MQTT.Topic", Value: "devices/other/telemetry"},
			{Key: "mqtt.client_id", Value: "other"},
			{Key: "site", Value: "lyon"},
		}}})
	if err != nil || r.ReasonCode != 0 {
		t.Fatalf("publish: %v %v", r, err)
	}

	recs := readAll(t, brokers, "telemetry", 1, waitTimeout)
	if len(recs) != 1 {
		t.Fatalf("%d records in telemetry, want 1", len(recs))
	}
	rec := recs[0]
	if string(rec.Key) != "device-42" {
		t.Errorf("key %q, want the certificate's identity device-42", rec.Key)
	}
	got := map[string][]string{}
	for _, h := range rec.Headers {
		got[h.Key] = append(got[h.Key], string(h.Value))
	}
	for k, want := range map[string]string{"mqtt.username": "device-42", "mqtt.topic": "devices/dev-1/telemetry",
		"mqtt.client_id": "dev-1", "site": "lyon"} {
		if v := got[k]; len(v) != 1 || v[0] != want {
			t.Errorf("header %s = %q, want just %q", k, v, want)
		}
	}
	if v, ok := got["MQTT.Topic"]; ok {
		t.Errorf("the device's MQTT.Topic became a header: %q", v)
	}
	if recs := kcatRead(t, brokers, "telemetry", 1); len(recs) != 1 || recs[0].Key != "device-42" ||
		!strings.Contains(recs[0].Headers, "mqtt.username=device-42") || strings.Contains(recs[0].Headers, "admin") {
		t.Errorf("kcat read %+v, want key and mqtt.username device-42 and no forged header", recs)
	}

	jrecs := readAll(t, brokers, "telemetry-json", 1, waitTimeout)
	if len(jrecs) != 1 {
		t.Fatalf("%d records in telemetry-json, want 1", len(jrecs))
	}
	var env envelope
	if err := json.Unmarshal(jrecs[0].Value, &env); err != nil {
		t.Fatal(err)
	}
	if env.Username != "device-42" || len(env.UserProperties) != 4 {
		t.Errorf("envelope username %q with %d user properties, want device-42 and the device's 4", env.Username, len(env.UserProperties))
	}
}
