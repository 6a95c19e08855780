// Package config is Culex's one configuration struct: defaults, validation and
// loading from YAML, flags and CULEX_* environment variables.
package config

import "time"

// Config is the whole configuration of a node. Its zero value is not usable:
// start from Default.
type Config struct {
	// LogLevel is debug, info, warn or error.
	LogLevel string `yaml:"log_level"`
	// LogFormat is text (logfmt-style key=value lines) or json (one JSON
	// object per line, for log shippers).
	LogFormat string `yaml:"log_format"`
	// DataDir holds durable state (sessions, retained messages, wills).
	// Empty keeps state in memory only.
	DataDir string `yaml:"data_dir"`
	// Listeners are the MQTT endpoints.
	Listeners []Listener `yaml:"listeners"`
	// MQTT holds protocol limits and features.
	MQTT MQTT `yaml:"mqtt"`
	// Auth holds the anonymous-access policy (backends come with device security).
	Auth Auth `yaml:"auth"`
	// Store tunes durable state.
	Store Store `yaml:"store"`
	// SysInterval is how often $SYS topics are published; 0 disables them.
	SysInterval time.Duration `yaml:"sys_interval"`
	// ShutdownTimeout bounds graceful shutdown.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
	// Kafka is the MQTT <-> Kafka bridge (docs/kafka.md); off while
	// Brokers is empty.
	Kafka Kafka `yaml:"kafka"`
	// Admin is the admin HTTP listener (admin.go).
	Admin Admin `yaml:"admin"`
	// Cluster joins the node to a cluster (docs/cluster.md); off while
	// cluster.listen and cluster.nats_url are empty.
	Cluster Cluster `yaml:"cluster"`
}

// Listener is one MQTT endpoint.
type Listener struct {
	// URL is tcp://host:port, ssl://host:port (also tls:// and mqtts://),
	// ws://host:port/path or wss://host:port/path.
	URL string `yaml:"url"`
	// ProxyProtocol expects a PROXY protocol v1 or v2 header on every
	// connection (HAProxy send-proxy / send-proxy-v2).
	ProxyProtocol bool `yaml:"proxy_protocol"`
	// TrustedProxies are the addresses (192.0.2.10, 2001:db8::1) and
	// networks (10.0.0.0/8) of the load balancers allowed to send a PROXY
	// header; connections from anywhere else are refused. Required with
	// ProxyProtocol: there is no implicit trust.
	TrustedProxies []string `yaml:"trusted_proxies"`
	// TLS applies to ssl:// and wss:// listeners.
	TLS TLS `yaml:"tls"`
}

// TLS is a listener's certificate and client-certificate policy.
type TLS struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ClientCAFile verifies client certificates when set.
	ClientCAFile string `yaml:"client_ca_file"`
	// ClientAuth is none, request or require.
	ClientAuth string `yaml:"client_auth"`
	// TicketSecret derives the session ticket keys (HKDF with the time
	// epoch): nodes that share it resume each other's TLS sessions. Empty:
	// a random secret of this process.
	TicketSecret string `yaml:"ticket_secret" secret:"true"`
	// TicketRotation is how long one ticket key encrypts new tickets; a
	// ticket is accepted for up to twice this (0: 12h).
	TicketRotation time.Duration `yaml:"ticket_rotation"`
	// ReloadInterval is how often the certificate, key and client CA files
	// are checked for a change (0: 10s).
	ReloadInterval time.Duration `yaml:"reload_interval"`
	// MaxPendingHandshakes bounds the accepted connections waiting for or
	// in their handshake (0: 4096); more are closed at once, before any TLS
	// work. It applies to every listener with a handshake (TLS, WebSocket,
	// PROXY protocol).
	MaxPendingHandshakes int `yaml:"max_pending_handshakes"`
	// HandshakeWorkers is how many handshakes run at once (0: 64 per core).
	HandshakeWorkers int `yaml:"handshake_workers"`
	// HandshakeTimeout bounds the time from accept to a completed
	// handshake, waiting in the queue included (0: 10s).
	HandshakeTimeout time.Duration `yaml:"handshake_timeout"`
}

