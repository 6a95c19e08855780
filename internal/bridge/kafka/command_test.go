package kafka

import (
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/culexmq/culex/internal/config"
)

func TestCommandMessage(t *testing.T) {
	rec := &kgo.Record{Topic: "cmds", Partition: 2, Key: []byte("dev-1"), Value: []byte("reboot"),
		Headers: []kgo.RecordHeader{{Key: "device", Value: []byte("dev-9")}}}
	cases := []struct{ tmpl, want, err string }{
		{"devices/${key}/commands", "devices/dev-1/commands", ""},
		{"devices/${header.device}/commands", "devices/dev-9/commands", ""},
		{"k/${topic}/${partition}", "k/cmds/2", ""},
		{"devices/${header.absent}", "", "no header"},
	}
	for _, c := range cases {
		cmd, err := compileCommand(config.KafkaCommand{Topics: "cmds", MQTTTopic: c.tmpl, QoS: 1, Retain: true})
		if err != nil {
			t.Fatal(err)
		}
		m, err := cmd.message(rec)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%s: %v, want %q", c.tmpl, err, c.err)
			}
			continue
		}
		if err != nil || m.Topic != c.want || string(m.Payload) != "reboot" || m.QoS != 1 || !m.Retain {
			t.Errorf("%s: %+v %v", c.tmpl, m, err)
		}
	}
	// A key that makes an invalid MQTT topic is refused, not published.
	cmd, _ := compileCommand(config.KafkaCommand{Topics: "cmds", MQTTTopic: "devices/${key}"})
	if _, err := cmd.message(&kgo.Record{Key: []byte("a/+")}); err == nil {
		t.Error("wildcard in a rendered topic accepted")
	}
	for _, bad := range []config.KafkaCommand{
		{MQTTTopic: "x"},
		{Topics: "cmds"},
		{Topics: "cmds", MQTTTopic: "x", QoS: 3},
		{Topics: "cmds", MQTTTopic: "x/${1}"},
		{Topics: "bad topic", MQTTTopic: "x"},
	} {
		if _, err := compileCommand(bad); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}
