package kafka

import (
	"reflect"
	"strings"
	"testing"

	"github.com/culexmq/culex/internal/config"
)

func TestTemplateRender(t *testing.T) {
	v := &vars{topic: "devices/d1/telemetry", clientID: "c1", username: "u1"}
	cases := []struct{ src, want, err string }{
		{"plain", "plain", ""},
		{"t.${2}", "t.d1", ""},
		{"${1}-${3}", "devices-telemetry", ""},
		{"${clientid}/${username}", "c1/u1", ""},
		{"${topic}", "devices/d1/telemetry", ""},
		{"x.${4}", "", "has no level 4"},
	}
	for _, c := range cases {
		tt, err := parseTemplate(c.src, mqttVars)
		if err != nil {
			t.Fatalf("%s: %v", c.src, err)
		}
		got, err := tt.render(v)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%s: err %v, want %q", c.src, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("%s: %q %v, want %q", c.src, got, err, c.want)
		}
	}
}

func TestTemplateParseErrors(t *testing.T) {
	for _, s := range []string{"${", "a${bogus}", "${0}", "${key}"} {
		if _, err := parseTemplate(s, mqttVars); err == nil {
			t.Errorf("%q parsed", s)
		}
	}
}

func TestCompileRouteErrors(t *testing.T) {
	cases := []struct {
		r    config.KafkaRoute
		want string
	}{
		{config.KafkaRoute{Filter: "a/#/b", Topic: "t"}, "filter"},
		{config.KafkaRoute{Filter: "a/#"}, "topic is required"},
		{config.KafkaRoute{Filter: "a/#", Topic: "bad/topic"}, "invalid kafka topic"},
		{config.KafkaRoute{Filter: "a/#", Topic: "t", Payload: "xml"}, "payload"},
		{config.KafkaRoute{Filter: "a/#", Topic: "t", Ack: "maybe"}, "ack"},
		{config.KafkaRoute{Filter: "$share/g/a", Topic: "t"}, "shared"},
	}
	for _, c := range cases {
		_, err := compileRoute(c.r)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: err %v, want %q", c.r, err, c.want)
		}
	}
	_, err := compileRoutes([]config.KafkaRoute{{Name: "x", Filter: "a", Topic: "t"}, {Name: "x", Filter: "b", Topic: "t"}})
	if err == nil || !strings.Contains(err.Error(), "duplicate") {
		t.Errorf("duplicate names: %v", err)
	}
}

// A message matches every route whose filter matches, in config order.
func TestRoutesMatchSeveral(t *testing.T) {
	rs, err := compileRoutes([]config.KafkaRoute{
		{Name: "all", Filter: "#", Topic: "all"},
		{Name: "tele", Filter: "devices/+/telemetry", Topic: "tele"},
		{Name: "dev", Filter: "devices/#", Topic: "dev"},
		{Name: "other", Filter: "other/+", Topic: "other"},
	})
	if err != nil {
		t.Fatal(err)
	}
	names := func(topic string) []string {
		var out []string
		for _, r := range rs.match(nil, topic) {
			out = append(out, r.name)
		}
		return out
	}
	cases := map[string][]string{
		"devices/d1/telemetry": {"all", "tele", "dev"},
		"devices/d1":           {"all", "dev"},
		"other/x":              {"all", "other"},
		"$SYS/x":               nil, // [MQTT-4.7.2-1] # does not match $ topics
	}
	for topic, want := range cases {
		if got := names(topic); !reflect.DeepEqual(got, want) {
			t.Errorf("%s: %v, want %v", topic, got, want)
		}
	}
}
