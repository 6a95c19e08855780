package packet

// Code is an MQTT reason code as a Go error: match one with errors.Is, send
// Value to the client, log Reason.
type Code struct {
	Value  byte
	Reason string
}

// Error returns the reason, so that a Code is an error.
func (c Code) Error() string { return c.Reason }

// MQTT 5 reason codes [MQTT-2.4]. Where a value means different things in
// different packets (0x00, 0x01, 0x02, 0x04) the packet-specific names follow.
var (
	Success                              = Code{0x00, "success"}
	NormalDisconnection                  = Code{0x00, "normal disconnection"}
	GrantedQoS0                          = Code{0x00, "granted qos 0"}
	GrantedQoS1                          = Code{0x01, "granted qos 1"}
	GrantedQoS2                          = Code{0x02, "granted qos 2"}
	DisconnectWithWill                   = Code{0x04, "disconnect with will message"}
	NoMatchingSubscribers                = Code{0x10, "no matching subscribers"}
	NoSubscriptionExisted                = Code{0x11, "no subscription existed"}
	ContinueAuthentication               = Code{0x18, "continue authentication"}
	ReAuthenticate                       = Code{0x19, "re-authenticate"}
	ErrUnspecified                       = Code{0x80, "unspecified error"}
	ErrMalformedPacket                   = Code{0x81, "malformed packet"}
	ErrProtocolError                     = Code{0x82, "protocol error"}
	ErrImplementationSpecific            = Code{0x83, "implementation specific error"}
	ErrUnsupportedProtocolVersion        = Code{0x84, "unsupported protocol version"}
	ErrClientIdentifierNotValid          = Code{0x85, "client identifier not valid"}
	ErrBadUsernameOrPassword             = Code{0x86, "bad user name or password"}
	ErrNotAuthorized                     = Code{0x87, "not authorized"}
	ErrServerUnavailable                 = Code{0x88, "server unavailable"}
	ErrServerBusy                        = Code{0x89, "server busy"}
	ErrBanned                            = Code{0x8A, "banned"}
	ErrServerShuttingDown                = Code{0x8B, "server shutting down"}
	ErrBadAuthenticationMethod           = Code{0x8C, "bad authentication method"}
	ErrKeepAliveTimeout                  = Code{0x8D, "keep alive timeout"}
	ErrSessionTakenOver                  = Code{0x8E, "session taken over"}
	ErrTopicFilterInvalid                = Code{0x8F, "topic filter invalid"}
	ErrTopicNameInvalid                  = Code{0x90, "topic name invalid"}
	ErrPacketIDInUse                     = Code{0x91, "packet identifier in use"}
	ErrPacketIDNotFound                  = Code{0x92, "packet identifier not found"}
	ErrReceiveMaximumExceeded            = Code{0x93, "receive maximum exceeded"}
	ErrTopicAliasInvalid                 = Code{0x94, "topic alias invalid"}
	ErrPacketTooLarge                    = Code{0x95, "packet too large"}
	ErrMessageRateTooHigh                = Code{0x96, "message rate too high"}
	ErrQuotaExceeded                     = Code{0x97, "quota exceeded"}
	ErrAdministrativeAction              = Code{0x98, "administrative action"}
	ErrPayloadFormatInvalid              = Code{0x99, "payload format invalid"}
	ErrRetainNotSupported                = Code{0x9A, "retain not supported"}
	ErrQoSNotSupported                   = Code{0x9B, "qos not supported"}
	ErrUseAnotherServer                  = Code{0x9C, "use another server"}
	ErrServerMoved                       = Code{0x9D, "server moved"}
	ErrSharedSubscriptionsNotSupported   = Code{0x9E, "shared subscriptions not supported"}
	ErrConnectionRateExceeded            = Code{0x9F, "connection rate exceeded"}
	ErrMaximumConnectTime                = Code{0xA0, "maximum connect time"}
	ErrSubscriptionIDsNotSupported       = Code{0xA1, "subscription identifiers not supported"}
	ErrWildcardSubscriptionsNotSupported = Code{0xA2, "wildcard subscriptions not supported"}
)

// MQTT 3.1.1 CONNACK return codes [MQTT-3.2.2.3].
var (
	V3Accepted                    = Code{0x00, "connection accepted"}
	V3UnacceptableProtocolVersion = Code{0x01, "unacceptable protocol version"}
	V3IdentifierRejected          = Code{0x02, "identifier rejected"}
	V3ServerUnavailable           = Code{0x03, "server unavailable"}
	V3BadUsernameOrPassword       = Code{0x04, "bad user name or password"}
	V3NotAuthorized               = Code{0x05, "not authorized"}
)
