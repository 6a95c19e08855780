package broker

import (
	"bytes"
	"net"
	"testing"
)

// recordWriter records each Write it gets, as a TLS connection makes a
// record of each.
type recordWriter struct{ writes [][]byte }

func (w *recordWriter) Write(b []byte) (int, error) {
	w.writes = append(w.writes, bytes.Clone(b))
	return len(b), nil
}

// writeGathered makes one Write of a queue of small packets, and Writes of
// at most a record's worth (tlsChunk) of a large queue, in order.
func TestWriteGathered(t *testing.T) {
	small := net.Buffers{[]byte{0x30, 5}, []byte("a/b"), []byte("xy"), []byte{0x40, 2, 0, 1}}
	var w recordWriter
	want := bytes.Join(small, nil)
	bufs := append(net.Buffers(nil), small...)
	if n, err := writeGathered(&w, &bufs); err != nil || n != int64(len(want)) || len(bufs) != 0 {
		t.Fatalf("writeGathered = %d, %v, %d slices left; want %d, nil, 0", n, err, len(bufs), len(want))
	}
	if len(w.writes) != 1 || !bytes.Equal(w.writes[0], want) {
		t.Fatalf("writes %q, want one write %q", w.writes, want)
	}

	var large net.Buffers
	for i := range 40 {
		large = append(large, []byte{byte(i)}, bytes.Repeat([]byte{byte(i)}, 1500))
	}
	want = bytes.Join(large, nil)
	w = recordWriter{}
	if n, err := writeGathered(&w, &large); err != nil || n != int64(len(want)) || len(large) != 0 {
		t.Fatalf("writeGathered = %d, %v, %d slices left; want %d, nil, 0", n, err, len(large), len(want))
	}
	if got := bytes.Join(w.writes, nil); !bytes.Equal(got, want) {
		t.Fatal("the writes are not the queue in order")
	}
	for i, b := range w.writes {
		if len(b) > tlsChunk || (i < len(w.writes)-1 && len(b) != tlsChunk) {
			t.Fatalf("write %d of %d is %d bytes; want full records of %d", i, len(w.writes), len(b), tlsChunk)
		}
	}
}
