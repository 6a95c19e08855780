package cluster_test

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"os/exec"
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
	var subOut bytes.Buffer
	sub.Stdout, sub.Stderr = &subOut, &subOut
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
		t.Fatalf("mosquitto_sub of bad-user on c1 still runs after the ban on c0:\n%s", subOut.String())
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
}
