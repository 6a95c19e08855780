package bench

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// TLS workloads (`culex bench compare --tls`): handshake rates, idle
// memory and a reconnect storm over TLS 1.3, against both brokers.
//
// The bench clients offer X25519 only (--tls-groups x25519), as device TLS
// stacks (mbedTLS, wolfSSL) do, and do not verify the server (--insecure):
// the client's own work then costs less of the shared machine.

// tlsCase is what a TLS workload asks of the brokers and the clients.
type tlsCase struct {
	Kind       string // handshakes, idle, storm
	Key        string // p256, rsa2048: the server certificate's key
	ClientCert bool   // the broker requires a client certificate; the clients present one
	Resume     bool   // the clients resume sessions (handshakes)
	WS         bool   // WebSocket over TLS (wss://)
	Clients    int
}

// Defaults of the TLS workloads.
const (
	tlsHandshakeClients = 4000
	tlsStormConcurrency = 2000
)

// TLSMatrix is the workloads of `culex bench compare --tls`; idle is the
// connection count of the memory and storm rows.
func TLSMatrix(idle int) []Workload {
	var ws []Workload
	hs := tlsHandshakeClients
	if idle > 0 {
		hs = min(hs, idle)
	}
	for _, key := range []string{"p256", "rsa2048"} {
		for _, c := range []struct {
			name         string
			cert, resume bool
		}{{"full", false, false}, {"resumed", false, true}, {"full, client cert", true, false}} {
			ws = append(ws, Workload{
				Name: fmt.Sprintf("tls handshakes %s %s", key, c.name),
				TLS:  &tlsCase{Kind: "handshakes", Key: key, ClientCert: c.cert, Resume: c.resume, Clients: hs},
			})
		}
	}
	if idle > 0 {
		ws = append(ws,
			Workload{Name: fmt.Sprintf("tls idle %d p256", idle), Idle: idle, TLS: &tlsCase{Kind: "idle", Key: "p256", Resume: true, Clients: idle}},
			Workload{Name: fmt.Sprintf("wss idle %d p256", idle), Idle: idle, TLS: &tlsCase{Kind: "idle", Key: "p256", Resume: true, WS: true, Clients: idle}},
			Workload{Name: fmt.Sprintf("tls storm %d p256", idle), TLS: &tlsCase{Kind: "storm", Key: "p256", Resume: true, Clients: idle}},
		)
	}
	return ws
}

// tlsFiles are the harness's throwaway PKI.
type tlsFiles struct {
	dir                   string
	ca                    string
	cert, key             map[string]string // by key type
	clientCert, clientKey string
}

// makeTLSFiles writes a CA, a server certificate for 127.0.0.1 with a
// P-256 and with an RSA 2048 key, and a client certificate into a new
// directory readable by the mosquitto user (mosquitto drops root).
func makeTLSFiles() (*tlsFiles, error) {
	dir, err := os.MkdirTemp("", "culex-compare-tls-")
	if err != nil {
		return nil, err
	}
	os.Chmod(dir, 0o755)
	f := &tlsFiles{dir: dir, cert: map[string]string{}, key: map[string]string{}}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "culex bench CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(48 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		return nil, err
	}
	ca, _ := x509.ParseCertificate(caDER)
	if f.ca, err = writePEM(dir, "ca.pem", "CERTIFICATE", caDER); err != nil {
		return nil, err
	}
	issue := func(name string, serial int64, pub, priv any, server bool) (string, string, error) {
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(48 * time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		}
		if server {
			tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
			tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		} else {
			tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, pub, caKey)
		if err != nil {
			return "", "", err
		}
		keyDER, err := x509.MarshalPKCS8PrivateKey(priv)
		if err != nil {
			return "", "", err
		}
		c, err := writePEM(dir, name+".pem", "CERTIFICATE", der)
		if err != nil {
			return "", "", err
		}
		k, err := writePEM(dir, name+"-key.pem", "PRIVATE KEY", keyDER)
		return c, k, err
	}
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	if f.cert["p256"], f.key["p256"], err = issue("server-p256", 2, ec.Public(), ec, true); err != nil {
		return nil, err
	}
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	if f.cert["rsa2048"], f.key["rsa2048"], err = issue("server-rsa2048", 3, rk.Public(), rk, true); err != nil {
		return nil, err
	}
	ck, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	if f.clientCert, f.clientKey, err = issue("device", 4, ck.Public(), ck, false); err != nil {
		return nil, err
	}
	return f, nil
}

