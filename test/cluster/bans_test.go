package cluster_test

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/culexmq/culex/internal/clustertest"
)

// pubAs runs mosquitto_pub as username user against node n.
func pubAs(t *testing.T, n *clustertest.Node, user, id string) (string, error) {
	t.Helper()
	host, port, _ := net.SplitHostPort(n.MQTT())
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, "mosquitto_pub", "-V", "5", "-h", host, "-p", port, "-u", user, "-i", id, "-t", "t", "-m", "x").CombinedOutput()
	return string(out), err
}

func wantBanned(t *testing.T, n *clustertest.Node, user string) {
	t.Helper()
	if out, err := pubAs(t, n, user, "pub-"+n.Name); err == nil || !strings.Contains(strings.ToLower(out), "banned") {
		t.Fatalf("%s on %s: %v %q, want refused as banned", user, n.Name, err, out)
	}
}

type bansList []struct {
	Kind, Value, Source string
	Node                string `json:"node"`
}

// TestAdminBansAcrossNodes: a username banned through node c0's API is
// refused (0x8A) on c1 and c2, and its live connection on c1 (a real
// mosquitto_sub) is disconnected; GET /bans on c2 lists it; c2 restarted
// keeps it; lifting it on c1 lets the device in everywhere, c2 included.
// Subscriptions and topics of the device on c1 are listed from c0.
func TestAdminBansAcrossNodes(t *testing.T) {
	c := clustertest.Start(t, clustertest.Options{Cores: 3, Extra: adminExtra})
	a := adminAPI(t, c.Nodes[0])

	host, port, _ := net.SplitHostPort(c.Nodes[1].MQTT())
	ctx, cancel := context.WithTimeout(context.Background(), 2*waitTimeout)
	defer cancel()
	sub := exec.CommandContext(ctx, "mosquitto_sub", "-V", "5", "-h", host, "-p", port, "-u", "bad-user", "-i", "dev-bad", "-t", "cmd/dev-bad", "-q", "1")
	if err := sub.Start(); err != nil {
		t.Fatalf("mosquitto_sub: %v (apt install mosquitto-clients)", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- sub.Wait() }()

	var subs struct {
		Data []struct {
			ClientID string `json:"client_id"`
			Node     string `json:"node"`
			Topic    string `json:"topic"`
		} `json:"data"`
		Meta struct {
			Count   int      `json:"count"`
			Missing []string `json:"missing_nodes"`
		} `json:"meta"`
	}
	for deadline := time.Now().Add(waitTimeout); ; {
		a.do("GET", "/api/v1/subscriptions?client_id=dev-bad", nil, &subs)
		if len(subs.Data) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the subscription of dev-bad on c1 not listed by c0: %+v", subs)
		}
		time.Sleep(20 * time.Millisecond) // poll
	}
	if d := subs.Data[0]; d.Node != "c1" || d.Topic != "cmd/dev-bad" || subs.Meta.Count != 1 || len(subs.Meta.Missing) != 0 {
		t.Fatalf("GET /subscriptions on c0: %+v", subs)
	}
	var topics struct {
		Data []struct {
			Topic       string `json:"topic"`
			Subscribers int    `json:"subscribers"`
			Node        string `json:"node"`
		} `json:"data"`
	}
	if a.do("GET", "/api/v1/topics?topic=cmd/dev-bad", nil, &topics); len(topics.Data) != 1 || topics.Data[0].Node != "c1" || topics.Data[0].Subscribers != 1 {
		t.Fatalf("GET /topics on c0: %+v", topics)
	}
	if a.do("GET", "/api/v1/topics?topic=cmd/dev-bad&node=c2", nil, &topics); len(topics.Data) != 0 {
		t.Fatalf("GET /topics?node=c2 on c0: %+v, want none", topics)
	}

	if st := a.do("POST", "/api/v1/bans", map[string]any{"kind": "username", "value": "bad-user", "reason": "test"}, nil); st != http.StatusCreated {
		t.Fatalf("POST /bans: %d", st)
	}
	select {
	case <-exited:
	case <-time.After(waitTimeout):
		t.Fatalf("mosquitto_sub of bad-user on c1 still runs after the ban on c0")
	}
	wantBanned(t, c.Nodes[1], "bad-user")
	wantBanned(t, c.Nodes[2], "bad-user")
	wantBanned(t, c.Nodes[0], "bad-user")

	c2 := adminAPI(t, c.Nodes[2])
	var bans bansList
	if c2.do("GET", "/api/v1/bans", nil, &bans); len(bans) != 1 || bans[0].Value != "bad-user" || bans[0].Source != "manual" {
		t.Fatalf("GET /bans on c2: %+v", bans)
	}

	c.Nodes[2].Stop()
	c.Nodes[2].Restart()
	c.Nodes[2].WaitReady()
	wantBanned(t, c.Nodes[2], "bad-user")

	c1 := adminAPI(t, c.Nodes[1])
	if st := c1.do("DELETE", "/api/v1/bans/username/bad-user", nil, nil); st != http.StatusNoContent {
		t.Fatalf("DELETE /bans on c1: %d", st)
	}
	for _, n := range c.Nodes {
		if out, err := pubAs(t, n, "bad-user", "pub-"+n.Name); err != nil {
			t.Fatalf("bad-user on %s after the ban was lifted: %v %s", n.Name, err, out)
		}
	}
	if a.do("GET", "/api/v1/bans", nil, &bans); len(bans) != 0 {
		t.Fatalf("GET /bans on c0 after the lift: %+v", bans)
	}

	// c2 is down while bad-user is banned again and lifted, and late-user
	// banned: started again, it takes the other nodes' bans.
	c.Nodes[2].Stop()
	for _, b := range [][3]string{{"POST", "bad-user"}, {"DELETE", "bad-user"}, {"POST", "late-user"}} {
		st := 0
		if b[0] == "POST" {
			st = a.do("POST", "/api/v1/bans", map[string]any{"kind": "username", "value": b[1]}, nil)
		} else {
			st = a.do("DELETE", "/api/v1/bans/username/"+b[1], nil, nil)
		}
		if st >= 300 {
			t.Fatalf("%s %s with c2 down: %d", b[0], b[1], st)
		}
	}
	c.Nodes[2].Restart()
	c.Nodes[2].WaitReady()
	for deadline := time.Now().Add(waitTimeout); ; {
		out, err := pubAs(t, c.Nodes[2], "late-user", "pub-late")
		if err != nil && strings.Contains(strings.ToLower(out), "banned") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("c2 restarted does not refuse late-user, banned while it was down: %v %s", err, out)
		}
		time.Sleep(50 * time.Millisecond) // poll
	}
	if out, err := pubAs(t, c.Nodes[2], "bad-user", "pub-c2"); err != nil {
		t.Fatalf("c2 restarted refuses bad-user, lifted while it was down: %v %s", err, out)
	}
}

