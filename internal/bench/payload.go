package bench

import (
	"encoding/binary"
	"time"
)

// headerLen is the size of the bench header at the start of every payload:
// publisher id (uint32), sequence number (uint64) and send time in Unix
// nanoseconds (int64), all big-endian. Payloads shorter than this carry no
// header and are counted but not timed or sequenced.
const headerLen = 4 + 8 + 8

// stampPayload writes the header into p, which must be at least headerLen long.
func stampPayload(p []byte, pub uint32, seq uint64, now time.Time) {
	binary.BigEndian.PutUint32(p[0:4], pub)
	binary.BigEndian.PutUint64(p[4:12], seq)
	binary.BigEndian.PutUint64(p[12:20], uint64(now.UnixNano()))
}

// readStamp parses the header; ok is false for a payload too short to hold one.
func readStamp(p []byte) (pub uint32, seq uint64, sent int64, ok bool) {
	if len(p) < headerLen {
		return 0, 0, 0, false
	}
	return binary.BigEndian.Uint32(p[0:4]), binary.BigEndian.Uint64(p[4:12]),
		int64(binary.BigEndian.Uint64(p[12:20])), true
}

// newPayload returns a payload of size bytes filled with a printable pattern
// after the header, so a broker cannot compress it away.
func newPayload(size int) []byte {
	p := make([]byte, size)
	for i := headerLen; i < size; i++ {
		p[i] = 'a' + byte(i%26)
	}
	return p
}
