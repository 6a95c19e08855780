package netpoll

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// poller is one epoll instance and the goroutine that waits on it for every
// parked connection of an engine (park.go). Descriptors are registered once,
// edge-triggered, so parking costs no system call.
type poller struct {
	wake [2]int // a pipe: a byte on wake[1] stops the loop
	quit chan struct{}
	done chan struct{}
	// onErr is told of every failed wait, before the poller retries it on
	// a new epoll set (recover).
	onErr func(error)
	// fault, when set, fails a wait with what it returns (tests).
	fault func() error

	// mu guards the epoll set (which recover replaces) and the registry.
	mu    sync.Mutex
	set   epollSet
	conns map[int32]*Conn // by descriptor
	gen   uint32

	// Readers run on at most maxFast goroutines that hold a fast slot, and
	// on at most maxActive goroutines in all (those whose reader gave up
	// its slot before a call that may wait, mayBlock); more ready
	// connections wait in backlog, in order, for one of them (see spawn).
	qmu        sync.Mutex
	maxActive  int
	maxFast    int
	stallEvery time.Duration
	active     int
	fast       int
	served     uint64 // readers finished, for the progress check
	backlog    connFIFO
	readers    *workers[*Conn]
}

// epollSet is one epoll descriptor and its handle in the runtime poller.
type epollSet struct {
	epfd int
	file *os.File        // epfd, for the runtime poller
	raw  syscall.RawConn // file's
}

// parkEvents: readable or peer closed, edge-triggered.
const parkEvents = unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLET

// hupEvents say the peer closed or reset the socket. Edge-triggered, the
// close that arrives with data (or before the poller takes the data's
// event) raises no event of its own: the reader must read to the end
// (Conn.hup).
const hupEvents = unix.EPOLLRDHUP | unix.EPOLLHUP | unix.EPOLLERR

// newPoller starts a poller whose readers run within bounds; onErr hears
// of every wait that failed (the poller recovers from it, see recover).
//
// The epoll descriptor is itself waited on through the runtime's network
// poller (an epoll set is readable while it has events), so the loop
// goroutine is woken by the scheduler like any reader, rather than holding
// a thread blocked in epoll_wait that needs a P back before it can run.
func newPoller(bounds Bounds, onErr func(error), fault func() error) (*poller, error) {
	p := &poller{quit: make(chan struct{}), done: make(chan struct{}), conns: make(map[int32]*Conn),
		onErr: onErr, fault: fault,
		maxActive: bounds.All, maxFast: min(bounds.All, bounds.Fast), stallEvery: bounds.Stall}
	p.readers = newWorkers(p.serve)
	if err := unix.Pipe2(p.wake[:], unix.O_NONBLOCK|unix.O_CLOEXEC); err != nil {
		return nil, fmt.Errorf("pipe2: %w", err)
	}
	set, err := p.newSet()
	if err != nil {
		p.closeFDs()
		return nil, err
	}
	p.set = set
	go p.run()
	return p, nil
}

// newSet makes an epoll set that holds the wake pipe.
func (p *poller) newSet() (epollSet, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return epollSet{}, fmt.Errorf("epoll_create1: %w", err)
	}
	s := epollSet{epfd: epfd}
	if err := s.init(p.wake[0]); err != nil {
		s.close()
		return epollSet{}, err
	}
	return s, nil
}

func (s *epollSet) init(wake int) error {
	if err := unix.SetNonblock(s.epfd, true); err != nil {
		return fmt.Errorf("epoll: nonblocking: %w", err)
	}
	s.file = os.NewFile(uintptr(s.epfd), "epoll")
	if err := s.file.SetReadDeadline(time.Time{}); err != nil {
		return fmt.Errorf("epoll: not pollable: %w", err)
	}
	raw, err := s.file.SyscallConn()
	if err != nil {
		return err
	}
	s.raw = raw
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(wake)}
	if err := unix.EpollCtl(s.epfd, unix.EPOLL_CTL_ADD, wake, &ev); err != nil {
		return fmt.Errorf("epoll_ctl: %w", err)
	}
	return nil
}

