package kafka

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/culexmq/culex/internal/atomicfile"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Spool entry on disk: u32 payload length, u32 CRC-32C of the payload,
// payload. Payload: uvarint route index, varint timestamp (Unix ns),
// topic, key (uvarint length+1; 0 is a nil key), value, uvarint header
// count, then each header's key and value; strings and byte slices are
// uvarint length then bytes.

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// spoolEntry is one decoded entry.
type spoolEntry struct {
	route int
	rec   *kgo.Record
	size  int64 // bytes on disk
}

func encodeEntry(dst []byte, route int, r *kgo.Record) []byte {
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0, 0, 0, 0, 0)
	dst = binary.AppendUvarint(dst, uint64(route))
	dst = binary.AppendVarint(dst, r.Timestamp.UnixNano())
	dst = appendBytes(dst, []byte(r.Topic))
	if r.Key == nil {
		dst = binary.AppendUvarint(dst, 0)
	} else {
		dst = binary.AppendUvarint(dst, uint64(len(r.Key))+1)
		dst = append(dst, r.Key...)
	}
	dst = appendBytes(dst, r.Value)
	dst = binary.AppendUvarint(dst, uint64(len(r.Headers)))
	for _, h := range r.Headers {
		dst = appendBytes(dst, []byte(h.Key))
		dst = appendBytes(dst, h.Value)
	}
	payload := dst[start+8:]
	binary.LittleEndian.PutUint32(dst[start:], uint32(len(payload)))
	binary.LittleEndian.PutUint32(dst[start+4:], crc32.Checksum(payload, crcTable))
	return dst
}

func appendBytes(dst, b []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(b)))
	return append(dst, b...)
}

var errTorn = errors.New("torn or corrupt spool entry")

// readEntry reads one entry; io.EOF at a clean end, errTorn for a partial
// or corrupt entry (an unacknowledged write cut by a crash).
func readEntry(r *bufio.Reader) (*spoolEntry, error) {
	var hdr [8]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		if err == io.EOF {
			return nil, io.EOF
		}
		return nil, errTorn
	}
	n := binary.LittleEndian.Uint32(hdr[:])
	if n > 256<<20 {
		return nil, errTorn
	}
	payload := make([]byte, n)
	if _, err := io.ReadFull(r, payload); err != nil {
		return nil, errTorn
	}
	if crc32.Checksum(payload, crcTable) != binary.LittleEndian.Uint32(hdr[4:]) {
		return nil, errTorn
	}
	e, err := decodePayload(payload)
	if err != nil {
		return nil, errTorn
	}
	e.size = int64(n) + 8
	return e, nil
}

func decodePayload(p []byte) (*spoolEntry, error) {
	d := decoder{p: p}
	e := &spoolEntry{route: int(d.uvarint()), rec: &kgo.Record{}}
	e.rec.Timestamp = time.Unix(0, d.varint())
	e.rec.Topic = string(d.bytes())
	if k := d.uvarint(); k > 0 {
		e.rec.Key = d.take(int(k - 1))
	}
	e.rec.Value = d.bytes()
	nh := d.uvarint()
	if nh > uint64(len(p)) {
		return nil, errTorn
	}
	for range nh {
		k := string(d.bytes())
		e.rec.Headers = append(e.rec.Headers, kgo.RecordHeader{Key: k, Value: d.bytes()})
	}
	if d.err != nil {
		return nil, d.err
	}
	return e, nil
}

type decoder struct {
	p   []byte
	err error
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.p)
	if n <= 0 {
		d.err, d.p = errTorn, nil
		return 0
	}
	d.p = d.p[n:]
	return v
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.p)
	if n <= 0 {
		d.err, d.p = errTorn, nil
		return 0
	}
	d.p = d.p[n:]
	return v
}

func (d *decoder) take(n int) []byte {
	if n < 0 || n > len(d.p) {
		d.err, d.p = errTorn, nil
		return nil
	}
	b := d.p[:n:n]
	d.p = d.p[n:]
	return b
}

func (d *decoder) bytes() []byte { return d.take(int(d.uvarint())) }

// segment is one spool file; first is the sequence number of its first entry.
type segment struct {
	first uint64
	path  string
}

func segPath(dir string, first uint64) string {
	return filepath.Join(dir, fmt.Sprintf("%020d.seg", first))
}

// listSegments returns dir's segments in order.
func listSegments(dir string) ([]segment, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var segs []segment
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), ".seg")
		if !ok {
			continue
		}
		first, err := strconv.ParseUint(name, 10, 64)
		if err != nil {
			continue
		}
		segs = append(segs, segment{first: first, path: filepath.Join(dir, e.Name())})
	}
	sort.Slice(segs, func(i, j int) bool { return segs[i].first < segs[j].first })
	return segs, nil
}

// checkpoint files hold the sequence number below which every entry is in
// Kafka. It is written without fsync: a stale checkpoint after a crash
// only re-sends entries (duplicates), never skips one.
func readCheckpoint(dir string) uint64 {
	b, err := os.ReadFile(filepath.Join(dir, "checkpoint"))
	if err != nil || len(b) != 8 {
		return 0
	}
	return binary.LittleEndian.Uint64(b)
}

func writeCheckpoint(dir string, seq uint64) error {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], seq)
	return atomicfile.WriteFile(filepath.Join(dir, "checkpoint"), b[:], 0o644)
}