// MQTT holds protocol limits. Every limit has a safe default.
type MQTT struct {
	// MaxConnections is the most concurrent client connections (0: unlimited).
	MaxConnections int `yaml:"max_connections"`
	// ConnectTimeout closes sockets that send no CONNECT in time.
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
	// MaxKeepAlive caps the client's keep-alive (seconds); a v5 client is told
	// the cap in CONNACK's Server Keep Alive. 0 means no cap.
	MaxKeepAlive uint16 `yaml:"max_keepalive"`
	// MaxPacketSize is the largest packet accepted (bytes).
	MaxPacketSize uint32 `yaml:"max_packet_size"`
	// MaxConnectPacketSize caps CONNECT and the AUTH packets before CONNACK
	// (bytes), which come before the client is authenticated (bigger ones
	// get CONNACK 0x95 from v5, a close otherwise); max_packet_size caps it
	// too. The default holds a will payload of the largest size a CONNECT
	// carries (65,535 bytes) beside a client id, username, password, will
	// topic and properties of 16 KiB each.
	MaxConnectPacketSize uint32 `yaml:"max_connect_packet_size"`
	// ReceiveMaximum is how many unacknowledged QoS 1/2 publishes a client
	// may send us at once; a v5 client that exceeds it gets DISCONNECT 0x93.
	ReceiveMaximum uint16 `yaml:"receive_maximum"`
	// MaxInflight caps the QoS 1/2 messages we send a client before it
	// acknowledges them (also capped by the client's Receive Maximum).
	MaxInflight uint16 `yaml:"max_inflight"`
	// MaxQueuedMessages bounds each session's queue of messages waiting for
	// delivery (offline, or beyond the in-flight window).
	MaxQueuedMessages int `yaml:"max_queued_messages"`
	// MaxQueuedBytes bounds the topic and payload bytes of each session's
	// queue (0: unlimited); over it QueueOverflow applies as for
	// MaxQueuedMessages. At least MaxPacketSize when set.
	MaxQueuedBytes int `yaml:"max_queued_bytes"`
	// QueueOverflow is what happens when a queue is full: drop_new (the new
	// message is dropped) or drop_oldest (the oldest queued message is dropped).
	// Every drop is counted with its reason.
	QueueOverflow string `yaml:"queue_overflow"`
	// BridgeClients names the sessions (comma-separated authenticated
	// identities; client ids without an auth backend) whose queues are bounded by
	// BridgeMaxQueuedMessages and BridgeMaxQueuedBytes instead: the
	// sessions of `culex bridge` instances reading from this node, which
	// must hold what arrives while a bridge restarts.
	BridgeClients string `yaml:"bridge_clients"`
	// BridgeMaxQueuedMessages bounds the queue of a BridgeClients session.
	BridgeMaxQueuedMessages int `yaml:"bridge_max_queued_messages"`
	// BridgeMaxQueuedBytes bounds its bytes (0: unlimited).
	BridgeMaxQueuedBytes int `yaml:"bridge_max_queued_bytes"`
	// MaxSubscriptionsPerClient bounds a session's subscriptions (0: unlimited).
	MaxSubscriptionsPerClient int `yaml:"max_subscriptions_per_client"`
	// MaxSessions bounds the persistent sessions (session expiry > 0) the
	// node keeps, connected or not (0: unlimited). A CONNECT that would
	// create one more is refused with 0x97 (3.1.1: return code 3).
	MaxSessions int `yaml:"max_sessions"`
	// MaxSessionsPerIdentity bounds the persistent sessions one
	// authenticated identity owns (0: unlimited), so that one device's
	// credentials cannot fill MaxSessions; anonymous sessions count only
	// against MaxSessions. Refused like MaxSessions.
	MaxSessionsPerIdentity int `yaml:"max_sessions_per_identity"`
	// MaxRetainedMessages bounds the retained messages (0: unlimited). A
	// retained message for a new topic beyond it is routed but not stored;
	// replacing or clearing an existing one always works.
	MaxRetainedMessages int `yaml:"max_retained_messages"`
	// MaxRetainedBytes bounds the topic and payload bytes of the retained
	// messages (0: unlimited), with the same overflow as MaxRetainedMessages.
	MaxRetainedBytes int64 `yaml:"max_retained_bytes"`
	// MaxTopicLevels bounds the levels of topic names and filters.
	MaxTopicLevels int `yaml:"max_topic_levels"`
	// MaxClientIDLength bounds client identifiers (bytes).
	MaxClientIDLength int `yaml:"max_client_id_length"`
	// MaxTopicAlias is the Topic Alias Maximum we offer v5 clients (0: none).
	// The topics of one connection's aliases hold at most MaxPacketSize
	// bytes; a client that goes over gets DISCONNECT 0x97.
	MaxTopicAlias uint16 `yaml:"max_topic_alias"`
	// MaxSessionExpiry caps the Session Expiry Interval a client may ask for.
	MaxSessionExpiry time.Duration `yaml:"max_session_expiry"`
	// MaxMessageExpiry caps how long a message may wait for delivery (0: none).
	MaxMessageExpiry time.Duration `yaml:"max_message_expiry"`
	// MaxQoS is the highest QoS the broker accepts and grants (0, 1 or 2).
	MaxQoS byte `yaml:"max_qos"`
	// RetainAvailable enables retained messages.
	RetainAvailable bool `yaml:"retain_available"`
	// WildcardSubscriptions enables + and # in filters.
	WildcardSubscriptions bool `yaml:"wildcard_subscriptions"`
	// SharedSubscriptions enables $share/group/filter.
	SharedSubscriptions bool `yaml:"shared_subscriptions"`
	// SubscriptionIdentifiers enables subscription identifiers.
	SubscriptionIdentifiers bool `yaml:"subscription_identifiers"`
	// WriteTimeout disconnects a client whose socket accepts no bytes, and
	// that acknowledges none already sent, for this long.
	WriteTimeout time.Duration `yaml:"write_timeout"`
	// ReturnMemoryAfterStorm returns the memory freed after a storm of
	// TLS, WebSocket or PROXY handshakes (or of disconnects) to the OS at
	// once, at most every 30 s (docs/tls.md); off leaves it to the runtime.
	ReturnMemoryAfterStorm bool `yaml:"return_memory_after_storm"`
}

