package packet

import (
	"bytes"
	"slices"
	"strings"
)

// PropID is an MQTT 5 property identifier [MQTT-2.2.2.2].
type PropID byte

// Property identifiers.
const (
	PropPayloadFormat        PropID = 0x01
	PropMessageExpiry        PropID = 0x02
	PropContentType          PropID = 0x03
	PropResponseTopic        PropID = 0x08
	PropCorrelationData      PropID = 0x09
	PropSubscriptionID       PropID = 0x0B
	PropSessionExpiry        PropID = 0x11
	PropAssignedClientID     PropID = 0x12
	PropServerKeepAlive      PropID = 0x13
	PropAuthMethod           PropID = 0x15
	PropAuthData             PropID = 0x16
	PropRequestProblemInfo   PropID = 0x17
	PropWillDelay            PropID = 0x18
	PropRequestResponseInfo  PropID = 0x19
	PropResponseInfo         PropID = 0x1A
	PropServerReference      PropID = 0x1C
	PropReasonString         PropID = 0x1F
	PropReceiveMaximum       PropID = 0x21
	PropTopicAliasMaximum    PropID = 0x22
	PropTopicAlias           PropID = 0x23
	PropMaximumQoS           PropID = 0x24
	PropRetainAvailable      PropID = 0x25
	PropUser                 PropID = 0x26
	PropMaximumPacketSize    PropID = 0x27
	PropWildcardSubAvailable PropID = 0x28
	PropSubIDAvailable       PropID = 0x29
	PropSharedSubAvailable   PropID = 0x2A
)

// UserProperty is one User Property name/value pair; order and duplicates are
// significant [MQTT-3.3.2-18].
type UserProperty struct {
	Key, Value string
}

// Properties holds every MQTT 5 property. Scalar properties are present when
// their bit is set in Present (see Has and Set); strings, byte slices and
// lists are present when non-empty (CorrelationData and AuthData may be
// present and empty: their bit is set too).
type Properties struct {
	Present uint64 // bit 1<<PropID for each present property

	PayloadFormat        byte
	MessageExpiry        uint32
	ContentType          string
	ResponseTopic        string
	CorrelationData      []byte
	SubscriptionIDs      []uint32 // PUBLISH may carry several; SUBSCRIBE at most one
	SessionExpiry        uint32
	AssignedClientID     string
	ServerKeepAlive      uint16
	AuthMethod           string
	AuthData             []byte
	RequestProblemInfo   byte
	WillDelay            uint32
	RequestResponseInfo  byte
	ResponseInfo         string
	ServerReference      string
	ReasonString         string
	ReceiveMaximum       uint16
	TopicAliasMaximum    uint16
	TopicAlias           uint16
	MaximumQoS           byte
	RetainAvailable      byte
	User                 []UserProperty
	MaximumPacketSize    uint32
	WildcardSubAvailable byte
	SubIDAvailable       byte
	SharedSubAvailable   byte
}

// Has reports whether property id is present.
func (p *Properties) Has(id PropID) bool { return p.Present&(1<<id) != 0 }

// Set marks property id present; the caller sets the field's value.
func (p *Properties) Set(id PropID) { p.Present |= 1 << id }

// Clear marks property id absent.
func (p *Properties) Clear(id PropID) { p.Present &^= 1 << id }

// Clone returns a deep copy of p: decoded properties alias the packet's
// body, which a copy lets go of.
func (p *Properties) Clone() Properties {
	q := *p
	for _, s := range []*string{&q.ContentType, &q.ResponseTopic, &q.AssignedClientID, &q.AuthMethod,
		&q.ResponseInfo, &q.ServerReference, &q.ReasonString} {
		*s = strings.Clone(*s)
	}
	q.CorrelationData = bytes.Clone(p.CorrelationData)
	q.AuthData = bytes.Clone(p.AuthData)
	q.SubscriptionIDs = slices.Clone(p.SubscriptionIDs)
	if p.User != nil {
		q.User = make([]UserProperty, len(p.User))
		for i, u := range p.User {
			q.User[i] = UserProperty{strings.Clone(u.Key), strings.Clone(u.Value)}
		}
	}
	return q
}
