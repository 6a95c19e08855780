package config

import (
	"reflect"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// secretFields calls f with the path and struct field of every field of t
// (through structs, slices, maps and pointers).
func secretFields(t reflect.Type, prefix string, f func(path string, sf reflect.StructField)) {
	for t.Kind() == reflect.Slice || t.Kind() == reflect.Pointer || t.Kind() == reflect.Map {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct || t == durationType {
		return
	}
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		name := sf.Tag.Get("yaml")
		if name == "" || name == "-" {
			continue
		}
		f(prefix+name, sf)
		secretFields(sf.Type, prefix+name+".", f)
	}
}

// TestSecretFieldsTagged: every key named like a secret (ending in secret,
// password, token or key, not the *_file paths of files holding one) says
// whether it is one with a `secret` tag, so that a new secret cannot be
// added without being redacted; tagged fields are strings.
func TestSecretFieldsTagged(t *testing.T) {
	secretFields(reflect.TypeOf(Config{}), "", func(path string, sf reflect.StructField) {
		name := sf.Tag.Get("yaml")
		tag, tagged := sf.Tag.Lookup("secret")
		if strings.HasSuffix(name, "_file") {
			return
		}
		for _, suffix := range []string{"secret", "password", "token", "key"} {
			if strings.HasSuffix(name, suffix) && !tagged {
				t.Errorf("%s: named like a secret but has no secret:\"true\" (or secret:\"false\") tag", path)
			}
		}
		if tagged && tag == "true" && sf.Type.Kind() != reflect.String {
			t.Errorf("%s: secret field of type %s, only strings are redacted", path, sf.Type)
		}
	})
}

// TestRedacted: every tagged secret and every URL credential, comma lists
// included, is gone from the shown config; the rest is shown as is and the
// original is not changed.
func TestRedacted(t *testing.T) {
	c := Default()
	c.Listeners = []Listener{{URL: "ssl://0.0.0.0:8883", TLS: TLS{TicketSecret: "S3CRET-ticket"}}}
	c.Admin.DefaultPassword = "S3CRET-admin"
	c.Cluster.Secret = "S3CRET-cluster"
	c.Cluster.NATSURL = "nats://a:S3CRET-n1@10.0.0.1:4222, nats://b:S3CRET-n2@10.0.0.2:4222,S3CRET-tok@10.0.0.3:4222"
	c.Kafka.SASL.Password = "S3CRET-sasl"
	c.Kafka.Source.URL = "tcp://bridge:S3CRET-src@127.0.0.1:1883"
	c.Kafka.Source.Password = "S3CRET-srcpw"
	c.Auth.HTTP.URL = "https://hook:S3CRET-hook@auth.example/check?tenant=1&access_token=S3CRET-q#x"
	c.Auth.JWT.JWKSURL = "https://auth.example/jwks?api_key=S3CRET-jwks"
	c.Kafka.Routes = []KafkaRoute{{Filter: "a/#", Topic: "t", Key: "${clientid}"}}
	orig := c.Cluster.NATSURL

	r := Redacted(c)
	out, err := yaml.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "S3CRET") {
		t.Errorf("redacted config shows a secret:\n%s", out)
	}
	for _, want := range []string{
		"ticket_secret: <redacted>", "secret: <redacted>", "default_password: <redacted>",
		"nats://a:redacted@10.0.0.1:4222", "nats://b:redacted@10.0.0.2:4222", "redacted@10.0.0.3:4222",
		"https://hook:redacted@auth.example/check?tenant=1&access_token=redacted#x",
		"key: ${clientid}", "url: ssl://0.0.0.0:8883",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("redacted config lacks %q:\n%s", want, out)
		}
	}
	if c.Cluster.NATSURL != orig || c.Listeners[0].TLS.TicketSecret != "S3CRET-ticket" {
		t.Errorf("Redacted changed its argument")
	}
	if !reflect.DeepEqual(Redacted(Default()), Default()) {
		t.Errorf("Redacted changes a config without secrets")
	}
}
