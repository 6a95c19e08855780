package topic

import (
	"errors"
	"strings"
	"testing"

	"github.com/culexmq/culex/internal/mqtt/packet"
)

func TestValidName(t *testing.T) {
	tests := []struct {
		name      string
		topic     string
		maxLevels int
		ok        bool
	}{
		{"simple", "a/b/c", 0, true},
		{"single level", "a", 0, true},
		{"sys", "$SYS/broker/uptime", 0, true},
		{"empty levels", "a//b", 0, true},
		{"leading slash", "/a", 0, true},
		{"trailing slash", "a/", 0, true},
		{"only slash", "/", 0, true},
		{"space", " ", 0, true},
		{"utf8", "sensor/température/€", 0, true},
		{"max length", strings.Repeat("a", MaxLen), 0, true},
		{"levels at bound", "a/b/c", 3, true},
		{"MQTT-4.7.3-1 empty", "", 0, false},
		{"MQTT-4.7.3-3 too long", strings.Repeat("a", MaxLen+1), 0, false},
		{"MQTT-4.7.3-2 NUL", "a\x00b", 0, false},
		{"MQTT-3.3.2-2 plus", "a/+", 0, false},
		{"MQTT-3.3.2-2 hash", "a/#", 0, false},
		{"MQTT-4.7.1-1 plus inside level", "a+b", 0, false},
		{"MQTT-4.7.1-1 hash alone", "#", 0, false},
		{"MQTT-1.5.4-1 invalid UTF-8", "a/\xff", 0, false},
		{"MQTT-1.5.4-1 surrogate", "a/\xed\xa0\x80", 0, false},
		{"levels over bound", "a/b/c/d", 3, false},
		{"levels over bound empty levels", "///", 3, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidName(tt.topic, tt.maxLevels)
			if (err == nil) != tt.ok {
				t.Fatalf("ValidName(%.40q, %d) = %v, want ok=%v", tt.topic, tt.maxLevels, err, tt.ok)
			}
			if err != nil && !errors.Is(err, packet.ErrTopicNameInvalid) {
				t.Fatalf("error %v does not wrap ErrTopicNameInvalid", err)
			}
		})
	}
}

func TestValidFilter(t *testing.T) {
	tests := []struct {
		name      string
		filter    string
		maxLevels int
		ok        bool
	}{
		{"exact", "a/b/c", 0, true},
		{"hash alone", "#", 0, true},
		{"plus alone", "+", 0, true},
		{"MQTT-4.7.1-2 hash last", "a/b/#", 0, true},
		{"MQTT-4.7.1-2 hash after empty level", "/#", 0, true},
		{"MQTT-4.7.1-3 plus levels", "+/a/+", 0, true},
		{"MQTT-4.7.1-3 plus with empty levels", "+//+", 0, true},
		{"plus then hash", "+/#", 0, true},
		{"sys", "$SYS/#", 0, true},
		{"shared is a plain filter here", "$share/g/a/#", 0, true},
		{"empty levels", "a//b", 0, true},
		{"max length", strings.Repeat("+/", MaxLen/2) + "#", 0, true},
		{"levels at bound", "a/+/#", 3, true},
		{"MQTT-4.7.3-1 empty", "", 0, false},
		{"MQTT-4.7.3-3 too long", strings.Repeat("a", MaxLen+1), 0, false},
		{"MQTT-4.7.3-2 NUL", "a/\x00", 0, false},
		{"MQTT-4.7.1-2 hash not last", "a/#/b", 0, false},
		{"MQTT-4.7.1-2 hash first not last", "#/a", 0, false},
		{"MQTT-4.7.1-2 hash inside level", "a#", 0, false},
		{"MQTT-4.7.1-2 hash ends level", "a/b#", 0, false},
		{"MQTT-4.7.1-2 double hash", "##", 0, false},
		{"MQTT-4.7.1-2 hash slash", "#/", 0, false},
		{"MQTT-4.7.1-3 plus inside level", "a/b+", 0, false},
		{"MQTT-4.7.1-3 plus starts level", "+a", 0, false},
		{"MQTT-4.7.1-3 double plus", "++", 0, false},
		{"MQTT-4.7.1-3 plus hash", "+#", 0, false},
		{"MQTT-1.5.4-1 invalid UTF-8", "\xc3", 0, false},
		{"levels over bound", "a/+/b/#", 3, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidFilter(tt.filter, tt.maxLevels)
			if (err == nil) != tt.ok {
				t.Fatalf("ValidFilter(%.40q, %d) = %v, want ok=%v", tt.filter, tt.maxLevels, err, tt.ok)
			}
			if err != nil && !errors.Is(err, packet.ErrTopicFilterInvalid) {
				t.Fatalf("error %v does not wrap ErrTopicFilterInvalid", err)
			}
		})
	}
}

