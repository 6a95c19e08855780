package cluster

import (
	"encoding/binary"
	"errors"
	"time"
	"unsafe"

	"github.com/culexmq/culex/internal/broker"
	"github.com/culexmq/culex/internal/mqtt/packet"
)

// The body of a forwarded message (subject <prefix>msg.<node>):
//
//	version  byte (1; 2: the same for a message the publisher's node
//	         wrote to the SessionStore, Message.Stored)
//	flags    byte: QoS (bits 0-1), retain (2), expiry (3), props (4),
//	         keep (5: queued copies are not evicted, see Message.Keep),
//	         share (6)
//	group, filter  strings (flag 6): the shared subscription it is for
//	seq      uvarint: the sender's sequence for this receiver (0 for QoS 0)
//	sender   string (uvarint length, bytes): the sending node
//	(group and filter here with flag 6)
//	epoch, id  uvarints (flag 7): a held message's name, the same in
//	         every send of it (the sender's run and a number of that run):
//	         the receiver accepts it once
//	expiry   uvarint, nanoseconds left (flag 3): counted down across the hop
//	origin   string: the publishing client's id
//	topic    string
//	props    (flag 4): present bits uvarint, payload format byte,
//	         content type, response topic, correlation data, user count
//	         and key/value pairs, all strings
//	payload  the rest
const (
	wireVersion = 1
	wireStored  = 2 // wireVersion of a Stored message
)

const (
	flagRetain = 1 << 2
	flagExpiry = 1 << 3
	flagProps  = 1 << 4
	flagKeep   = 1 << 5 // AllOrNothing or Keep on the publishing node
	flagShare  = 1 << 6 // for one shared subscription: group and filter follow the sender
	flagOnce   = 1 << 7 // a held message, sent again until accepted: its onceID follows
)

// onceID names a message a node holds for another and may send it more
// than once (Message.Hold): the sending node's run (epoch) and a number
// within it. id 0: none.
type onceID struct{ epoch, id uint64 }

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// encodeMsg appends m's wire form, sent at QoS qos, to b.
func encodeMsg(b []byte, m *broker.Message, qos byte, seq uint64, sender string, now int64, share *broker.Share, once onceID) []byte {
	flags := qos & 3
	if m.Retain {
		flags |= flagRetain
	}
	if m.Expiry != 0 {
		flags |= flagExpiry
	}
	p := m.Properties()
	if p.Present != 0 {
		flags |= flagProps
	}
	if m.Keep || m.AllOrNothing {
		flags |= flagKeep
	}
	if share != nil {
		flags |= flagShare
	}
	if once.id != 0 {
		flags |= flagOnce
	}
	v := byte(wireVersion)
	if m.Stored {
		v = wireStored
	}
	b = append(b, v, flags)
	b = binary.AppendUvarint(b, seq)
	b = appendString(b, sender)
	if share != nil {
		b = appendString(b, share.Group)
		b = appendString(b, share.Filter)
	}
	if once.id != 0 {
		b = binary.AppendUvarint(b, once.epoch)
		b = binary.AppendUvarint(b, once.id)
	}
	if m.Expiry != 0 {
		b = binary.AppendUvarint(b, uint64(max(m.Expiry-now, 1)))
	}
	b = appendString(b, m.Origin)
	b = appendString(b, m.Topic)
	if p.Present != 0 {
		b = binary.AppendUvarint(b, p.Present)
		b = append(b, p.PayloadFormat)
		b = appendString(b, p.ContentType)
		b = appendString(b, p.ResponseTopic)
		b = binary.AppendUvarint(b, uint64(len(p.CorrelationData)))
		b = append(b, p.CorrelationData...)
		b = binary.AppendUvarint(b, uint64(len(p.User)))
		for _, u := range p.User {
			b = appendString(b, u.Key)
			b = appendString(b, u.Value)
		}
	}
	return append(b, m.Payload...)
}

var errWire = errors.New("cluster: malformed forwarded message")

type reader struct {
	b   []byte
	err error
}

func (r *reader) uvarint() uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err, r.b = errWire, nil
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) bytes() []byte {
	n := r.uvarint()
	if n > uint64(len(r.b)) {
		r.err, r.b = errWire, nil
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

// string aliases the reader's buffer: decodeMsg's callers give it one
// the message keeps (a frame's own copy), and a string of it costs no
// allocation.
func (r *reader) string() string {
	b := r.bytes()
	return unsafe.String(unsafe.SliceData(b), len(b))
}

func (r *reader) byte() byte {
	if len(r.b) == 0 {
		r.err = errWire
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v
}

// decodeMsg parses a forwarded message; its payload and strings alias b.
func decodeMsg(b []byte, now int64) (m *broker.Message, seq uint64, sender string, once onceID, err error) {
	m = new(broker.Message)
	seq, sender, once, err = decodeMsgTo(m, b, now)
	if err != nil {
		return nil, 0, "", once, err
	}
	return m, seq, sender, once, nil
}

// decodeMsgTo is decodeMsg into m, zero, which the caller allocated
// (with what else the message needs): only the fields the frame sets are
// written, not the whole Message again.
func decodeMsgTo(m *broker.Message, b []byte, now int64) (seq uint64, sender string, once onceID, err error) {
	r := &reader{b: b}
	v := r.byte()
	if v != wireVersion && v != wireStored {
		return 0, "", once, errWire
	}
	flags := r.byte()
	m.QoS, m.Retain, m.Keep, m.Stored = flags&3, flags&flagRetain != 0, flags&flagKeep != 0, v == wireStored
	m.Local, m.Forwarded = true, true
	seq = r.uvarint()
	sender = r.string()
	if flags&flagShare != 0 {
		m.Share = &broker.Share{Group: r.string(), Filter: r.string()}
	}
	if flags&flagOnce != 0 {
		once.epoch = r.uvarint()
		once.id = r.uvarint()
	}
	if flags&flagExpiry != 0 {
		m.Expiry = now + int64(min(r.uvarint(), uint64(100*365*24*time.Hour)))
	}
	m.Origin = r.string()
	m.Topic = r.string()
	if flags&flagProps != 0 {
		p := new(packet.Properties)
		m.Props = p
		p.Present = r.uvarint()
		p.PayloadFormat = r.byte()
		p.ContentType = r.string()
		p.ResponseTopic = r.string()
		if cd := r.bytes(); len(cd) > 0 || p.Has(packet.PropCorrelationData) {
			p.CorrelationData = cd
		}
		n := r.uvarint()
		if n > uint64(len(r.b)) {
			return 0, "", once, errWire
		}
		for range n {
			p.User = append(p.User, packet.UserProperty{Key: r.string(), Value: r.string()})
		}
	}
	if r.err != nil || m.QoS > 2 {
		return 0, "", once, errWire
	}
	m.Payload = r.b
	return seq, sender, once, nil
}

// The body of an acknowledgement batch (subject <prefix>ack.<sender>):
// the acknowledging node's name, then pairs of seq uvarint and a reason
// byte (0: accepted; otherwise the packet reason code it failed with).
func appendAck(b []byte, seq uint64, code byte) []byte {
	b = binary.AppendUvarint(b, seq)
	return append(b, code)
}

// frameSeq is the sequence of a forwarded message's body (0: none, or
// malformed).
func frameSeq(b []byte) uint64 {
	if len(b) < 3 {
		return 0
	}
	seq, n := binary.Uvarint(b[2:])
	if n <= 0 {
		return 0
	}
	return seq
}
