package kafka

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/culexmq/culex/internal/config"
)

const mosquittoBin = "/usr/sbin/mosquitto"

// startMosquitto runs a Mosquitto broker on a free loopback port (chosen
// by the kernel, retried if taken before mosquitto binds it).
func startMosquitto(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat(mosquittoBin); err != nil {
		t.Skip("mosquitto not installed")
	}
	for range 3 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		conf := filepath.Join(t.TempDir(), "mosquitto.conf")
		body := fmt.Sprintf("listener %d 127.0.0.1\nallow_anonymous true\nmax_queued_messages 100000\n", port)
		if err := os.WriteFile(conf, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(mosquittoBin, "-c", conf)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) {
			if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
				c.Close()
				t.Cleanup(func() { _ = cmd.Process.Kill(); <-exited })
				return addr
			}
			select {
			case <-exited:
				deadline = time.Time{}
			case <-time.After(10 * time.Millisecond): // poll
			}
		}
		_ = cmd.Process.Kill()
		<-exited
	}
	t.Fatal("mosquitto did not start")
	return ""
}

// The standalone bridge reads from Mosquitto (a broker we did not write)
// through a shared subscription and acknowledges after Kafka: every
// message arrives, in per-topic order.
func TestStandaloneFromMosquitto(t *testing.T) {
	addr := startMosquitto(t)
	kc := startKafka(t, kfake.SeedTopics(2, "telemetry"))
	brokers := kc.ListenAddrs()[0]
	b := newBridge(t, kafkaConfig(brokers, config.KafkaRoute{Filter: "devices/+/telemetry", Topic: "telemetry"}))
	src := config.Default().Kafka.Source
	src.URL = "tcp://" + addr
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = b.RunStandalone(ctx, src) }()
	t.Cleanup(func() { cancel(); <-done })
	waitFor(t, "bridge subscribed", b.sourceReady.Load)

	pub, err := dialV5(t, addr, "publisher")
	if err != nil {
		t.Fatal(err)
	}
	const devices, per = 4, 100
	for i := range per {
		for d := range devices {
			if code, _, err := publish(ctx, pub, fmt.Sprintf("devices/dev-%d/telemetry", d), []byte(strconv.Itoa(i))); err != nil || code >= 0x80 {
				t.Fatalf("publish: %v 0x%02x", err, code)
			}
		}
	}
	perKey, total := readDistinct(t, brokers, "telemetry", devices*per)
	if total != devices*per {
		t.Errorf("%d records, want %d", total, devices*per)
	}
	for d := range devices {
		key := fmt.Sprintf("devices/dev-%d/telemetry", d)
		got := perKey[key]
		for i, v := range got {
			if v != i {
				t.Fatalf("%s: record %d is %d", key, i, v)
			}
		}
		if len(got) != per {
			t.Errorf("%s: %d records", key, len(got))
		}
	}
}