// Auth is device security: authentication backends, ACLs and abuse limits
// (see docs/security.md). Users and ACL rules live in their own files.
type Auth struct {
	// AllowAnonymous lets clients that no backend recognises connect as
	// anonymous (an empty username for ACL placeholders). Left out, it is
	// on without an authentication backend and off with one (see
	// AnonymousAllowed); AllowAnonymousSet records that it was given.
	AllowAnonymous bool `yaml:"allow_anonymous" given:"AllowAnonymousSet"`
	// AllowAnonymousSet is true when allow_anonymous was given in the
	// file, the environment or a flag (the loader sets it); code that
	// builds a Config sets it to make AllowAnonymous true stick with a
	// backend configured.
	AllowAnonymousSet bool `yaml:"-"`
	// Backends is the comma-separated chain order, from users, jwt, http,
	// cert and scram; the first definitive answer wins.
	Backends string `yaml:"backends"`
	// UsersFile is the users file managed by `culex users` (bcrypt or
	// argon2id hashes). Empty disables the users and scram backends.
	UsersFile string `yaml:"users_file"`
	// ACLFile holds the topic rules. Empty means only ACLDefault applies.
	ACLFile string `yaml:"acl_file"`
	// ACLDefault is allow or deny: the answer when no rule matches. Left
	// empty, it is deny with an ACL file and allow without (see
	// ACLDefaultAllow).
	ACLDefault string `yaml:"acl_default"`
	// SuperuserTakeover lets a superuser take over the session of any
	// client id; otherwise a client id's session belongs to the identity
	// that created it (docs/security.md).
	SuperuserTakeover bool `yaml:"superuser_takeover"`
	// ClientIDBinding is none, equal (the client id must equal the
	// authenticated username or the verified certificate's CN) or prefix
	// (it must start with one of them); others get 0x85 (3.1.1: 2).
	ClientIDBinding string `yaml:"client_id_binding"`
	// SysSuperuserOnly keeps $SYS/# for superusers whatever the rules say.
	SysSuperuserOnly bool `yaml:"sys_superuser_only"`
	// V3DeniedPublish is what a denied 3.1.1 PUBLISH gets: drop or disconnect.
	V3DeniedPublish string `yaml:"v3_denied_publish"`
	// WatchInterval is how often the users and ACL files are checked for
	// changes; 0 disables watching (SIGHUP still reloads).
	WatchInterval time.Duration `yaml:"watch_interval"`
	// CacheTTL is how long a verified password stays verified without
	// hashing again; 0 disables the cache.
	CacheTTL time.Duration `yaml:"cache_ttl"`
	// MaxConcurrentChecks bounds concurrent password hashing; 0 is half
	// the CPUs (at least one), leaving the rest to routing.
	MaxConcurrentChecks int `yaml:"max_concurrent_checks"`
	// RateLimit bans sources and usernames after failed logins.
	RateLimit AuthRateLimit `yaml:"rate_limit"`
	// HTTP is the webhook backend.
	HTTP AuthHTTP `yaml:"http"`
	// JWT is the JSON Web Token (in the password field) backend.
	JWT AuthJWT `yaml:"jwt"`
	// Cert is the TLS client certificate backend.
	Cert AuthCert `yaml:"cert"`
}