func (s *epollSet) close() {
	if s.file != nil {
		s.file.Close()
	} else if s.epfd > 0 {
		unix.Close(s.epfd)
	}
}

func (p *poller) closeFDs() {
	unix.Close(p.wake[0])
	unix.Close(p.wake[1])
	p.set.close()
}

// stop ends the loop and waits for it.
func (p *poller) stop() {
	p.readers.stop()
	close(p.quit)
	unix.Write(p.wake[1], []byte{0})
	<-p.done
}

// Backoff between failed waits.
const (
	pollRetryMin = time.Millisecond
	pollRetryMax = time.Second
)

// recover answers a failed wait: it reports err, waits (longer after each
// failure in a row) and replaces the epoll set with a new one holding
// every registered descriptor. A descriptor that is readable when it joins
// the new set raises an event there at once, so no arrival is lost. It
// returns the next backoff, or false when the poller is stopping.
func (p *poller) recover(err error, backoff time.Duration) (time.Duration, bool) {
	p.onErr(err)
	t := time.NewTimer(backoff)
	defer t.Stop()
	select {
	case <-p.quit:
		return 0, false
	case <-t.C:
	}
	next := min(2*backoff, pollRetryMax)
	set, nerr := p.newSet()
	if nerr != nil {
		p.onErr(fmt.Errorf("epoll: recreate: %w", nerr))
		return next, true
	}
	p.mu.Lock()
	old := p.set
	p.set = set
	for fd, c := range p.conns {
		ev := unix.EpollEvent{Events: parkEvents, Fd: fd, Pad: int32(c.gen)}
		c.raw.Control(func(ufd uintptr) { // a closed one is forgotten soon
			unix.EpollCtl(set.epfd, unix.EPOLL_CTL_ADD, int(ufd), &ev)
		})
	}
	p.mu.Unlock()
	old.close()
	return next, true
}

// run waits for events and wakes their connections. The generation in each
// event tells a stale event of a closed descriptor from one of a new
// connection that reuses the number.
func (p *poller) run() {
	defer close(p.done)
	defer p.closeFDs()
	evs := make([]unix.EpollEvent, 256)
	ready := make([]*Conn, 0, len(evs))
	var w stallWatch
	var armed time.Time // the wait's deadline: the next stall check
	stop := false
	var werr error
	// harvest is made once: a closure made at each wait would be
	// allocated at each wait.
	harvest := func(uintptr) bool {
		if p.fault != nil {
			if werr = p.fault(); werr != nil {
				return true
			}
		}
		n, err := epollNow(p.set.epfd, evs)
		if err != nil && err != unix.EINTR {
			werr = err
			return true
		}
		if n <= 0 {
			return false // nothing yet: wait
		}
		p.mu.Lock()
		for _, ev := range evs[:n] {
			if ev.Fd == int32(p.wake[0]) {
				stop = true
			} else if c := p.conns[ev.Fd]; c != nil && c.gen == uint32(ev.Pad) {
				if ev.Events&hupEvents != 0 && !c.hup.Load() {
					c.hup.Store(true) // before the wakeup that hands c to a reader
				}
				ready = append(ready, c)
			}
		}
		p.mu.Unlock()
		return true
	}
	backoff := pollRetryMin
	for !stop {
		// Re-arm only when a check is due sooner, or the need changed:
		// events come far more often than either.
		next := p.stalled(&w)
		if next.IsZero() != armed.IsZero() || (!armed.IsZero() && (next.Before(armed) || !time.Now().Before(armed))) {
			armed = next
			p.set.file.SetReadDeadline(armed)
		}
		err := p.set.raw.Read(harvest)
		if werr == nil && errors.Is(err, os.ErrDeadlineExceeded) {
			err = nil
		}
		if werr != nil || err != nil {
			var ok bool
			if backoff, ok = p.recover(cmp.Or(werr, err), backoff); !ok {
				return
			}
			werr, armed = nil, time.Time{}
			p.set.file.SetReadDeadline(armed)
			continue
		}
		backoff = pollRetryMin
		for _, c := range ready {
			c.wakeup()
		}
		clear(ready)
		ready = ready[:0]
	}
}

