package broker

import "time"

// Backpressure on QoS 1/2 publishers. The broker acknowledges an inbound
// QoS 1/2 PUBLISH once it is routed, so without more a publisher with a
// large window (Receive Maximum 1024, or 65535 for a v5 broker) outruns a
// subscriber and its session queue overflows (queue_full): measured with
// `culex bench run --pubs 10 --subs 1 --qos 1 --inflight 1000`, 80% of the
// messages were dropped. Instead, a routing pass that queues a copy for a
// connected session whose queue is at least half full holds the
// publisher's acknowledgement until that queue is down to a quarter: the
// publisher's own window then stops it, and nothing is dropped.
//
// Holds never block a goroutine (they are counts in the pass's storeWait)
// and are bounded: a session that makes no progress for holdMax releases
// them and is not held on again until its queue drains (stalled), so a
// subscriber that stops reading delays publishers once, then falls back to
// the overflow policy. A session never holds its own publisher, nor a
// publisher while its own reader is throttled (see throttle): two 3.1.1
// clients publishing to each other could otherwise wait on each other.

// holdMax is the longest a session holds publishers' acknowledgements
// without its queue draining.
const holdMax = time.Second

// QoS 0 publishers have no acknowledgement to hold. A cluster route whose
// backlog grows (CongestedRoute) holds them instead by making their
// reader wait before it reads on: then TCP slows the client down, rather
// than the node reading messages as fast as they come only to drop them
// at the full route (measured in a three-node cluster on two cores, fan-in
// at QoS 0: the sending node spent a whole core reading and dropping 70%
// of what it read, and the receiving node, starved of CPU, delivered 0.7
// to 0.9 M msg/s; holding the publishers, 1.2 to 1.4 M msg/s, none lost).

// roomWaitMax bounds one wait of a QoS 0 publisher's reader for a
// congested route: the route's Congested is asked again after it.
const roomWaitMax = 100 * time.Millisecond

// waitRoom makes the reader wait until room is closed (the congested route
// it came from has room again), for at most roomWaitMax. Only the reader
// calls it; nil room: no wait.
func (c *conn) waitRoom(room <-chan struct{}) {
	if room == nil {
		return
	}
	c.sock.Block(func() {
		t := time.NewTimer(roomWaitMax)
		defer t.Stop()
		select {
		case <-room:
		case <-t.C:
		}
	})
}

// holdFrom is the queue length from which a session holds publishers: a
// sixteenth of MaxQueuedMessages, so that a burst does not wait on a
// subscriber's acknowledgements but publishers whose windows sum to less
// than the rest of the queue lose nothing.
func holdFrom(maxQueued int) int { return max(maxQueued/16, 1) }

// holdLocked holds the acknowledgement of w's publish on s's queue when it
// is filling up. c is s's connection (nil: offline).
func (s *session) holdLocked(c *conn, w *storeWait) {
	max := s.b.cfg.MaxQueuedMessages
	if c == nil || w == nil || w.pending() == nil || max <= 0 || s.stalled || s.qlenLocked() < holdFrom(max) {
		return
	}
	pc := w.pending().c
	if pc.sess == s || pc.throttled.Load() {
		return
	}
	if len(s.held) == 0 {
		s.holdTimer = s.b.afterFunc(holdMax, func() { s.holdExpired() })
		if s.holdTimer == nil {
			return // shutting down
		}
	}
	w.n.Add(1)
	s.held = append(s.held, w)
}

// holdExpired ends a hold that lasted holdMax.
func (s *session) holdExpired() {
	s.mu.Lock()
	s.holdTimer = nil
	if len(s.held) > 0 {
		s.stalled = true
	}
	s.unlock()
}

// unlock releases s.mu, then the held acknowledgements that may go: all of
// them once the queue is down to a quarter, the connection is gone, or the
// hold lasted holdMax.
func (s *session) unlock() {
	var rel []*storeWait
	if len(s.held) > 0 || s.stalled {
		low := s.qlenLocked() < holdFrom(s.b.cfg.MaxQueuedMessages)
		if low {
			s.stalled = false
		}
		if low || s.conn == nil || s.gone || s.stalled {
			rel, s.held = s.held, nil
			if s.holdTimer != nil {
				s.b.stopTimer(s.holdTimer)
				s.holdTimer = nil
			}
		}
	}
	s.mu.Unlock()
	for _, w := range rel {
		w.done(nil)
	}
}

// releaseHolds lets every acknowledgement held on s go (its connection's
// reader is about to wait in throttle and will not read acknowledgements).
func (s *session) releaseHolds() {
	s.mu.Lock()
	rel := s.held
	s.held = nil
	if s.holdTimer != nil {
		s.b.stopTimer(s.holdTimer)
		s.holdTimer = nil
	}
	if len(rel) > 0 {
		s.stalled = true
	}
	s.mu.Unlock()
	for _, w := range rel {
		w.done(nil)
	}
}