// TestAdminRetainedDeleteAcrossNodes: a retained message published on c1
// is read through c2's API and deleted through c0's: c1 and c2 no longer
// have it, and a new subscriber on c2 gets only the other retained
// message of the filter.
func TestAdminRetainedDeleteAcrossNodes(t *testing.T) {
	c := clustertest.Start(t, clustertest.Options{Cores: 3, Extra: adminExtra})
	for _, m := range [][2]string{{"ret/gone", "old"}, {"ret/marker", "marker"}} {
		host, port, _ := net.SplitHostPort(c.Nodes[1].MQTT())
		if out, err := exec.Command("mosquitto_pub", "-h", host, "-p", port, "-r", "-q", "1", "-t", m[0], "-m", m[1]).CombinedOutput(); err != nil {
			t.Fatalf("mosquitto_pub: %v %s", err, out)
		}
	}
	apis := []*api{adminAPI(t, c.Nodes[0]), adminAPI(t, c.Nodes[1]), adminAPI(t, c.Nodes[2])}
	waitStatus := func(a *api, want int) {
		t.Helper()
		for deadline := time.Now().Add(waitTimeout); ; {
			st := a.do("GET", "/api/v1/retained/ret%2Fgone", nil, &map[string]any{})
			if st == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("GET /retained/ret/gone on %s: %d, want %d", a.base, st, want)
			}
			time.Sleep(20 * time.Millisecond) // poll
		}
	}
	waitStatus(apis[2], http.StatusOK)
	waitStatus(apis[0], http.StatusOK)
	if st := apis[0].do("DELETE", "/api/v1/retained/ret%2Fgone", nil, nil); st != http.StatusNoContent {
		t.Fatalf("DELETE /retained/ret/gone on c0: %d", st)
	}
	waitStatus(apis[1], http.StatusNotFound)
	waitStatus(apis[2], http.StatusNotFound)
	// Retained messages come at SUBSCRIBE; ret/end is sent until the
	// subscriber has two messages: a ret/gone would be one of them.
	host, port, _ := net.SplitHostPort(c.Nodes[2].MQTT())
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	sub := exec.CommandContext(ctx, "mosquitto_sub", "-h", host, "-p", port, "-t", "ret/#", "-v", "-C", "2")
	var out bytes.Buffer
	sub.Stdout = &out
	if err := sub.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- sub.Wait() }()
	var err error
	for done := false; !done; {
		exec.CommandContext(ctx, "mosquitto_pub", "-h", host, "-p", port, "-t", "ret/end", "-m", "end").Run()
		select {
		case err = <-exited:
			done = true
		case <-time.After(100 * time.Millisecond): // next ret/end
		}
	}
	// The retained marker and a live ret/end, in either order (a live
	// message routed while the SUBSCRIBE is handled may come before the
	// retained ones), and never ret/gone.
	got := strings.Split(strings.TrimSpace(out.String()), "\n")
	slices.Sort(got)
	if err != nil || strings.Join(got, "|") != "ret/end end|ret/marker marker" {
		t.Fatalf("new subscriber on c2: %v %q, want the retained marker and ret/end", err, out.String())
	}
}
