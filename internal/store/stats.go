package store

import (
	"math/bits"
	"sync/atomic"
	"time"
)

// BatchBuckets is the number of buckets of Stats.BatchSizes.
const BatchBuckets = 16

// Stats counts a Bolt store's commits since it was opened.
type Stats struct {
	Commits       uint64        // successful write transactions
	FailedCommits uint64        // write transactions that failed and were rolled back
	Applies       uint64        // Apply calls in successful commits
	Ops           uint64        // ops in successful commits
	Bytes         uint64        // key and value bytes of the ops in successful commits
	CommitTime    time.Duration // total time spent in successful commits, fsyncs included
	LastCommit    time.Duration // duration of the latest commit, failed or not
	MaxBatch      uint64        // most Apply calls in one commit
	// BatchSizes[i] counts the commits of 2^i to 2^(i+1)-1 Apply calls; the
	// last bucket counts every larger batch too.
	BatchSizes [BatchBuckets]uint64
}

// AvgBatch is the mean number of Apply calls per successful commit.
func (s Stats) AvgBatch() float64 {
	if s.Commits == 0 {
		return 0
	}
	return float64(s.Applies) / float64(s.Commits)
}

// AvgCommit is the mean duration of a successful commit.
func (s Stats) AvgCommit() time.Duration {
	if s.Commits == 0 {
		return 0
	}
	return s.CommitTime / time.Duration(s.Commits)
}

// boltStats are the live counters behind Stats. Only the committer writes
// them; Stats reads them from any goroutine.
type boltStats struct {
	commits, failedCommits atomic.Uint64
	applies, ops, bytes    atomic.Uint64
	commitTime, lastCommit atomic.Int64
	maxBatch               atomic.Uint64
	batchSizes             [BatchBuckets]atomic.Uint64
}

// committed records a successful commit.
func (s *boltStats) committed(applies, ops, bytes uint64, took time.Duration) {
	s.commits.Add(1)
	s.applies.Add(applies)
	s.ops.Add(ops)
	s.bytes.Add(bytes)
	s.commitTime.Add(int64(took))
	s.lastCommit.Store(int64(took))
	if applies > s.maxBatch.Load() {
		s.maxBatch.Store(applies)
	}
	if applies > 0 {
		s.batchSizes[min(bits.Len64(applies)-1, BatchBuckets-1)].Add(1)
	}
}

// failed records a failed commit.
func (s *boltStats) failed(took time.Duration) {
	s.failedCommits.Add(1)
	s.lastCommit.Store(int64(took))
}

// Stats returns the store's counters. Each counter is read atomically, but
// not all at the same instant.
func (b *Bolt) Stats() Stats {
	s := &b.stats
	st := Stats{
		Commits:       s.commits.Load(),
		FailedCommits: s.failedCommits.Load(),
		Applies:       s.applies.Load(),
		Ops:           s.ops.Load(),
		Bytes:         s.bytes.Load(),
		CommitTime:    time.Duration(s.commitTime.Load()),
		LastCommit:    time.Duration(s.lastCommit.Load()),
		MaxBatch:      s.maxBatch.Load(),
	}
	for i := range s.batchSizes {
		st.BatchSizes[i] = s.batchSizes[i].Load()
	}
	return st
}
