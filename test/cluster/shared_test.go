package cluster_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/culexmq/culex/internal/clustertest"
	"github.com/culexmq/culex/internal/mqtt/packet"
	"github.com/eclipse/paho.golang/paho"
	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// member is one client of a shared subscription, its messages counted by
// payload.
type member struct {
	name string
	node int
	msgs chan msg
}

// mosquittoSubs runs mosquitto_sub with several filters; id names it.
func mosquittoSubs(t *testing.T, addr, id string, filters ...string) chan msg {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	args := []string{"-oL", "mosquitto_sub", "-h", host, "-p", port, "-q", "1", "-v", "-i", id}
	for _, f := range filters {
		args = append(args, "-t", f)
	}
	cmd := exec.Command("stdbuf", args...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("mosquitto_sub: %v (apt install mosquitto-clients)", err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	ch := make(chan msg, 100000)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			tp, pl, _ := strings.Cut(sc.Text(), " ")
			ch <- msg{Topic: tp, Payload: pl}
		}
	}()
	return ch
}

// sharedV5 connects a v5 member subscribed to filter and to the plain
// topic end, where the tests send their "end" markers.
func sharedV5(t *testing.T, addr, id, filter, end string) *v5 {
	t.Helper()
	c := dialV5(t, addr, id)
	c.sub(filter, 1, 0, false)
	c.sub(end, 1, 0, false)
	return c
}

// countShared reads each member's messages up to the marker "end" (sent on
// a plain subscription every member has, after every shared message was
// acknowledged to the publisher, so it is queued behind them) and returns
// how often each payload of prefix arrived, and per member how many.
func countShared(t *testing.T, members []*member, prefix string) (seen map[string]int, per map[string]int) {
	t.Helper()
	seen, per = map[string]int{}, map[string]int{}
	for _, m := range members {
		for _, x := range recvUntil(t, m.name, m.msgs, "end") {
			if strings.HasPrefix(x.Payload, prefix) {
				seen[x.Payload]++
				per[m.name]++
			}
		}
	}
	return seen, per
}

// waitMembers publishes probes on topic until every member got one: the
// group's members are then known on the publisher's node. The probes are
// drained with an "end" marker on endTopic.
func waitMembers(t *testing.T, pub *v5, topic, endTopic string, members []*member) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	got := map[string]bool{}
	for i := 0; len(got) < len(members); i++ {
		if time.Now().After(deadline) {
			t.Fatalf("shared members not known cluster-wide within %v (reached %v)", waitTimeout, got)
		}
		if _, err := pub.pub(topic, 1, "probe-"+strconv.Itoa(i)); err != nil {
			t.Fatal(err)
		}
		for _, m := range members {
			select {
			case x := <-m.msgs:
				if strings.HasPrefix(x.Payload, "probe-") {
					got[m.name] = true
				}
			case <-time.After(20 * time.Millisecond): // one poll of the channel
			}
		}
	}
	if _, err := pub.pub(endTopic, 1, "end"); err != nil {
		t.Fatal(err)
	}
	for _, m := range members {
		recvUntil(t, m.name, m.msgs, "end")
	}
}

func checkOnce(t *testing.T, seen map[string]int, prefix string, n int) {
	t.Helper()
	var lost, dup []string
	for i := range n {
		p := prefix + strconv.Itoa(i)
		switch seen[p] {
		case 1:
		case 0:
			lost = append(lost, p)
		default:
			dup = append(dup, fmt.Sprintf("%s x%d", p, seen[p]))
		}
	}
	if len(lost)+len(dup) > 0 {
		t.Fatalf("%d of %d messages lost (%.10v), %d delivered more than once (%.10v)", len(lost), n, lost, len(dup), dup)
	}
}

