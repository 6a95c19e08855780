package bench

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// A sequence file (sub --seq-file) carries the subscribers' sequence
// state from one run to the next, so that two runs with the same client
// ids, one before and one after a reconnect, are checked as one: a
// message the first run missed and the second got is not lost, one both
// got is a duplicate.

// seqFile is the file's content: per subscriber client id, per
// publisher id, its stream.
type seqFile struct {
	Subs map[string]map[uint32]streamState `json:"subs"`
}

// streamState is a stream as stored.
type streamState struct {
	Max       uint64      `json:"max"`
	Unique    int64       `json:"unique"`
	Dups      int64       `json:"dups,omitempty"`
	Reordered int64       `json:"reordered,omitempty"`
	Gaps      [][2]uint64 `json:"gaps,omitempty"` // [lo, hi)
}

// loadSeqFile gives each subscriber the streams an earlier run saved
// under its client id; a missing file is an empty one.
func (r *runner) loadSeqFile(path string) error {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var f seqFile
	if err := json.Unmarshal(b, &f); err != nil {
		return fmt.Errorf("--seq-file %s: %w", path, err)
	}
	for _, c := range r.subs {
		for pub, st := range f.Subs[c.id] {
			s := &stream{max: st.Max, unique: st.Unique, dups: st.Dups, reordered: st.Reordered}
			for _, g := range st.Gaps {
				s.gaps = append(s.gaps, seqRange{g[0], g[1]})
			}
			c.streams[pub] = s
			c.uniq.Add(st.Unique)
		}
	}
	return nil
}

// saveSeqFile writes every subscriber's streams; call it once the
// readers have stopped.
func (r *runner) saveSeqFile(path string) error {
	f := seqFile{Subs: map[string]map[uint32]streamState{}}
	for _, c := range r.subs {
		if len(c.streams) == 0 {
			continue
		}
		m := map[uint32]streamState{}
		for pub, s := range c.streams {
			st := streamState{Max: s.max, Unique: s.unique, Dups: s.dups, Reordered: s.reordered}
			for _, g := range s.gaps {
				st.Gaps = append(st.Gaps, [2]uint64{g.lo, g.hi})
			}
			m[pub] = st
		}
		f.Subs[c.id] = m
	}
	b, err := json.Marshal(&f)
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}
