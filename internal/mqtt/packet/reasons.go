package packet

import (
	"fmt"
	"strings"
)

// validReasons lists, per packet type, the MQTT 5 reason codes it may carry
// (MQTT 5.0 sections 3.2.2.2, 3.4.2.1 to 3.7.2.1, 3.9.3, 3.11.3, 3.14.2.1 and
// 3.15.2.1).
var validReasons = [16]string{
	CONNACK:  "\x00\x80\x81\x82\x83\x84\x85\x86\x87\x88\x89\x8a\x8c\x90\x95\x97\x99\x9a\x9b\x9c\x9d\x9f",
	PUBACK:   "\x00\x10\x80\x83\x87\x90\x91\x97\x99",
	PUBREC:   "\x00\x10\x80\x83\x87\x90\x91\x97\x99",
	PUBREL:   "\x00\x92",
	PUBCOMP:  "\x00\x92",
	SUBACK:   "\x00\x01\x02\x80\x83\x87\x8f\x91\x97\x9e\xa1\xa2",
	UNSUBACK: "\x00\x11\x80\x83\x87\x8f\x91",
	DISCONNECT: "\x00\x04\x80\x81\x82\x83\x87\x89\x8b\x8d\x8e\x8f\x90\x93\x94\x95\x96\x97\x98\x99\x9a" +
		"\x9b\x9c\x9d\x9e\x9f\xa0\xa1\xa2",
	AUTH: "\x00\x18\x19",
}

// ValidReason reports whether reason code c may appear in a packet of type t
// for version v. Before version 5 only CONNACK (return codes 0 to 5) and
// SUBACK (granted QoS or 0x80) carry one.
func ValidReason(t Type, c byte, v Version) bool {
	if v != V5 {
		switch t {
		case CONNACK:
			return c <= 5
		case SUBACK:
			return c <= 2 || c == 0x80
		}
		return c == 0
	}
	return int(t) < len(validReasons) && strings.IndexByte(validReasons[t], c) >= 0
}

// checkReason returns ErrProtocolError for a reason code not valid in t.
func checkReason(t Type, c byte, v Version) error {
	if !ValidReason(t, c, v) {
		if v != V5 {
			return malformed("%v: invalid return code 0x%02x", t, c)
		}
		return protocolError("%v: invalid reason code 0x%02x", t, c)
	}
	return nil
}

// codes is every reason code by value; where a value has packet-specific
// names the generic one wins (Success, GrantedQoS1, GrantedQoS2,
// DisconnectWithWill).
var codes [256]Code

func init() {
	for i := range codes {
		codes[i] = Code{byte(i), fmt.Sprintf("reason code 0x%02x", i)}
	}
	for _, c := range []Code{
		Success, GrantedQoS1, GrantedQoS2, DisconnectWithWill, NoMatchingSubscribers,
		NoSubscriptionExisted, ContinueAuthentication, ReAuthenticate, ErrUnspecified,
		ErrMalformedPacket, ErrProtocolError, ErrImplementationSpecific,
		ErrUnsupportedProtocolVersion, ErrClientIdentifierNotValid, ErrBadUsernameOrPassword,
		ErrNotAuthorized, ErrServerUnavailable, ErrServerBusy, ErrBanned, ErrServerShuttingDown,
		ErrBadAuthenticationMethod, ErrKeepAliveTimeout, ErrSessionTakenOver,
		ErrTopicFilterInvalid, ErrTopicNameInvalid, ErrPacketIDInUse, ErrPacketIDNotFound,
		ErrReceiveMaximumExceeded, ErrTopicAliasInvalid, ErrPacketTooLarge,
		ErrMessageRateTooHigh, ErrQuotaExceeded, ErrAdministrativeAction,
		ErrPayloadFormatInvalid, ErrRetainNotSupported, ErrQoSNotSupported,
		ErrUseAnotherServer, ErrServerMoved, ErrSharedSubscriptionsNotSupported,
		ErrConnectionRateExceeded, ErrMaximumConnectTime, ErrSubscriptionIDsNotSupported,
		ErrWildcardSubscriptionsNotSupported,
	} {
		codes[c.Value] = c
	}
}

// CodeOf returns the MQTT 5 reason code with value b, for logging a code
// received from a peer. Unassigned values get a "reason code 0xNN" reason.
func CodeOf(b byte) Code { return codes[b] }

// CodeFor is CodeOf with the packet-specific names: 0x00 is
// NormalDisconnection in DISCONNECT and GrantedQoS0 in SUBACK.
func CodeFor(t Type, b byte) Code {
	if b == 0 {
		switch t {
		case DISCONNECT:
			return NormalDisconnection
		case SUBACK:
			return GrantedQoS0
		}
	}
	return codes[b]
}

// v3ConnackCodes maps MQTT 5 CONNACK reason codes to 3.1.1 return codes.
var v3ConnackCodes = map[byte]Code{
	Success.Value:                       V3Accepted,
	ErrUnsupportedProtocolVersion.Value: V3UnacceptableProtocolVersion,
	ErrClientIdentifierNotValid.Value:   V3IdentifierRejected,
	ErrServerUnavailable.Value:          V3ServerUnavailable,
	ErrServerBusy.Value:                 V3ServerUnavailable,
	ErrServerShuttingDown.Value:         V3ServerUnavailable,
	ErrUseAnotherServer.Value:           V3ServerUnavailable,
	ErrServerMoved.Value:                V3ServerUnavailable,
	ErrBadUsernameOrPassword.Value:      V3BadUsernameOrPassword,
	ErrBadAuthenticationMethod.Value:    V3BadUsernameOrPassword,
	ErrNotAuthorized.Value:              V3NotAuthorized,
	ErrBanned.Value:                     V3NotAuthorized,
}

// V3ConnackCode maps an MQTT 5 CONNACK reason code to the nearest 3.1.1
// return code [MQTT-3.2.2.3]; codes with no counterpart map to
// V3ServerUnavailable, which 3.1.1 clients treat as "try again later".
func V3ConnackCode(c Code) Code {
	if v3, ok := v3ConnackCodes[c.Value]; ok {
		return v3
	}
	return V3ServerUnavailable
}