// TestShared runs shared subscriptions on a three-core cluster with members
// on every node: paho.golang (v5), paho.mqtt.golang (3.1.1) and
// mosquitto_sub.
func TestShared(t *testing.T) {
	c := clustertest.Start(t, clustertest.Options{Cores: 3})
	addr := func(i int) string { return c.Nodes[i].MQTT() }

	t.Run("OneMemberPerMessageBalancedAcrossNodes", func(t *testing.T) {
		const n = 600
		pub := dialV5(t, addr(0), "sh-pub")
		var members []*member
		a := sharedV5(t, addr(0), "sh-a", "$share/g1/sh1/#", "end1")
		members = append(members, &member{"v5@n0", 0, a.msgs})
		b := dialV3(t, addr(1), "sh-b")
		b.sub(t, "$share/g1/sh1/#", 1)
		b.sub(t, "end1", 1)
		members = append(members, &member{"v3@n1", 1, b.msgs})
		members = append(members, &member{"mosquitto@n2", 2, mosquittoSubs(t, addr(2), "sh-c", "$share/g1/sh1/#", "end1")})
		d := sharedV5(t, addr(2), "sh-d", "$share/g1/sh1/#", "end1")
		members = append(members, &member{"v5@n2", 2, d.msgs})
		// A second group on the same filter gets its own copy of each.
		e := sharedV5(t, addr(1), "sh-e", "$share/g2/sh1/#", "end1")
		other := &member{"g2-v5@n1", 1, e.msgs}
		// A plain subscriber on a member's node: the messages forwarded to
		// it must not reach that node's members a second time.
		plain := sharedV5(t, addr(1), "sh-plain", "sh1/#", "end1")
		waitMembers(t, pub, "sh1/x", "end1", append(members, other, &member{"plain@n1", 1, plain.msgs}))

		for i := range n {
			if _, err := pub.pub("sh1/x/"+strconv.Itoa(i%7), 1, "m-"+strconv.Itoa(i)); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := pub.pub("end1", 1, "end"); err != nil {
			t.Fatal(err)
		}
		seen, per := countShared(t, members, "m-")
		checkOnce(t, seen, "m-", n)
		seen2, _ := countShared(t, []*member{other}, "m-")
		checkOnce(t, seen2, "m-", n)
		seen3, _ := countShared(t, []*member{{"plain@n1", 1, plain.msgs}}, "m-")
		checkOnce(t, seen3, "m-", n)
		perNode := map[int]int{}
		for _, m := range members {
			perNode[m.node] += per[m.name]
		}
		t.Logf("per member %v, per node %v", per, perNode)
		for node, got := range perNode {
			if got < n/3-n/10 || got > n/3+n/10 {
				t.Errorf("node %d got %d of %d messages; want about %d (balanced across 3 nodes): %v", node, got, n, n/3, perNode)
			}
		}
	})

	t.Run("RaceSubscribeUnsubscribe", func(t *testing.T) {
		const n = 1500
		pub := dialV5(t, addr(0), "race-pub")
		stable := sharedV5(t, addr(1), "race-stable", "$share/race/r/#", "end2")
		members := []*member{{"stable@n1", 1, stable.msgs}}
		var churners []*v5
		for i, node := range []int{0, 1, 2, 2} {
			ch := dialV5(t, addr(node), "race-churn-"+strconv.Itoa(i))
			ch.sub("end2", 1, 0, false)
			churners = append(churners, ch)
			members = append(members, &member{fmt.Sprintf("churn%d@n%d", i, node), node, ch.msgs})
		}
		waitMembers(t, pub, "r/x", "end2", members[:1])
		for _, m := range members[1:] {
			recvUntil(t, m.name, m.msgs, "end") // waitMembers' marker
		}

		stop := make(chan struct{})
		var wg sync.WaitGroup
		errs := make(chan error, len(churners))
		for _, ch := range churners {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for k := 0; ; k++ {
					select {
					case <-stop:
						return
					default:
					}
					ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
					var err error
					if k%2 == 0 {
						_, err = ch.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "$share/race/r/#", QoS: 1}}})
					} else {
						_, err = ch.Unsubscribe(ctx, &paho.Unsubscribe{Topics: []string{"$share/race/r/#"}})
					}
					cancel()
					if err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		// Several publishers at once, on every node.
		var pw sync.WaitGroup
		for p := range 3 {
			pc := dialV5(t, addr(p), "race-pub-"+strconv.Itoa(p))
			pw.Add(1)
			go func() {
				defer pw.Done()
				for i := p; i < n; i += 3 {
					if _, err := pc.pub("r/"+strconv.Itoa(i%5), 1, "r-"+strconv.Itoa(i)); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		pw.Wait()
		close(stop)
		wg.Wait()
		select {
		case err := <-errs:
			t.Fatal(err)
		default:
		}
		if _, err := pub.pub("end2", 1, "end"); err != nil {
			t.Fatal(err)
		}
		seen, per := countShared(t, members, "r-")
		t.Logf("per member %v", per)

		checkOnce(t, seen, "r-", n)
	})

	// A member on the publishers' node whose clean session ends with
	// copies it never acknowledged, and no other member there: they go
	// to the member on another node (they were lost).
	t.Run("MemberOnPublishersNodeLeaves", func(t *testing.T) {
		const n = 20
		leaver, ack := dialRawExpiry(t, addr(0), "leave-l", packet.V5, 1000, 0)
		if leaver == nil || ack.ReasonCode != 0 {
			t.Fatal("leave-l: not connected")
		}
		if code, _ := leaver.subscribe(1, "$share/lv/lv", 1); code != 1 {
			t.Fatalf("SUBACK 0x%02x", code)
		}
		stayer := sharedV5(t, addr(1), "leave-s", "$share/lv/lv", "endlv")
		pub := dialV5(t, addr(0), "leave-pub")
		// Until the stayer has a probe, node 0 knows of node 1's member.
		deadline := time.Now().Add(waitTimeout)
	probe:
		for i := 0; ; i++ {
			if time.Now().After(deadline) {
				t.Fatal("the member on node 1 got no probe")
			}
			if _, err := pub.pub("lv", 1, "probe-"+strconv.Itoa(i)); err != nil {
				t.Fatal(err)
			}
			for {
				select {
				case x := <-stayer.msgs:
					if strings.HasPrefix(x.Payload, "probe-") {
						break probe
					}
					continue
				case <-time.After(20 * time.Millisecond): // one poll of the channel
				}
				break
			}
		}
		for i := range n {
			if _, err := pub.pub("lv", 1, "lv-"+strconv.Itoa(i)); err != nil {
				t.Fatal(err)
			}
		}
		// The leaver reads its copies and acknowledges none of them.
		held := 0
		for {
			p, err := leaver.read(500 * time.Millisecond)
			if err != nil {
				break
			}
			if p, ok := p.(*packet.Publish); ok && strings.HasPrefix(string(p.Payload), "lv-") {
				held++
			}
		}
		if held == 0 {
			t.Fatal("the member on node 0 got none of the messages: nothing to hand over")
		}
		leaver.nc.Close()
		seen := map[string]bool{}
		deadline = time.Now().Add(waitTimeout)
		for len(seen) < n && time.Now().Before(deadline) {
			select {
			case x := <-stayer.msgs:
				if strings.HasPrefix(x.Payload, "lv-") {
					seen[x.Payload] = true
				}
			case <-time.After(100 * time.Millisecond): // a poll of the deadline
			}
		}
		t.Logf("the leaver held %d unacknowledged copies", held)
		if len(seen) < n {
			var lost []string
			for i := range n {
				if p := "lv-" + strconv.Itoa(i); !seen[p] {
					lost = append(lost, p)
				}
			}
			t.Fatalf("%d of %d QoS 1 messages lost when the member on the publishers' node left: %v", len(lost), n, lost)
		}
	})

	t.Run("MemberNodeKilledDuringQoS1", func(t *testing.T) {
		const n = 600
		pub := dialV5(t, addr(0), "kill-pub")
		a := sharedV5(t, addr(1), "kill-a", "$share/k/k/#", "end3")
		// The member on the node that dies acknowledges slowly, so that it
		// holds unacknowledged messages when its node goes.
		got := make(chan string, 100000)
		opts := mqtt.NewClientOptions().AddBroker("tcp://" + addr(2)).SetClientID("kill-b").SetProtocolVersion(4).
			SetAutoReconnect(false).SetConnectTimeout(5 * time.Second)
		opts.SetOrderMatters(true)
		b := mqtt.NewClient(opts)
		if tok := b.Connect(); !tok.WaitTimeout(waitTimeout) || tok.Error() != nil {
			t.Fatalf("connect: %v", tok.Error())
		}
		t.Cleanup(func() { b.Disconnect(0) })
		if tok := b.Subscribe("$share/k/k/#", 1, func(_ mqtt.Client, m mqtt.Message) {
			got <- string(m.Payload())
			time.Sleep(5 * time.Millisecond) // a slow consumer: acknowledges after this
		}); !tok.WaitTimeout(waitTimeout) || tok.Error() != nil {
			t.Fatal(tok.Error())
		}
		bm := &member{"v3@n2", 2, make(chan msg, 100000)}
		go func() {
			for p := range got {
				bm.msgs <- msg{Payload: p}
			}
		}()
		waitMembers(t, pub, "k/x", "end3", []*member{{"v5@n1", 1, a.msgs}})
		// b's probe: wait until it has one as well.
		deadline := time.Now().Add(waitTimeout)
		for i := 0; ; i++ {
			if _, err := pub.pub("k/x", 1, "bprobe-"+strconv.Itoa(i)); err != nil {
				t.Fatal(err)
			}
			select {
			case x := <-bm.msgs:
				if strings.HasPrefix(x.Payload, "bprobe-") {
					goto ready
				}
			case <-time.After(50 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				t.Fatal("the member on n2 got nothing")
			}
		}
	ready:
		var pw sync.WaitGroup
		errs := make(chan error, 8)
		var sent sync.WaitGroup
		sent.Add(1)
		for p := range 4 {
			pw.Add(1)
			go func() {
				defer pw.Done()
				for i := p; i < n; i += 4 {
					if i == n/2 {
						sent.Done()
					}
					if _, err := pub.pub("k/"+strconv.Itoa(i%3), 1, "k-"+strconv.Itoa(i)); err != nil {
						errs <- fmt.Errorf("publish k-%d: %w", i, err)
						return
					}
				}
			}()
		}
		sent.Wait()
		c.Nodes[2].Kill()
		pw.Wait()
		select {
		case err := <-errs:
			t.Fatal(err)
		default:
		}
		// The copies the dead node held come again once the cluster has
		// noticed it is gone (node_timeout): wait for every message, with
		// a deadline.
		seen := map[string]int{}
		onB, missing := 0, n
		deadline = time.Now().Add(waitTimeout)
		for missing > 0 && time.Now().Before(deadline) {
			var x msg
			select {
			case x = <-a.msgs:
			case x = <-bm.msgs:
				if strings.HasPrefix(x.Payload, "k-") {
					onB++
				}
			case <-time.After(100 * time.Millisecond): // a poll of the deadline
				continue
			}
			if strings.HasPrefix(x.Payload, "k-") {
				if seen[x.Payload] == 0 {
					missing--
				}
				seen[x.Payload]++
			}
		}
		var lost []string
		dups := 0
		for i := range n {
			switch k := seen["k-"+strconv.Itoa(i)]; {
			case k == 0:
				lost = append(lost, "k-"+strconv.Itoa(i))
			case k > 1:
				dups++
			}
		}
		t.Logf("member on the killed node got %d; %d delivered twice (unacknowledged when it died)", onB, dups)
		if onB == 0 {
			t.Fatal("the member on the killed node got nothing: the test did not test a failover")
		}
		if len(lost) > 0 {
			t.Fatalf("%d of %d QoS 1 messages lost when the member's node died: %.20v", len(lost), n, lost)
		}
	})
}