// AuthRateLimit limits failed logins: a source address over its limit is
// banned; a username over its limit is slowed, never banned.
type AuthRateLimit struct {
	// PerAddress is the failures allowed per source IP per window before
	// the address is banned (0: off).
	PerAddress int `yaml:"per_address"`
	// PerUsername is the failures allowed per username before each further
	// login for it waits a delay that doubles per failure (0: off).
	PerUsername int `yaml:"per_username"`
	// Window is the period failures are counted over; a username's count
	// is forgotten once a window passes without a failure.
	Window time.Duration `yaml:"window"`
	// Ban is how long an address is refused once over its limit.
	Ban time.Duration `yaml:"ban"`
	// MaxDelay bounds a username's delay: the right password gets in after
	// at most this long, whoever is guessing. Keep it below
	// mqtt.connect_timeout.
	MaxDelay time.Duration `yaml:"max_delay"`
}

// AuthHTTP is the webhook backend: a JSON POST per login.
type AuthHTTP struct {
	// URL receives the POST; empty disables the backend.
	URL string `yaml:"url"`
	// Timeout bounds one request.
	Timeout time.Duration `yaml:"timeout"`
	// OnError is deny or next (ask the next backend) for timeouts, errors
	// and unexpected answers.
	OnError string `yaml:"on_error"`
	// CacheTTL is how long an answer is reused; 0 disables the cache.
	CacheTTL time.Duration `yaml:"cache_ttl"`
}

// AuthJWT verifies a JWT given as the password (HS256, RS256, ES256).
type AuthJWT struct {
	// SecretFile holds the HS256 secret.
	SecretFile string `yaml:"secret_file"`
	// PublicKeyFile holds a PEM RSA or EC P-256 public key (RS256, ES256).
	PublicKeyFile string `yaml:"public_key_file"`
	// JWKSURL serves the verification keys as a JWK Set.
	JWKSURL string `yaml:"jwks_url"`
	// JWKSRefresh is how often the JWK Set is fetched again.
	JWKSRefresh time.Duration `yaml:"jwks_refresh"`
	// Issuer and Audience, when set, must match the iss and aud claims.
	Issuer   string `yaml:"issuer"`
	Audience string `yaml:"audience"`
	// UsernameClaim names the claim that becomes the username (sub if absent).
	UsernameClaim string `yaml:"username_claim"`
	// Leeway tolerates clock skew on exp and nbf.
	Leeway time.Duration `yaml:"leeway"`
}

