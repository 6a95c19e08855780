package check

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

// strimziObjects decodes deploy/strimzi/kafka.yaml into unstructured
// objects by kind and name.
func strimziObjects(t *testing.T) map[string]*unstructured.Unstructured {
	t.Helper()
	b, err := os.ReadFile("../strimzi/kafka.yaml")
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string]*unstructured.Unstructured)
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(b), 4096)
	for {
		var m map[string]any
		if err := dec.Decode(&m); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("kafka.yaml: %v", err)
		}
		if m == nil {
			continue
		}
		u := &unstructured.Unstructured{Object: m}
		if u.GetAPIVersion() != "kafka.strimzi.io/v1beta2" {
			t.Errorf("%s %s: apiVersion %s, want kafka.strimzi.io/v1beta2", u.GetKind(), u.GetName(), u.GetAPIVersion())
		}
		out[u.GetKind()+"/"+u.GetName()] = u
	}
	return out
}

func num(t *testing.T, u *unstructured.Unstructured, path ...string) int64 {
	t.Helper()
	v, ok, err := unstructured.NestedFieldNoCopy(u.Object, path...)
	if !ok || err != nil {
		t.Fatalf("%s %s: no %s", u.GetKind(), u.GetName(), strings.Join(path, "."))
	}
	n := toInt(v)
	if n < 0 {
		t.Fatalf("%s %s: %s is %T %v", u.GetKind(), u.GetName(), strings.Join(path, "."), v, v)
	}
	return n
}

// toInt returns a decoded YAML number, or -1.
func toInt(v any) int64 {
	switch v := v.(type) {
	case int64:
		return v
	case float64:
		return int64(v)
	}
	return -1
}