func writePEM(dir, name, typ string, der []byte) (string, error) {
	path := filepath.Join(dir, name)
	return path, os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o644)
}

// tlsSpec is spec set up for the TLS workload w.
func (f *tlsFiles) spec(spec brokerSpec, w Workload) brokerSpec {
	t := w.TLS
	if spec.mosquitto != "" {
		conf := fmt.Sprintf("certfile %s\nkeyfile %s\n", f.cert[t.Key], f.key[t.Key])
		if t.ClientCert {
			conf += fmt.Sprintf("cafile %s\nrequire_certificate true\n", f.ca)
		}
		if t.WS {
			conf += "protocol websockets\n"
		}
		spec.extraConf = conf + spec.extraConf
		return spec
	}
	q := url.Values{"cert_file": {f.cert[t.Key]}, "key_file": {f.key[t.Key]}}
	if t.ClientCert {
		q.Set("client_ca_file", f.ca)
		q.Set("client_auth", "require")
	}
	scheme, path := "ssl", ""
	if t.WS {
		scheme, path = "wss", "/mqtt"
	}
	tmpl := make([]string, len(spec.template))
	for i, a := range spec.template {
		tmpl[i] = strings.Replace(a, "tcp://127.0.0.1:{port}", scheme+"://127.0.0.1:{port}"+path+"?"+q.Encode(), 1)
	}
	spec.template = tmpl
	return spec
}

// tlsArgs is the `culex bench` command line of the TLS workload w against
// port; prep, when not nil, runs first (the storm's sessions).
func (f *tlsFiles) tlsArgs(w Workload, port int, duration, locals string) (args, prep []string) {
	t := w.TLS
	u := fmt.Sprintf("ssl://127.0.0.1:%d", port)
	if t.WS {
		u = fmt.Sprintf("wss://127.0.0.1:%d/mqtt", port)
	}
	common := []string{"--url", u, "--insecure", "--tls-groups", "x25519", "--timeout", "60s", "--json", "--quiet"}
	if !t.Resume {
		common = append(common, "--tls-resume=false")
	}
	if t.ClientCert {
		common = append(common, "--cert", f.clientCert, "--key", f.clientKey)
	}
	if locals != "" {
		common = append(common, "--local-addrs", locals)
	}
	n := fmt.Sprint(t.Clients)
	switch t.Kind {
	case "handshakes":
		return append([]string{"conn", "--clients", n, "--duration", "1s", "--conn-concurrency", "200"}, common...), nil
	case "idle":
		return append([]string{"conn", "--clients", n, "--duration", duration, "--conn-concurrency", "200", "--phases"}, common...), nil
	}
	// storm: persistent sessions with a subscription each exist (prep);
	// then every device reconnects at once.
	sub := []string{"sub", "--clients", n, "--client-id", "storm-%i", "--topic", "storm/%i", "--qos", "1", "--clean=false"}
	prep = append(append(append([]string{}, sub...), "--duration", "1ms", "--conn-concurrency", "500"), common...)
	args = append(append(append([]string{}, sub...), "--duration", "5s", "--conn-concurrency", fmt.Sprint(tlsStormConcurrency), "--phases"), common...)
	return args, prep
}

// eachTLS prints the rows of the TLS workloads of kind: row for a result,
// an error row of cols columns for a failed one.
func eachTLS(p func(string, ...any), results []Result, kind string, cols int, row func(r Result)) {
	for _, r := range results {
		if r.Workload.TLS == nil || r.Workload.TLS.Kind != kind {
			continue
		}
		if r.Err != "" {
			p("| %s | %s | error: %s |%s", r.Workload.Name, r.Broker, mdEscape(r.Err), strings.Repeat(" |", cols-3))
			continue
		}
		row(r)
	}
}

