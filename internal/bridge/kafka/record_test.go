package kafka

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/culexmq/culex/internal/broker"
	"github.com/culexmq/culex/internal/config"
	"github.com/culexmq/culex/internal/mqtt/packet"
)

var update = flag.Bool("update", false, "rewrite testdata golden files")

// The record mapping is a contract with consumers: headers, key, topic and
// the JSON envelope are pinned by golden files.
func TestRecordMappingGolden(t *testing.T) {
	received := time.Date(2026, 11, 22, 4, 0, 0, 0, time.UTC)
	c := &broker.ClientInfo{ClientID: "dev-1", Username: "alice", Version: packet.V5}
	full := &broker.Message{Topic: "devices/dev-1/telemetry", Payload: []byte(`{"t":21.5}`), QoS: 1, Retain: true, Props: new(packet.Properties)}
	full.Props.Present = 1<<packet.PropPayloadFormat | 1<<packet.PropContentType | 1<<packet.PropResponseTopic | 1<<packet.PropCorrelationData
	full.Props.PayloadFormat = 1
	full.Props.ContentType = "application/json"
	full.Props.ResponseTopic = "devices/dev-1/replies"
	full.Props.CorrelationData = []byte{0x01, 0x02}
	// Properties named like the broker's headers are a device's say-so: left
	// out of the headers, kept in the envelope's user_properties.
	full.Props.User = []packet.UserProperty{{Key: "site", Value: "lyon"}, {Key: "mqtt.username", Value: "admin"},
		{Key: "MQTT.topic", Value: "devices/other/telemetry"}, {Key: "site", Value: "paris"}}
	binary := &broker.Message{Topic: "devices/dev-1/blob", Payload: []byte{0xff, 0x00, 0xfe}, QoS: 0}

	cases := []struct {
		name  string
		route config.KafkaRoute
		msg   *broker.Message
	}{
		{"raw_headers", config.KafkaRoute{Filter: "devices/#", Topic: "telemetry", Headers: true}, full},
		{"raw_noheaders_levelkey", config.KafkaRoute{Filter: "devices/#", Topic: "t.${3}", Key: "${2}"}, full},
		{"json_envelope", config.KafkaRoute{Filter: "devices/#", Topic: "telemetry", Payload: "json"}, full},
		{"json_binary", config.KafkaRoute{Filter: "devices/#", Topic: "blobs", Payload: "json", Headers: true}, binary},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r, err := compileRoute(tc.route)
			if err != nil {
				t.Fatal(err)
			}
			rec, err := r.record(c, c.Username, tc.msg, received)
			if err != nil {
				t.Fatal(err)
			}
			var b bytes.Buffer
			fmt.Fprintf(&b, "topic: %s\nkey: %q\ntimestamp: %s\n", rec.Topic, rec.Key, rec.Timestamp.UTC().Format(time.RFC3339Nano))
			for _, h := range rec.Headers {
				fmt.Fprintf(&b, "header %s: %q\n", h.Key, h.Value)
			}
			if json.Valid(rec.Value) && tc.route.Payload == "json" {
				var pretty bytes.Buffer
				_ = json.Indent(&pretty, rec.Value, "", "  ")
				fmt.Fprintf(&b, "value:\n%s\n", pretty.String())
			} else {
				fmt.Fprintf(&b, "value: %q\n", rec.Value)
			}
			golden(t, filepath.Join("testdata", tc.name+".golden"), b.Bytes())
		})
	}
}

func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (go test -update to accept):\n got:\n%s\nwant:\n%s", path, got, want)
	}
}

// A rendered topic that is not a valid Kafka name fails the message.
func TestRecordInvalidRenderedTopic(t *testing.T) {
	r, err := compileRoute(config.KafkaRoute{Filter: "#", Topic: "${topic}"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = r.record(&broker.ClientInfo{ClientID: "c"}, "", &broker.Message{Topic: "a/b"}, time.Now())
	if err == nil {
		t.Fatal("topic a/b rendered into a Kafka topic")
	}
}
