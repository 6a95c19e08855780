package bench

import "sort"

// stream tracks the sequence numbers of one (publisher, subscriber) pair.
// Publishers number messages from 1. Every number at or below max is either
// seen or in gaps, so duplicates and reorders are counted exactly; gaps are
// kept as ranges because loss comes in runs.
type stream struct {
	max       uint64
	unique    int64
	dups      int64
	reordered int64
	gaps      []seqRange // sorted, disjoint, all below max
}

// seqRange is the half-open range [lo, hi) of missing sequence numbers.
type seqRange struct{ lo, hi uint64 }

// add records the arrival of sequence number seq (>= 1).
func (s *stream) add(seq uint64) {
	switch {
	case seq == s.max+1:
		s.max = seq
		s.unique++
	case seq > s.max:
		s.gaps = append(s.gaps, seqRange{s.max + 1, seq})
		s.max = seq
		s.unique++
	default:
		if s.fill(seq) {
			s.reordered++
			s.unique++
		} else {
			s.dups++
		}
	}
}

// fill removes seq from the gaps and reports whether it was missing.
func (s *stream) fill(seq uint64) bool {
	i := sort.Search(len(s.gaps), func(i int) bool { return s.gaps[i].hi > seq })
	if i == len(s.gaps) || seq < s.gaps[i].lo {
		return false
	}
	g := s.gaps[i]
	switch {
	case g.lo == seq && g.hi == seq+1:
		s.gaps = append(s.gaps[:i], s.gaps[i+1:]...)
	case g.lo == seq:
		s.gaps[i].lo++
	case g.hi == seq+1:
		s.gaps[i].hi--
	default:
		s.gaps = append(s.gaps, seqRange{})
		copy(s.gaps[i+1:], s.gaps[i:])
		s.gaps[i] = seqRange{g.lo, seq}
		s.gaps[i+1] = seqRange{seq + 1, g.hi}
	}
	return true
}

// missing is the count of numbers below max never seen.
func (s *stream) missing() int64 {
	var n uint64
	for _, g := range s.gaps {
		n += g.hi - g.lo
	}
	return int64(n)
}

// lost is the loss of this stream given that the publisher sent sent
// messages (0 when unknown: only gaps below the highest seen count).
func (s *stream) lost(sent int64) int64 {
	if sent > 0 {
		return max(0, sent-s.unique)
	}
	return s.missing()
}

// SeqStats is the sum of loss, duplicate and reorder counts over streams.
type SeqStats struct {
	Streams   int64
	Unique    int64
	Lost      int64
	Dups      int64
	Reordered int64
}

func (a *SeqStats) addStream(s *stream, sent int64) {
	a.Streams++
	a.Unique += s.unique
	a.Lost += s.lost(sent)
	a.Dups += s.dups
	a.Reordered += s.reordered
}
