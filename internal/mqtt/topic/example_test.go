package topic_test

import (
	"fmt"
	"sort"

	"github.com/culexmq/culex/internal/mqtt/topic"
)

// opts stands for the subscription options a broker keeps per subscription.
type opts struct{ QoS byte }

func ExampleIndex() {
	x := topic.NewIndex[string, opts]()
	for _, s := range []struct{ filter, client string }{
		{"sensors/+/temp", "c1"}, {"sensors/#", "c2"}, {"#", "c3"},
	} {
		if err := topic.ValidFilter(s.filter, 0); err != nil {
			panic(err)
		}
		x.Subscribe(s.filter, s.client, opts{QoS: 1})
	}
	var got []string
	x.Match("sensors/kitchen/temp", func(filter, client string, o opts) {
		got = append(got, client+" via "+filter)
	})
	sort.Strings(got)
	fmt.Println(got)
	got = got[:0]
	x.Match("$SYS/uptime", func(filter, client string, o opts) { // [MQTT-4.7.2-1]
		got = append(got, client)
	})
	fmt.Println(got)
	// Output:
	// [c1 via sensors/+/temp c2 via sensors/# c3 via #]
	// []
}

func ExampleSharedIndex() {
	x := topic.NewSharedIndex[string, opts]()
	for _, c := range []string{"w1", "w2", "w3"} {
		group, filter, ok, err := topic.ParseShared("$share/workers/jobs/#")
		if !ok || err != nil {
			panic(err)
		}
		x.Subscribe(group, filter, c, opts{})
	}
	for range 4 {
		x.MatchTurn("jobs/42", func(group, filter string, members []topic.Entry[string, opts], turn uint64) {
			fmt.Println(group, filter, members[turn%uint64(len(members))].Sub)
		})
	}
	// Output:
	// workers jobs/# w1
	// workers jobs/# w2
	// workers jobs/# w3
	// workers jobs/# w1
}

func ExampleRetained() {
	r := topic.NewRetained[string]()
	r.Set("home/kitchen/temp", "21.5")
	r.Set("home/hall/temp", "19.0")
	r.Set("home/kitchen/light", "on")
	var got []string
	r.Match("home/+/temp", func(t, m string) { got = append(got, t+"="+m) })
	sort.Strings(got)
	fmt.Println(got)
	// Output: [home/hall/temp=19.0 home/kitchen/temp=21.5]
}
