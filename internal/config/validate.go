package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"
)

// Validate checks values that parse but make no sense; each error names its
// key.
func (c *Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...)))
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		bad("log_level", "%q is not one of debug, info, warn, error", c.LogLevel)
	}
	if len(c.Listeners) == 0 {
		bad("listeners", "at least one listener is needed")
	}
	for i, l := range c.Listeners {
		if err := l.validate(); err != nil {
			errs = append(errs, fmt.Errorf("listeners[%d]: %w", i, err))
		}
	}
	m := &c.MQTT
	if m.ConnectTimeout <= 0 {
		bad("mqtt.connect_timeout", "must be positive")
	}
	if m.MaxPacketSize < 64 || m.MaxPacketSize > 268435455 {
		bad("mqtt.max_packet_size", "%d is outside 64..268435455 bytes", m.MaxPacketSize)
	}
	if m.MaxConnectPacketSize < 64 || m.MaxConnectPacketSize > 268435455 {
		bad("mqtt.max_connect_packet_size", "%d is outside 64..268435455 bytes", m.MaxConnectPacketSize)
	}
	if m.ReceiveMaximum == 0 {
		bad("mqtt.receive_maximum", "must be at least 1 [MQTT-3.2.2-17]")
	}
	if m.MaxInflight == 0 {
		bad("mqtt.max_inflight", "must be at least 1")
	}
	if m.MaxQueuedMessages < 1 {
		bad("mqtt.max_queued_messages", "must be at least 1")
	}
	switch m.QueueOverflow {
	case "drop_new", "drop_oldest":
	default:
		bad("mqtt.queue_overflow", "%q is not one of drop_new, drop_oldest", m.QueueOverflow)
	}
	if m.MaxQueuedBytes > 0 && m.MaxQueuedBytes < int(m.MaxPacketSize) {
		bad("mqtt.max_queued_bytes", "%d is below mqtt.max_packet_size (%d): a queue must hold one message", m.MaxQueuedBytes, m.MaxPacketSize)
	}
	if m.BridgeMaxQueuedMessages < 1 {
		bad("mqtt.bridge_max_queued_messages", "must be at least 1")
	}
	if m.BridgeMaxQueuedBytes > 0 && m.BridgeMaxQueuedBytes < int(m.MaxPacketSize) {
		bad("mqtt.bridge_max_queued_bytes", "%d is below mqtt.max_packet_size (%d): a queue must hold one message", m.BridgeMaxQueuedBytes, m.MaxPacketSize)
	}
	if m.MaxRetainedBytes > 0 && m.MaxRetainedBytes < int64(m.MaxPacketSize) {
		bad("mqtt.max_retained_bytes", "%d is below mqtt.max_packet_size (%d)", m.MaxRetainedBytes, m.MaxPacketSize)
	}
	for key, n := range map[string]int{"mqtt.max_sessions": m.MaxSessions, "mqtt.max_sessions_per_identity": m.MaxSessionsPerIdentity} {
		if n < 0 {
			bad(key, "%d is negative (0: unlimited)", n)
		}
	}
	switch c.Auth.ClientIDBinding {
	case "none", "equal", "prefix":
	default:
		bad("auth.client_id_binding", "%q is not one of none, equal, prefix", c.Auth.ClientIDBinding)
	}
	if m.MaxTopicLevels < 1 {
		bad("mqtt.max_topic_levels", "must be at least 1")
	}
	if m.MaxClientIDLength < 23 || m.MaxClientIDLength > 65535 {
		bad("mqtt.max_client_id_length", "%d is outside 23..65535 (every server must accept 23 [MQTT-3.1.3-5])", m.MaxClientIDLength)
	}
	if m.MaxQoS > 2 {
		bad("mqtt.max_qos", "%d is not 0, 1 or 2", m.MaxQoS)
	}
	if m.WriteTimeout <= 0 {
		bad("mqtt.write_timeout", "must be positive")
	}
	if rl := c.Auth.RateLimit; c.Auth.HasBackend() && rl.PerUsername > 0 && rl.MaxDelay >= m.ConnectTimeout {
		bad("auth.rate_limit.max_delay", "%v must be shorter than mqtt.connect_timeout (%v), or a slowed login always times out", rl.MaxDelay, m.ConnectTimeout)
	}
	switch c.Auth.ACLDefault {
	case "", "allow", "deny":
	default:
		bad("auth.acl_default", "%q is not allow or deny (or left out: deny with an acl_file, allow without)", c.Auth.ACLDefault)
	}
	c.Kafka.validateGroup(bad)
	c.Kafka.validateCommands(bad)
	c.Cluster.validate(bad)
	if c.Cluster.Listen != "" && c.Cluster.IsCore() && c.Cluster.Store(c.DataDir) == "" {
		bad("cluster.store_dir", "a core keeps the cluster's state on disk: set data_dir or cluster.store_dir")
	}
	if c.ShutdownTimeout <= 0 {
		bad("shutdown_timeout", "must be positive")
	}
	return errors.Join(errs...)
}