func TestParseShared(t *testing.T) {
	tests := []struct {
		name         string
		filter       string
		group, inner string
		ok, valid    bool
	}{
		{"not shared", "a/b", "", "", false, true},
		{"share without slash is a plain filter", "$share", "", "", false, true},
		{"share prefix of a longer level", "$shared/g/a", "", "", false, true},
		{"simple", "$share/g/a/b", "g", "a/b", true, true},
		{"wildcards", "$share/g/+/#", "g", "+/#", true, true},
		{"hash", "$share/g/#", "g", "#", true, true},
		{"sys inner", "$share/g/$SYS/#", "g", "$SYS/#", true, true},
		{"leading slash inner", "$share/g//a", "g", "/a", true, true},
		{"MQTT-4.8.2-1 empty share name", "$share//a", "", "", true, false},
		{"MQTT-4.8.2-1 plus share name", "$share/+/a", "", "", true, false},
		{"MQTT-4.8.2-1 hash share name", "$share/#", "", "", true, false},
		{"MQTT-4.8.2-1 wildcard inside share name", "$share/g+/a", "", "", true, false},
		{"MQTT-4.8.2-2 no filter", "$share/g", "", "", true, false},
		{"MQTT-4.8.2-2 empty filter", "$share/g/", "", "", true, false},
		{"MQTT-4.8.2-2 empty share", "$share/", "", "", true, false},
		{"MQTT-4.7.1-2 invalid inner", "$share/g/a/#/b", "", "", true, false},
		{"MQTT-4.7.3-2 NUL share name", "$share/g\x00/a", "", "", true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			group, inner, ok, err := ParseShared(tt.filter)
			if group != tt.group || inner != tt.inner || ok != tt.ok || (err == nil) != tt.valid {
				t.Fatalf("ParseShared(%q) = %q, %q, %v, %v; want %q, %q, %v, valid=%v",
					tt.filter, group, inner, ok, err, tt.group, tt.inner, tt.ok, tt.valid)
			}
			if err != nil && !errors.Is(err, packet.ErrTopicFilterInvalid) {
				t.Fatalf("error %v does not wrap ErrTopicFilterInvalid", err)
			}
		})
	}
}

func TestIsSysHasWildcardLevels(t *testing.T) {
	for _, tt := range []struct {
		s       string
		sys, wc bool
		levels  int
	}{
		{"$SYS/x", true, false, 2},
		{"$", true, false, 1},
		{"a/$SYS", false, false, 2},
		{"", false, false, 1},
		{"a/+", false, true, 2},
		{"#", false, true, 1},
		{"a//b/", false, false, 4},
	} {
		if IsSys(tt.s) != tt.sys || HasWildcard(tt.s) != tt.wc || Levels(tt.s) != tt.levels {
			t.Errorf("%q: IsSys %v HasWildcard %v Levels %d; want %v %v %d",
				tt.s, IsSys(tt.s), HasWildcard(tt.s), Levels(tt.s), tt.sys, tt.wc, tt.levels)
		}
	}
}

func TestValidAllocs(t *testing.T) {
	n := testing.AllocsPerRun(100, func() {
		_ = ValidName("a/b/\xff", 0)
		_ = ValidFilter("a/#/b", 0)
		_, _, _, _ = ParseShared("$share/g/a/+")
	})
	if n != 0 {
		t.Fatalf("validation allocates %v times", n)
	}
}

// matchCases is the naive matcher's table; the index tests reuse it.
var matchCases = []struct {
	name          string
	filter, topic string
	want          bool
}{
	{"exact", "a/b", "a/b", true},
	{"exact differs", "a/b", "a/c", false},
	{"exact shorter topic", "a/b", "a", false},
	{"exact longer topic", "a", "a/b", false},
	{"plus", "a/+", "a/b", true},
	{"plus not two levels", "a/+", "a/b/c", false},
	{"plus not parent", "a/+", "a", false},
	{"MQTT-4.7.1-3 plus matches empty level", "a/+", "a/", true},
	{"MQTT-4.7.1-3 plus first empty level", "+/a", "/a", true},
	{"plus plus leading slash", "+/+", "/finance", true},
	{"plus alone not leading slash", "+", "/finance", false},
	{"MQTT-4.7.1-2 hash", "a/#", "a/b/c", true},
	{"MQTT-4.7.1-2 hash matches parent", "a/#", "a", true},
	{"MQTT-4.7.1-2 hash matches empty child", "a/#", "a/", true},
	{"MQTT-4.7.1-2 hash alone", "#", "a/b", true},
	{"MQTT-4.7.1-2 hash empty levels", "#", "/", true},
	{"hash not sibling", "a/#", "ab", false},
	{"plus hash parent", "+/#", "a", true},
	{"plus plus hash", "+/+/#", "a", false},
	{"empty levels exact", "a//b", "a//b", true},
	{"empty levels plus", "a/+/b", "a//b", true},
	{"empty levels differ", "a//b", "a/b", false},
	{"MQTT-4.7.2-1 hash not sys", "#", "$SYS/x", false},
	{"MQTT-4.7.2-1 plus not sys", "+/x", "$SYS/x", false},
	{"MQTT-4.7.2-1 plus hash not sys", "+/#", "$SYS", false},
	{"MQTT-4.7.2-1 hash not dollar", "#", "$", false},
	{"sys exact", "$SYS/x", "$SYS/x", true},
	{"sys hash", "$SYS/#", "$SYS/x/y", true},
	{"sys plus", "$SYS/+", "$SYS/x", true},
	{"dollar below first level", "a/+", "a/$x", true},
	{"dollar below first level hash", "#", "a/$x", true},
	{"case sensitive", "A", "a", false},
}

func TestMatch(t *testing.T) {
	for _, tt := range matchCases {
		t.Run(tt.name, func(t *testing.T) {
			if got := Match(tt.filter, tt.topic); got != tt.want {
				t.Fatalf("Match(%q, %q) = %v, want %v", tt.filter, tt.topic, got, tt.want)
			}
		})
	}
}