// TestStrimzi: a KRaft Kafka of three brokers, replication factor 3 and
// min.insync.replicas 2 everywhere; a KafkaTopic for every topic the
// Strimzi Helm values' routes and commands use; a SCRAM-SHA-512 KafkaUser
// whose ACLs allow exactly what the bridge does, and whose Secret, the
// cluster CA and the bootstrap Service are the ones the values name.
func TestStrimzi(t *testing.T) {
	objs := strimziObjects(t)
	var kafka *unstructured.Unstructured
	for k, u := range objs {
		if strings.HasPrefix(k, "Kafka/") {
			kafka = u
		}
	}
	if kafka == nil {
		t.Fatal("no Kafka resource")
	}
	cluster := kafka.GetName()
	if a := kafka.GetAnnotations(); a["strimzi.io/kraft"] != "enabled" || a["strimzi.io/node-pools"] != "enabled" {
		t.Errorf("Kafka annotations %v: want KRaft with node pools", a)
	}
	for _, key := range []string{"default.replication.factor", "offsets.topic.replication.factor", "transaction.state.log.replication.factor"} {
		if n := num(t, kafka, "spec", "kafka", "config", key); n != 3 {
			t.Errorf("Kafka %s = %d, want 3", key, n)
		}
	}
	if n := num(t, kafka, "spec", "kafka", "config", "min.insync.replicas"); n != 2 {
		t.Errorf("Kafka min.insync.replicas = %d, want 2", n)
	}
	brokers := int64(0)
	for k, u := range objs {
		if !strings.HasPrefix(k, "KafkaNodePool/") {
			continue
		}
		if u.GetLabels()["strimzi.io/cluster"] != cluster {
			t.Errorf("%s belongs to %q, want %s", k, u.GetLabels()["strimzi.io/cluster"], cluster)
		}
		roles, _, _ := unstructured.NestedStringSlice(u.Object, "spec", "roles")
		if strings.Contains(strings.Join(roles, ","), "broker") {
			brokers += num(t, u, "spec", "replicas")
		}
	}
	if brokers != 3 {
		t.Errorf("%d brokers in the node pools, want 3", brokers)
	}

	topics := map[string]bool{}
	for k, u := range objs {
		if !strings.HasPrefix(k, "KafkaTopic/") {
			continue
		}
		name, _, _ := unstructured.NestedString(u.Object, "spec", "topicName")
		if name == "" {
			name = u.GetName()
		}
		topics[name] = true
		if u.GetLabels()["strimzi.io/cluster"] != cluster {
			t.Errorf("%s belongs to %q, want %s", k, u.GetLabels()["strimzi.io/cluster"], cluster)
		}
		if n := num(t, u, "spec", "replicas"); n != 3 {
			t.Errorf("%s replicas %d, want 3", k, n)
		}
		if n := num(t, u, "spec", "config", "min.insync.replicas"); n != 2 {
			t.Errorf("%s min.insync.replicas %d, want 2", k, n)
		}
	}

	// What the bridge does, from the chart rendered with the Strimzi values
	// and loaded by culex.
	r := render(t, valueSets(t)["strimzi"])
	tpl, pod := podOf(t, r, "core")
	cfg := effectiveConfig(t, "strimzi values", r.config, podEnv(t, r, tpl.Spec.Containers[0], pod))
	need := map[string]string{} // ACL resource -> operation
	for _, route := range get(cfg, "kafka.routes").([]any) {
		topic := route.(map[string]any)["topic"].(string)
		if !topics[topic] {
			t.Errorf("route topic %q has no KafkaTopic (have %v)", topic, topics)
		}
		need["topic/"+topic] = "Write"
	}
	for _, c := range get(cfg, "kafka.commands").([]any) {
		c := c.(map[string]any)
		for _, topic := range strings.Split(c["topics"].(string), ",") {
			if !topics[strings.TrimSpace(topic)] {
				t.Errorf("command topic %q has no KafkaTopic (have %v)", topic, topics)
			}
			need["topic/"+strings.TrimSpace(topic)] = "Read"
		}
		need["group/"+c["group"].(string)] = "Read"
	}

	user := objs["KafkaUser/"+getString(cfg, "kafka.sasl.username")]
	if user == nil {
		t.Fatalf("kafka.sasl.username %q is no KafkaUser", getString(cfg, "kafka.sasl.username"))
	}
	if auth, _, _ := unstructured.NestedString(user.Object, "spec", "authentication", "type"); auth != getString(cfg, "kafka.sasl.mechanism") {
		t.Errorf("KafkaUser authenticates with %q, the bridge with %q", auth, getString(cfg, "kafka.sasl.mechanism"))
	}
	acls, _, _ := unstructured.NestedSlice(user.Object, "spec", "authorization", "acls")
	for res, op := range need {
		if !allowed(acls, res, op) {
			t.Errorf("KafkaUser %s may not %s %s", user.GetName(), op, res)
		}
	}

	// The Secrets and Service the values name are the ones Strimzi makes.
	listeners, _, _ := unstructured.NestedSlice(kafka.Object, "spec", "kafka", "listeners")
	var tlsPort int64
	for _, l := range listeners {
		l := l.(map[string]any)
		auth, _, _ := unstructured.NestedString(l, "authentication", "type")
		if l["tls"] == true && auth == getString(cfg, "kafka.sasl.mechanism") {
			tlsPort = toInt(l["port"])
		}
	}
	if want := fmt.Sprintf("%s-kafka-bootstrap:%d", cluster, tlsPort); getString(cfg, "kafka.brokers") != want || getString(cfg, "kafka.tls.enabled") != "true" {
		t.Errorf("kafka.brokers %q (tls %s), want Strimzi's bootstrap Service on the TLS SCRAM listener %s",
			getString(cfg, "kafka.brokers"), getString(cfg, "kafka.tls.enabled"), want)
	}
	vals := valueSets(t)["strimzi"]["kafka"].(map[string]any)
	if s := vals["sasl"].(map[string]any)["passwordSecret"].(map[string]any); s["name"] != user.GetName() || s["key"] != "password" {
		t.Errorf("password Secret %v, want the KafkaUser's Secret %s, key password", s, user.GetName())
	}
	if s := vals["tls"].(map[string]any)["caSecret"].(map[string]any); s["name"] != cluster+"-cluster-ca-cert" || s["key"] != "ca.crt" {
		t.Errorf("CA Secret %v, want %s-cluster-ca-cert, key ca.crt", s, cluster)
	}
	for key := range r.objs {
		if key == "Secret/"+user.GetName() || key == "Secret/"+cluster+"-cluster-ca-cert" {
			t.Errorf("the chart renders %s, which Strimzi owns", key)
		}
	}
}

// allowed reports whether an ACL of the list grants op (or All) on res
// ("topic/name", "group/name"), literally or by prefix.
func allowed(acls []any, res, op string) bool {
	typ, name, _ := strings.Cut(res, "/")
	for _, a := range acls {
		a := a.(map[string]any)
		r := a["resource"].(map[string]any)
		if r["type"] != typ {
			continue
		}
		n, _ := r["name"].(string)
		if pt, _ := r["patternType"].(string); pt == "prefix" && !strings.HasPrefix(name, n) || pt != "prefix" && n != name && n != "*" {
			continue
		}
		ops, _ := a["operations"].([]any)
		for _, o := range ops {
			if o == op || o == "All" {
				return true
			}
		}
	}
	return false
}
