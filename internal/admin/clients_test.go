package admin_test

import (
	"bufio"
	"net/http"
	"net/url"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/culexmq/culex/internal/brokertest"
	"github.com/culexmq/culex/internal/config"
	"github.com/culexmq/culex/internal/server"
)

// mosquittoSub runs mosquitto_sub against srv's TCP listener and returns
// the process and its output lines (the messages it prints, then its
// errors).
func mosquittoSub(t *testing.T, srv *server.Server, args ...string) (*exec.Cmd, <-chan string) {
	t.Helper()
	bin := brokertest.Tool(t, "mosquitto_sub", "mosquitto-clients")
	u, _ := url.Parse(srv.URL("tcp"))
	cmd := exec.Command(bin, append([]string{"-h", u.Hostname(), "-p", u.Port()}, args...)...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd, lines
}

type clientPage struct {
	Data []struct {
		ClientID  string `json:"client_id"`
		Username  string `json:"username"`
		Connected bool   `json:"connected"`
		Address   string `json:"address"`
	} `json:"data"`
	Meta struct{ Page, Limit, Count int } `json:"meta"`
}

// TestKickMosquittoSub: a client that a real mosquitto_sub holds is
// listed (filters, detail with its subscription), kicked through the API,
// and its process sees the DISCONNECT (0x98) and exits.
func TestKickMosquittoSub(t *testing.T) {
	srv := startNode(t, nil)
	c := adminClient(t, srv, "public")
	c.want(http.StatusOK, "POST", "/api/v1/me/password", map[string]string{"old_password": "public", "new_password": "n3w-passw0rd"}, nil)
	cmd, lines := mosquittoSub(t, srv, "-V", "5", "-i", "dev/kick-1", "-t", "sensors/#", "-q", "1", "-x", "3600", "-v")
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	var page clientPage
	poll(t, "mosquitto_sub listed", func() bool {
		c.want(http.StatusOK, "GET", "/api/v1/clients?client_id=kick&connected=true", nil, &page)
		return len(page.Data) == 1
	})
	if x := page.Data[0]; x.ClientID != "dev/kick-1" || !strings.HasPrefix(x.Address, "127.0.0.1:") || page.Meta.Count != 1 {
		t.Fatalf("listed %+v meta %+v", x, page.Meta)
	}
	c.want(http.StatusOK, "GET", "/api/v1/clients?client_id=nobody", nil, &page)
	if len(page.Data) != 0 || page.Meta.Count != 0 {
		t.Fatalf("filter by client id: %+v", page)
	}
	var detail struct {
		ClientID     string `json:"client_id"`
		ProtoVersion int    `json:"proto_version"`
		Persistent   bool   `json:"persistent"`
		Subs         []struct {
			Topic string `json:"topic"`
			QoS   int    `json:"qos"`
		} `json:"subscription_list"`
		QueueMax int `json:"queue_max"`
	}
	poll(t, "the subscription", func() bool {
		c.want(http.StatusOK, "GET", "/api/v1/clients/"+url.PathEscape("dev/kick-1"), nil, &detail)
		return len(detail.Subs) == 1
	})
	if detail.ProtoVersion != 5 || !detail.Persistent || detail.Subs[0].Topic != "sensors/#" || detail.Subs[0].QoS != 1 || detail.QueueMax == 0 {
		t.Fatalf("detail %+v", detail)
	}
	var subs struct {
		Data []struct{ ClientID, Topic string } `json:"data"`
	}
	c.want(http.StatusOK, "GET", "/api/v1/subscriptions?topic=sensors", nil, &subs)
	if len(subs.Data) != 1 || subs.Data[0].Topic != "sensors/#" {
		t.Fatalf("subscriptions %+v", subs)
	}

	c.want(http.StatusNoContent, "POST", "/api/v1/clients/"+url.PathEscape("dev/kick-1")+"/kick", nil, nil)
	select {
	case <-exited: // mosquitto_sub ends when the server disconnects it
	case <-time.After(20 * time.Second):
		t.Fatal("mosquitto_sub still runs 20 s after the kick")
	}
	var out []string
	for l := range lines {
		out = append(out, l)
	}
	c.want(http.StatusOK, "GET", "/api/v1/sessions?connected=false", nil, &page)
	if len(page.Data) != 1 || page.Data[0].Connected {
		t.Fatalf("after the kick: %+v (mosquitto_sub said %q)", page, out)
	}
	c.wantError(http.StatusNotFound, "not_found", "POST", "/api/v1/clients/"+url.PathEscape("dev/kick-1")+"/kick", nil)
	t.Logf("mosquitto_sub: %q", out)
}

// TestTopicsAndSharedSubscriptions: two real subscribers of one shared
// subscription and one plain one: topics counts each filter's
// subscribers, subscriptions names the share group.
func TestTopicsAndSharedSubscriptions(t *testing.T) {
	srv := startNode(t, func(c *config.Config) { c.Admin.DefaultPassword = "admin-pw-1" })
	a := adminClient(t, srv, "admin-pw-1")
	mosquittoSub(t, srv, "-V", "5", "-i", "w1", "-t", "$share/workers/jobs/+")
	mosquittoSub(t, srv, "-V", "5", "-i", "w2", "-t", "$share/workers/jobs/+")
	mosquittoSub(t, srv, "-V", "5", "-i", "mon", "-t", "jobs/+")
	var topics struct {
		Data []struct {
			Topic       string `json:"topic"`
			Subscribers int    `json:"subscribers"`
		} `json:"data"`
	}
	poll(t, "three subscriptions", func() bool {
		a.want(http.StatusOK, "GET", "/api/v1/topics?topic=jobs", nil, &topics)
		return len(topics.Data) == 2 && topics.Data[0].Subscribers+topics.Data[1].Subscribers == 3
	})
	if topics.Data[0].Topic != "$share/workers/jobs/+" || topics.Data[0].Subscribers != 2 || topics.Data[1].Topic != "jobs/+" {
		t.Fatalf("topics %+v", topics)
	}
	var subs struct {
		Data []struct {
			ClientID string `json:"client_id"`
			Topic    string `json:"topic"`
			Group    string `json:"share_group"`
		} `json:"data"`
	}
	a.want(http.StatusOK, "GET", "/api/v1/subscriptions?share_group=workers", nil, &subs)
	if len(subs.Data) != 2 || subs.Data[0].ClientID != "w1" || subs.Data[0].Topic != "jobs/+" || subs.Data[1].Group != "workers" {
		t.Fatalf("subscriptions %+v", subs)
	}
}

// TestOfflineSessionQueue: messages for an offline persistent session of a
// real mosquitto_sub -c show as its queue in the client's detail and in
// the offline sessions list.
func TestOfflineSessionQueue(t *testing.T) {
	srv := startNode(t, func(c *config.Config) { c.Admin.DefaultPassword = "admin-pw-1" })
	a := adminClient(t, srv, "admin-pw-1")
	cmd, _ := mosquittoSub(t, srv, "-V", "5", "-c", "-x", "3600", "-i", "away", "-q", "1", "-t", "cmd/away")
	var subs struct{ Data []any }
	poll(t, "away subscribed", func() bool {
		a.want(http.StatusOK, "GET", "/api/v1/subscriptions?client_id=away", nil, &subs)
		return len(subs.Data) == 1
	})
	cmd.Process.Kill() // gone without DISCONNECT; the session stays
	var page clientPage
	poll(t, "away offline", func() bool {
		a.want(http.StatusOK, "GET", "/api/v1/sessions?connected=false", nil, &page)
		return len(page.Data) == 1
	})
	for range 3 {
		if out, err := mosquittoPub(t, srv, "-q", "1", "-t", "cmd/away", "-m", "reboot"); err != nil {
			t.Fatalf("%v %s", err, out)
		}
	}
	var d struct {
		Connected      bool    `json:"connected"`
		Queued         int     `json:"queued"`
		QueuedBytes    int     `json:"queued_bytes"`
		DisconnectedAt *string `json:"disconnected_at"`
	}
	a.want(http.StatusOK, "GET", "/api/v1/clients/away", nil, &d)
	if d.Connected || d.Queued != 3 || d.QueuedBytes == 0 || d.DisconnectedAt == nil {
		t.Fatalf("offline session %+v", d)
	}
}
