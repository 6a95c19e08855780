package listener

import (
	"bytes"
	"crypto/sha1"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
)

// The server side of the WebSocket opening handshake (RFC 6455 section 4.2),
// parsed straight from the connection: no net/http server, no bufio left
// behind. See wsconn.go for the framing.

// maxUpgradeRequest bounds the HTTP upgrade request, headers included.
const maxUpgradeRequest = 4096

// upgradeBufs recycles the request buffers of upgrades, so that a storm of
// WebSocket connections does not leave one behind per connection as garbage
// (heap the process holds on to).
var upgradeBufs = sync.Pool{New: func() any { return new([maxUpgradeRequest]byte) }}

// wsGUID is the key suffix of Sec-WebSocket-Accept (RFC 6455 section 1.3).
const wsGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// wsSubprotocols are the subprotocols we speak, in order of preference:
// "mqtt" is MQTT 3.1.1 and 5.0 [MQTT-6.0.0-3], "mqttv3.1" is MQTT 3.1.
var wsSubprotocols = []string{"mqtt", "mqttv3.1"}

// httpError is an upgrade request we refuse with an HTTP status.
type httpError struct {
	status int
	reason string
	header string // extra header lines, each ending in CRLF
}

func (e *httpError) Error() string {
	return fmt.Sprintf("%d %s: %s", e.status, http.StatusText(e.status), e.reason)
}

// upgrade reads the HTTP upgrade request from conn, answers it and returns the
// WebSocket conn, or answers with an error status and returns the error. The
// caller bounds it with a deadline.
func upgrade(conn net.Conn, path string) (*wsConn, error) {
	bp := upgradeBufs.Get().(*[maxUpgradeRequest]byte)
	defer upgradeBufs.Put(bp)
	buf := bp[:]
	n, end := 0, -1
	for end < 0 {
		if n == len(buf) {
			return nil, refuse(conn, &httpError{status: http.StatusRequestHeaderFieldsTooLarge, reason: "request too large"})
		}
		m, err := conn.Read(buf[n:])
		from := max(0, n-3)
		n += m
		if i := bytes.Index(buf[from:n], []byte("\r\n\r\n")); i >= 0 {
			end = from + i + 4
		} else if err != nil {
			return nil, fmt.Errorf("read request: %w", err)
		}
	}
	key, proto, herr := parseUpgrade(string(buf[:end-4]), path)
	if herr != nil {
		return nil, refuse(conn, herr)
	}
	sum := sha1.Sum([]byte(key + wsGUID))
	resp := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Accept: " + base64.StdEncoding.EncodeToString(sum[:]) + "\r\n"
	if proto != "" {
		resp += "Sec-WebSocket-Protocol: " + proto + "\r\n"
	}
	if _, err := conn.Write([]byte(resp + "\r\n")); err != nil {
		return nil, fmt.Errorf("write response: %w", err)
	}
	c := &wsConn{conn: conn}
	if end < n {
		// A client may send its first frame before it sees our answer.
		c.pre = bytes.Clone(buf[end:n])
	}
	return c, nil
}

// refuse answers an upgrade request with herr's status and returns herr.
func refuse(conn net.Conn, herr *httpError) error {
	body := herr.reason + "\n"
	fmt.Fprintf(conn, "HTTP/1.1 %d %s\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\n%s\r\n%s",
		herr.status, http.StatusText(herr.status), len(body), herr.header, body)
	return herr
}

// parseUpgrade checks an upgrade request (without its final blank line) and
// returns the client's key and the subprotocol we pick, if the client offered
// any.
func parseUpgrade(head, path string) (key, proto string, herr *httpError) {
	bad := func(status int, reason string) (string, string, *httpError) {
		return "", "", &httpError{status: status, reason: reason}
	}
	line, rest, _ := strings.Cut(head, "\r\n")
	method, target, version, ok := splitRequestLine(line)
	if !ok {
		return bad(http.StatusBadRequest, "malformed request line")
	}
	if method != http.MethodGet {
		return "", "", &httpError{status: http.StatusMethodNotAllowed, reason: "method must be GET", header: "Allow: GET\r\n"}
	}
	if version != "HTTP/1.1" {
		return bad(http.StatusBadRequest, "version must be HTTP/1.1")
	}
	target, _, _ = strings.Cut(target, "?")
	if target != path {
		return bad(http.StatusNotFound, "no WebSocket endpoint at "+target)
	}
	h := make(map[string]string, 8)
	for rest != "" {
		line, rest, _ = strings.Cut(rest, "\r\n")
		name, value, ok := strings.Cut(line, ":")
		if !ok || name == "" || strings.ContainsAny(name, " \t") {
			return bad(http.StatusBadRequest, "malformed header line")
		}
		name, value = strings.ToLower(name), strings.TrimSpace(value)
		if prev, dup := h[name]; dup {
			value = prev + ", " + value
		}
		h[name] = value
	}
	if h["host"] == "" {
		return bad(http.StatusBadRequest, "missing Host")
	}
	if !hasToken(h["upgrade"], "websocket") {
		return bad(http.StatusBadRequest, "missing Upgrade: websocket")
	}
	if !hasToken(h["connection"], "upgrade") {
		return bad(http.StatusBadRequest, "missing Connection: Upgrade")
	}
	if h["sec-websocket-version"] != "13" {
		return "", "", &httpError{status: http.StatusUpgradeRequired, reason: "Sec-WebSocket-Version must be 13", header: "Sec-WebSocket-Version: 13\r\n"}
	}
	key = h["sec-websocket-key"]
	if raw, err := base64.StdEncoding.DecodeString(key); err != nil || len(raw) != 16 {
		return bad(http.StatusBadRequest, "bad Sec-WebSocket-Key")
	}
	// A client that offers no subprotocol is served anyway (generic
	// WebSocket tools send none); one that offers only others is refused.
	if offered, ok := h["sec-websocket-protocol"]; ok {
		for _, p := range wsSubprotocols {
			if hasToken(offered, p) {
				return key, p, nil
			}
		}
		return bad(http.StatusBadRequest, "unsupported subprotocol "+offered+"; want mqtt")
	}
	return key, "", nil
}

// splitRequestLine splits "GET /mqtt HTTP/1.1".
func splitRequestLine(line string) (method, target, version string, ok bool) {
	method, rest, ok1 := strings.Cut(line, " ")
	target, version, ok2 := strings.Cut(rest, " ")
	return method, target, version, ok1 && ok2 && method != "" && target != "" && !strings.Contains(version, " ")
}

// hasToken reports whether the comma-separated header value holds token,
// compared case-insensitively.
func hasToken(value, token string) bool {
	for v := range strings.SplitSeq(value, ",") {
		if strings.EqualFold(strings.TrimSpace(v), token) {
			return true
		}
	}
	return false
}