// Schemes maps every accepted listener URL scheme to its canonical name.
var Schemes = map[string]string{
	"tcp": "tcp", "mqtt": "tcp",
	"ssl": "ssl", "tls": "ssl", "mqtts": "ssl",
	"ws": "ws", "wss": "wss",
}

func (l *Listener) validate() error {
	u, err := url.Parse(l.URL)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return fmt.Errorf("url: %q is not a listener URL like tcp://0.0.0.0:1883 or ws://:8083/mqtt", l.URL)
	}
	scheme, ok := Schemes[strings.ToLower(u.Scheme)]
	if !ok {
		return fmt.Errorf("url: scheme %q of %q is not one of tcp, ssl, ws, wss", u.Scheme, l.URL)
	}
	if _, _, err := net.SplitHostPort(u.Host); err != nil {
		return fmt.Errorf("url: %q has no port", l.URL)
	}
	secure := scheme == "ssl" || scheme == "wss"
	switch {
	case secure && (l.TLS.CertFile == "" || l.TLS.KeyFile == ""):
		return fmt.Errorf("tls.cert_file and tls.key_file are required for %s", l.URL)
	case !secure && (l.TLS.CertFile != "" || l.TLS.ClientCAFile != ""):
		return fmt.Errorf("tls: %s is not a TLS listener (use ssl:// or wss://)", l.URL)
	}
	if _, err := l.TrustedPrefixes(); err != nil {
		return err
	}
	switch {
	case l.ProxyProtocol && len(l.TrustedProxies) == 0:
		return errors.New("trusted_proxies: required with proxy_protocol: list the load balancers' addresses or networks (10.0.0.0/8); a PROXY header from any other peer is refused")
	case !l.ProxyProtocol && len(l.TrustedProxies) > 0:
		return errors.New("trusted_proxies: set without proxy_protocol: true, so no PROXY header is read")
	}
	switch l.TLS.ClientAuth {
	case "", "none", "request":
	case "require":
		if l.TLS.ClientCAFile == "" {
			return errors.New("tls.client_auth: require needs tls.client_ca_file")
		}
	default:
		return fmt.Errorf("tls.client_auth: %q is not one of none, request, require", l.TLS.ClientAuth)
	}
	return nil
}

// TrustedPrefixes parses TrustedProxies: each is an address (a network of
// one) or a network in CIDR form. IPv4-mapped IPv6 forms are unmapped, as
// peer addresses are before they are matched.
func (l *Listener) TrustedPrefixes() ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(l.TrustedProxies))
	for i, s := range l.TrustedProxies {
		p, err := parsePrefix(strings.TrimSpace(s))
		if err != nil {
			return nil, fmt.Errorf("trusted_proxies[%d]: %q is not an IP address or a network like 10.0.0.0/8", i, s)
		}
		out = append(out, p)
	}
	return out, nil
}

func parsePrefix(s string) (netip.Prefix, error) {
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return netip.Prefix{}, errors.New("bad address")
		}
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p.Masked(), nil
}