// spawn serves c, taken from the parked state, on a reader goroutine, or
// queues it while the bounds are reached.
func (p *poller) spawn(c *Conn) {
	p.qmu.Lock()
	if p.fast >= p.maxFast || p.active >= p.maxActive {
		p.backlog.push(c)
		p.qmu.Unlock()
		return
	}
	p.active++
	p.fast++
	p.qmu.Unlock()
	p.readers.start(c)
}

// serve runs c's reader and then whatever waits in the backlog.
func (p *poller) serve(c *Conn) {
	held := true // a fast slot
	for c != nil {
		c.fast = held
		held = c.loop()
		c = p.next(&held)
	}
}

// next takes the oldest waiting connection if a fast slot is free (the
// caller's own, if it still holds it), or retires the caller.
func (p *poller) next(held *bool) *Conn {
	p.qmu.Lock()
	defer p.qmu.Unlock()
	p.served++
	if *held {
		p.fast--
	}
	if p.backlog.len() == 0 || p.fast >= p.maxFast {
		*held = false
		p.active--
		return nil
	}
	p.fast++
	*held = true
	return p.backlog.pop()
}

// release gives up a reader's fast slot (mayBlock) and hands it to the
// oldest waiting connection, if the bound on all readers allows.
func (p *poller) release() {
	p.qmu.Lock()
	p.fast--
	if p.backlog.len() == 0 || p.active >= p.maxActive {
		p.qmu.Unlock()
		return
	}
	p.active++
	p.fast++
	c := p.backlog.pop()
	p.qmu.Unlock()
	p.readers.start(c)
}

// stallWatch is the poller loop's view of the backlog's progress.
type stallWatch struct {
	served uint64    // p.served when it last moved
	since  time.Time // when that was seen; zero while no backlog waits
}

// stalled returns when to check the backlog next, or zero while none
// waits. If no reader finished for stallEvery while connections waited,
// it starts goroutines for up to maxActive more of them, beyond the bounds.
func (p *poller) stalled(w *stallWatch) time.Time {
	p.qmu.Lock()
	waiting := p.backlog.len()
	if waiting == 0 {
		p.qmu.Unlock()
		w.since = time.Time{}
		return time.Time{}
	}
	now := time.Now()
	var extra []*Conn
	switch {
	case w.since.IsZero() || p.served != w.served:
		w.served, w.since = p.served, now
	case now.Sub(w.since) >= p.stallEvery:
		for range min(waiting, p.maxActive) {
			extra = append(extra, p.backlog.pop())
		}
		p.active += len(extra)
		p.fast += len(extra)
		w.since = now
	}
	p.qmu.Unlock()
	for _, c := range extra {
		p.readers.start(c)
	}
	return w.since.Add(p.stallEvery)
}

// register adds c's descriptor to the epoll set, once.
func (p *poller) register(c *Conn) error {
	var err error
	p.mu.Lock()
	defer p.mu.Unlock()
	cerr := c.raw.Control(func(fd uintptr) {
		p.gen++
		c.gen = p.gen
		p.conns[int32(fd)] = c
		c.added = true
		ev := unix.EpollEvent{Events: parkEvents, Fd: int32(fd), Pad: int32(c.gen)}
		if e := unix.EpollCtl(p.set.epfd, unix.EPOLL_CTL_ADD, int(fd), &ev); e != nil {
			err = fmt.Errorf("epoll_ctl: %w", e)
		}
	})
	if cerr != nil {
		return cerr
	}
	return err
}

// remove forgets c; a descriptor still open is deregistered (a closed one
// left the epoll set when it closed).
func (p *poller) remove(c *Conn) {
	if !c.added {
		return
	}
	p.mu.Lock()
	c.raw.Control(func(fd uintptr) {
		unix.EpollCtl(p.set.epfd, unix.EPOLL_CTL_DEL, int(fd), nil)
	})
	if p.conns[c.fd] == c {
		delete(p.conns, c.fd)
	}
	p.mu.Unlock()
}