// AuthCert turns a verified TLS client certificate into a username.
type AuthCert struct {
	// CAFile is the PEM bundle client certificates are verified against.
	CAFile string `yaml:"ca_file"`
	// UsernameFrom is cn, san_dns, san_email or san_uri.
	UsernameFrom string `yaml:"username_from"`
}

// Store tunes the durable store.
type Store struct {
	// MaxBatchDelay is how long the group committer may wait to gather a batch.
	MaxBatchDelay time.Duration `yaml:"max_batch_delay"`
}

// Kafka is the Kafka cluster the bridge talks to and its routes.
type Kafka struct {
	// Brokers is the comma-separated seed list (host:port); empty disables
	// the bridge.
	Brokers string `yaml:"brokers"`
	// ClientID identifies the bridge to Kafka (quotas, logs).
	ClientID string `yaml:"client_id"`
	// ProduceTimeout bounds how long a kafka-mode publish waits for
	// Kafka's ack; past it the publish fails (v5: PUBACK 0x80, 3.1.1: no
	// ack) and the device retransmits, while the record stays in the
	// producer until Kafka takes it.
	ProduceTimeout time.Duration `yaml:"produce_timeout"`
	// MaxBufferedRecords bounds the records the producer holds waiting for
	// Kafka; over it a kafka-mode publish fails with 0x97 (quota exceeded).
	MaxBufferedRecords int `yaml:"max_buffered_records"`
	// CreateTopics creates missing route topics at start with Partitions
	// and ReplicationFactor; otherwise a missing topic is a start error.
	CreateTopics bool `yaml:"create_topics"`
	// Partitions and ReplicationFactor apply to topics created at start
	// (0: the cluster's defaults).
	Partitions        int `yaml:"partitions"`
	ReplicationFactor int `yaml:"replication_factor"`
	// SASL authenticates to Kafka.
	SASL KafkaSASL `yaml:"sasl"`
	// TLS encrypts the connection to Kafka.
	TLS KafkaTLS `yaml:"tls"`
	// Routes carry MQTT messages into Kafka topics (file only).
	Routes []KafkaRoute `yaml:"routes"`
	// Commands carry Kafka records to MQTT (file only).
	Commands []KafkaCommand `yaml:"commands"`
	// Spool is the disk spool of routes with ack: spool.
	Spool KafkaSpool `yaml:"spool"`
	// Source is the MQTT broker `culex bridge` (standalone mode) reads from.
	Source KafkaSource `yaml:"source"`
	// GroupSessionTimeout is how long Kafka waits for a silent command
	// consumer before it gives the consumer's partitions to another member
	// (Kafka's session.timeout.ms, within the cluster's
	// group.min/max.session.timeout.ms).
	GroupSessionTimeout time.Duration `yaml:"group_session_timeout"`
	// GroupInstanceID makes every command consumer a static group member
	// (KIP-345) so that a restarted node takes its partitions back at once
	// instead of waiting GroupSessionTimeout. It must be unique per node.
	// Empty: a random id generated once and stored in data_dir (none
	// without data_dir: dynamic membership), or in `culex bridge` stored in
	// spool.dir, else the host name plus source.client_id; "none": dynamic
	// membership.
	GroupInstanceID string `yaml:"group_instance_id" given:"GroupInstanceIDSet"`
	// GroupInstanceIDSet is true when group_instance_id was given.
	GroupInstanceIDSet bool `yaml:"-"`
}

