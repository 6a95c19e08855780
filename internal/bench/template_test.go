package bench

import "testing"

func TestTemplateExpand(t *testing.T) {
	cases := []struct {
		tmpl string
		i    int
		cid  string
		want string
	}{
		{"bench/%i", 7, "c", "bench/7"},
		{"t/%c/x", 1, "client-1", "t/client-1/x"},
		{"%c-%i-%i", 42, "id", "id-42-42"},
		{"plain", 3, "id", "plain"},
		{"100%%/%i", 5, "", "100%/5"},
		{"%x%", 1, "", "%x%"},
		{"", 1, "id", ""},
		{"user-%i", 0, "", "user-0"},
	}
	for _, c := range cases {
		if got := ParseTemplate(c.tmpl).Expand(c.i, c.cid); got != c.want {
			t.Errorf("%q.Expand(%d, %q) = %q, want %q", c.tmpl, c.i, c.cid, got, c.want)
		}
	}
	if !ParseTemplate("a/%c").HasClientID() || ParseTemplate("a/%i").HasClientID() {
		t.Error("HasClientID wrong")
	}
}

func TestTopicMatch(t *testing.T) {
	cases := []struct {
		filter, topic string
		want          bool
	}{
		{"bench/#", "bench/1", true},
		{"bench/#", "bench", true}, // [MQTT-4.7.1-2]
		{"bench/+", "bench/1", true},
		{"bench/+", "bench/1/2", false},
		{"bench/1", "bench/1", true},
		{"bench/1", "bench/10", false},
		{"#", "a/b/c", true},
		{"#", "$SYS/x", false}, // [MQTT-4.7.2-1]
		{"+/b", "a/b", true},
		{"a/+/c", "a/b/c", true},
		{"a/+/c", "a/b/d", false},
		{"$share/g/bench/#", "bench/3", true},
	}
	for _, c := range cases {
		if got := topicMatch(c.filter, c.topic); got != c.want {
			t.Errorf("topicMatch(%q, %q) = %v, want %v", c.filter, c.topic, got, c.want)
		}
	}
}

func TestParseLocalAddrs(t *testing.T) {
	ips, err := ParseLocalAddrs("127.0.0.2-127.0.0.4, 127.0.1.1")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, ip := range ips {
		got = append(got, ip.String())
	}
	want := "[127.0.0.2 127.0.0.3 127.0.0.4 127.0.1.1]"
	if s := "[" + join(got) + "]"; s != want {
		t.Errorf("got %s, want %s", s, want)
	}
	for _, bad := range []string{"x", "127.0.0.5-127.0.0.1", "::1"} {
		if _, err := ParseLocalAddrs(bad); err == nil {
			t.Errorf("ParseLocalAddrs(%q): no error", bad)
		}
	}
}

func join(s []string) string {
	out := ""
	for i, x := range s {
		if i > 0 {
			out += " "
		}
		out += x
	}
	return out
}

func TestParseTarget(t *testing.T) {
	cases := []struct{ in, scheme, addr, path string }{
		{"tcp://127.0.0.1:1883", "tcp", "127.0.0.1:1883", "/mqtt"},
		{"127.0.0.1:2000", "tcp", "127.0.0.1:2000", "/mqtt"},
		{"mqtt://localhost", "tcp", "localhost:1883", "/mqtt"},
		{"ssl://h", "ssl", "h:8883", "/mqtt"},
		{"ws://h:8080/ws", "ws", "h:8080", "/ws"},
		{"wss://h", "wss", "h:443", "/mqtt"},
	}
	for _, c := range cases {
		tg, err := ParseTarget(c.in, TLSOptions{}, nil)
		if err != nil {
			t.Fatalf("%s: %v", c.in, err)
		}
		if tg.Scheme != c.scheme || tg.Addr != c.addr || tg.Path != c.path {
			t.Errorf("%s: got %s %s %s", c.in, tg.Scheme, tg.Addr, tg.Path)
		}
	}
	if _, err := ParseTarget("http://x", TLSOptions{}, nil); err == nil {
		t.Error("http scheme accepted")
	}
	if got := overrideHostPort("ws://a:1/p", "b", 2); got != "ws://b:2/p" {
		t.Errorf("overrideHostPort = %s", got)
	}
}