// writeTLSReport renders the TLS section: handshake rates, idle memory
// and the reconnect storm, Culex beside Mosquitto.
func writeTLSReport(w io.Writer, o *compareOpts, args []string, results []Result, started time.Time) {
	p := func(format string, a ...any) { fmt.Fprintf(w, format+"\n", a...) }
	writeRunInfo(p, o, args, started, "TLS: Culex and Mosquitto side by side", "culex bench compare --tls")
	p("- TLS 1.3; server certificates with a P-256 or an RSA 2048 key from a throwaway CA; the clients offer X25519")
	p("  only (as device TLS stacks do) and skip verifying the server; a fresh broker per workload, brokers alternating who goes first")
	p("- the bench client shares the machine's cores with the broker: its own handshakes cost about as much as the broker's")
	p("")
	p("### Handshakes")
	p("")
	p("Each client connects once, 200 at a time; a connection is a TCP connect, the TLS handshake and MQTT CONNECT/CONNACK.")
	p("\"full\" clients keep no session; \"resumed\" ones resume with the ticket of an earlier connection. Connections/s is")
	p("connections over the time from the first dial to the last CONNACK; broker CPU is in %% of one core over the run.")
	p("")
	p("| workload | broker | connections/s | dial to CONNACK p50 | p99 | resumed | broker CPU %% | errors |")
	p("|---|---|--:|--:|--:|--:|--:|---|")
	eachTLS(p, results, "handshakes", 8, func(r Result) {
		s := r.Summary
		p("| %s | %s | %.0f | %s | %s | %d | %.0f | %s |", r.Workload.Name, r.Broker, s.ConnectRate,
			fmtUS(s.ConnectLatency.P50US), fmtUS(s.ConnectLatency.P99US), s.TLSResumed, r.BrokerCPUPct, mdEscape(errorsLine(s.Errors)))
	})
	p("")
	p("Culex / Mosquitto, connections/s:")
	p("")
	p("| workload | ratio |")
	p("|---|--:|")
	by := map[string]map[string]float64{}
	var names []string
	for _, r := range results {
		if r.Summary == nil || r.Workload.TLS == nil || r.Workload.TLS.Kind != "handshakes" {
			continue
		}
		if by[r.Workload.Name] == nil {
			by[r.Workload.Name] = map[string]float64{}
			names = append(names, r.Workload.Name)
		}
		by[r.Workload.Name][r.Broker] = r.Summary.ConnectRate
	}
	for _, n := range names {
		p("| %s | %s |", n, ratio(by[n]["culex"], by[n]["mosquitto"]))
	}
	p("")
	p("### Idle TLS connections")
	p("")
	writeIdleNote(p)
	p("")
	p("| workload | broker | %s", idleColumns)
	p("|---|---|%s", idleAlign)
	eachTLS(p, results, "idle", 9, func(r Result) {
		p("| %s | %s | %s", r.Workload.Name, r.Broker, idleCells(r))
	})
	p("")
	p("### Reconnect storm")
	p("")
	p("Every device has a persistent session (MQTT 3.1.1, clean session off) with one QoS 1 subscription, made")
	p("by a first run; then all of them reconnect, %d handshakes in flight at once, and subscribe again.", tlsStormConcurrency)
	p("All connected is the time from the first dial to the last SUBACK. Steady RSS is RSS held as above;")
	p("RSS peak is the peak VmRSS from the first dial until the clients begin to close (the connect storm), over")
	p("the broker's RSS at rest before it (after the first run's clients left and its RSS settled).")
	p("")
	p("| workload | broker | connected | all connected s | dial to CONNACK p50 | p99 | RSS at rest KiB | RSS steady KiB | RSS peak KiB | peak / steady | broker CPU %% | errors |")
	p("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|")
	eachTLS(p, results, "storm", 12, func(r Result) {
		s := r.Summary
		p("| %s | %s | %d/%d | %.2f | %s | %s | %d | %d | %d | %s | %.0f | %s |", r.Workload.Name, r.Broker,
			s.Clients.Subscribed, s.Clients.Target, s.ConnectS, fmtUS(s.ConnectLatency.P50US), fmtUS(s.ConnectLatency.P99US),
			r.BaseRSSKiB, r.HeldRSSKiB, r.ConnectPeakKiB, ratio(float64(r.ConnectPeakKiB), float64(r.HeldRSSKiB)), r.BrokerCPUPct,
			mdEscape(errorsLine(s.Errors)))
	})
	writeCommands(p, results, "; the certificate paths are the harness's")
}