// KafkaSpool is the local disk spool: a publish on an ack: spool route is
// acknowledged once its record is fsynced here; the spool drains to Kafka
// in order. Full, it refuses new publishes (0x97) and never evicts.
type KafkaSpool struct {
	// Dir holds the segment files; required when a route uses ack: spool.
	Dir string `yaml:"dir"`
	// MaxBytes bounds the records waiting for Kafka.
	MaxBytes int64 `yaml:"max_bytes"`
	// SegmentBytes is the size at which a new segment file starts.
	SegmentBytes int64 `yaml:"segment_bytes"`
}

// KafkaSource is the MQTT connection of the standalone bridge: it
// subscribes to every route filter and acknowledges each QoS 1/2 message
// to the broker only once Kafka acked it.
type KafkaSource struct {
	// URL is tcp://host:port of any MQTT 5 broker.
	URL string `yaml:"url"`
	// ClientID must stay the same across restarts so the broker keeps the
	// session (and its unacknowledged messages) for the next run.
	ClientID string `yaml:"client_id"`
	Username string `yaml:"username"`
	Password string `yaml:"password" secret:"true"`
	// ShareGroup subscribes through $share/<group>/<filter> so that N
	// bridges split the load; empty subscribes to the filters directly.
	ShareGroup string `yaml:"share_group"`
	// SessionExpiry is how long the broker keeps the session while the
	// bridge is away.
	SessionExpiry time.Duration `yaml:"session_expiry"`
	// ReceiveMaximum bounds the messages the broker sends before acks.
	ReceiveMaximum uint16 `yaml:"receive_maximum"`
}

// KafkaCommand consumes Kafka topics in a consumer group and publishes each
// record to MQTT. Offsets are committed only once the messages are routed
// and durably queued for every matching persistent session.
type KafkaCommand struct {
	// Name labels the route in metrics and logs (default: the topics).
	Name string `yaml:"name"`
	// Topics is the comma-separated list of Kafka topics to consume.
	Topics string `yaml:"topics"`
	// Group is the consumer group (default culex-<name>).
	Group string `yaml:"group"`
	// MQTTTopic is the MQTT topic template: literal text with ${key},
	// ${topic} (Kafka), ${partition} and ${header.NAME}.
	MQTTTopic string `yaml:"mqtt_topic"`
	// QoS is the QoS of the published messages (0, 1 or 2).
	QoS byte `yaml:"qos"`
	// Retain publishes the messages as retained.
	Retain bool `yaml:"retain"`
	// MaxStall bounds how long a session's full queue may stall a
	// partition on one record (nil: DefaultMaxStall; 0: without limit).
	MaxStall *time.Duration `yaml:"max_stall"`
}

// KafkaSASL is SASL authentication to Kafka.
type KafkaSASL struct {
	// Mechanism is none, plain, scram-sha-256 or scram-sha-512.
	Mechanism string `yaml:"mechanism"`
	Username  string `yaml:"username"`
	Password  string `yaml:"password" secret:"true"`
}

// KafkaTLS is the bridge's TLS client configuration.
type KafkaTLS struct {
	// Enabled turns TLS on; the system roots verify the brokers unless
	// CAFile is set.
	Enabled bool `yaml:"enabled"`
	// CAFile is a PEM bundle of the CAs that sign the brokers' certificates.
	CAFile string `yaml:"ca_file"`
	// CertFile and KeyFile are the client certificate for mutual TLS.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ServerName overrides the name verified in the brokers' certificates.
	ServerName string `yaml:"server_name"`
}

// KafkaRoute carries the MQTT messages matching Filter into a Kafka topic.
// A message may match several routes; each gets its own record.
type KafkaRoute struct {
	// Name labels the route in metrics and logs (default: the filter).
	Name string `yaml:"name"`
	// Filter is an MQTT topic filter (+ and # allowed).
	Filter string `yaml:"filter"`
	// Topic is the Kafka topic template: literal text with ${topic},
	// ${1}..${n} (MQTT topic levels), ${clientid} and ${username}.
	Topic string `yaml:"topic"`
	// Key is the record key template (default ${clientid}, so each
	// device's messages keep their order in one partition).
	Key string `yaml:"key" secret:"false"`
	// Payload is raw (the MQTT payload as is) or json (an envelope with
	// the metadata and the payload).
	Payload string `yaml:"payload"`
	// Headers adds the MQTT metadata as record headers (mqtt.topic, ...).
	Headers bool `yaml:"headers"`
	// Ack is kafka (acknowledge QoS 1/2 after Kafka acks, the default),
	// spool (after the record is fsynced in the local spool) or none (best
	// effort).
	Ack string `yaml:"ack"`
}

