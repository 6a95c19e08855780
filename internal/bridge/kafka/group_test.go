package kafka

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/culexmq/culex/internal/config"
)

// groupSession is the session timeout of TestCommandsResumeAfterKill9: a
// dynamic member restarted after a kill waits about this long.
const groupSession = 30 * time.Second

// TestCommandsResumeAfterKill9: a real `culex serve` consuming a command
// topic from Kafka in its own process is killed with -9 and restarted
// with the same configuration. Its consumer is a static group member
// (kafka.group_instance_id, by default generated and kept in data_dir),
// so the restarted node takes its partitions
// back at once: a command produced after the restart reaches the device
// well within the group session timeout (30 s here), where a dynamic
// member waits for its dead predecessor's session to expire.
func TestCommandsResumeAfterKill9(t *testing.T) {
	if os.Getenv(kfakeChildEnv) != "" {
		t.Skip("in child")
	}
	_, brokers := startKfakeProc(t, 0, t.TempDir())
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "culex.yaml")
	cfg := fmt.Sprintf(`data_dir: %q
listeners: [{url: "tcp://127.0.0.1:0"}]
kafka:
  brokers: %q
  group_session_timeout: %s
  commands:
    - {name: cmds, topics: telemetry, group: culex-cmds, mqtt_topic: "cmd/${key}", qos: 1}
`, filepath.Join(dir, "data"), brokers, groupSession)
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	prod, err := kgo.NewClient(kgo.SeedBrokers(brokers))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()

	// command produces key k until the device subscribed at the node
	// receives it, and returns how long that took.
	command := func(node *culexProc, key string) time.Duration {
		t.Helper()
		got := make(chan string, 16)
		dev, err := dialV5(t, node.addr, "device-"+key)
		if err != nil {
			t.Fatal(err)
		}
		dev.AddOnPublishReceived(func(pr paho.PublishReceived) (bool, error) {
			got <- pr.Packet.Topic
			return true, nil
		})
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		if _, err := dev.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "cmd/" + key, QoS: 1}}}); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if err := prod.ProduceSync(ctx, &kgo.Record{Topic: "telemetry", Key: []byte(key), Value: []byte("go")}).FirstErr(); err != nil {
			t.Fatal(err)
		}
		select {
		case <-got:
			return time.Since(start)
		case <-time.After(2 * groupSession):
			t.Fatalf("command %s not delivered within %s", key, 2*groupSession)
		}
		return 0
	}

	// The default instance id is generated on the first start, stored in
	// data_dir and logged; the restart logs the same one.
	idFile := filepath.Join(dir, "data", config.GroupInstanceIDFile)
	loggedID := func(node *culexProc) {
		t.Helper()
		id, err := os.ReadFile(idFile)
		if err != nil {
			t.Fatal(err)
		}
		if want := "group_instance_id=" + strings.TrimSpace(string(id)); !strings.Contains(node.log.String(), want) {
			t.Fatalf("start-up log lacks %s", want)
		}
	}
	node := startCulex(t, cfgFile)
	loggedID(node)
	t.Logf("first command delivered after %s", command(node, "a"))
	node.kill()
	node = startCulex(t, cfgFile)
	loggedID(node)
	d := command(node, "b")
	t.Logf("command after kill -9 and restart delivered after %s", d)
	if d > groupSession/3 {
		t.Errorf("command after the restart took %s, want well under the %s group session timeout (static membership)", d, groupSession)
	}
}