// Default returns the configuration `culex serve` runs with when given nothing.
func Default() Config {
	return Config{
		LogLevel:  "info",
		LogFormat: "text",
		DataDir:   "./data",
		Listeners: []Listener{
			{URL: "tcp://0.0.0.0:1883"},
			{URL: "ws://0.0.0.0:8083/mqtt"},
		},
		MQTT: MQTT{
			MaxConnections:            0,
			ConnectTimeout:            10 * time.Second,
			MaxKeepAlive:              0,
			MaxPacketSize:             1 << 20,
			MaxConnectPacketSize:      128 << 10,
			ReceiveMaximum:            1024,
			MaxInflight:               1024,
			MaxQueuedMessages:         10000,
			MaxQueuedBytes:            64 << 20,
			MaxSessions:               1000000,
			MaxSessionsPerIdentity:    1000,
			MaxRetainedMessages:       1000000,
			MaxRetainedBytes:          1 << 30,
			QueueOverflow:             "drop_new",
			BridgeMaxQueuedMessages:   1000000,
			BridgeMaxQueuedBytes:      1 << 30,
			MaxSubscriptionsPerClient: 1000,
			MaxTopicLevels:            32,
			MaxClientIDLength:         256,
			MaxTopicAlias:             1024,
			MaxSessionExpiry:          7 * 24 * time.Hour,
			MaxMessageExpiry:          0,
			MaxQoS:                    2,
			RetainAvailable:           true,
			WildcardSubscriptions:     true,
			SharedSubscriptions:       true,
			SubscriptionIdentifiers:   true,
			WriteTimeout:              30 * time.Second,
			ReturnMemoryAfterStorm:    true,
		},
		Auth: Auth{
			AllowAnonymous:   true, // only while no backend is configured
			Backends:         "users",
			SysSuperuserOnly: true,
			ClientIDBinding:  "none",
			V3DeniedPublish:  "drop",
			WatchInterval:    2 * time.Second,
			CacheTTL:         time.Hour,
			RateLimit: AuthRateLimit{PerAddress: 20, PerUsername: 10, Window: time.Minute, Ban: 5 * time.Minute,
				MaxDelay: 5 * time.Second},
			HTTP: AuthHTTP{Timeout: 2 * time.Second, OnError: "deny", CacheTTL: 30 * time.Second},
			JWT:  AuthJWT{JWKSRefresh: 10 * time.Minute, UsernameClaim: "username", Leeway: 30 * time.Second},
			Cert: AuthCert{UsernameFrom: "cn"},
		},
		Store:           Store{MaxBatchDelay: 2 * time.Millisecond},
		SysInterval:     10 * time.Second,
		ShutdownTimeout: 10 * time.Second,
		Kafka: Kafka{
			ClientID:           "culex",
			ProduceTimeout:     30 * time.Second,
			MaxBufferedRecords: 100000,
			SASL:               KafkaSASL{Mechanism: "none"},
			Routes:             []KafkaRoute{},
			Commands:           []KafkaCommand{},
			Spool:              KafkaSpool{MaxBytes: 1 << 30, SegmentBytes: 64 << 20},
			Source: KafkaSource{ClientID: "culex-bridge", ShareGroup: "culex-bridge",
				SessionExpiry: time.Hour, ReceiveMaximum: 1024},
			GroupSessionTimeout: 45 * time.Second,
		},
		Admin:   DefaultAdmin(),
		Cluster: defaultCluster(),
	}
}
