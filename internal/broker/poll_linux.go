package broker

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"
)

// poller is one epoll instance and the goroutine that waits on it for every
// parked connection of a broker (park.go). Descriptors are registered once,
// edge-triggered, so parking costs no system call.
type poller struct {
	epfd  int
	file  *os.File        // epfd, for the runtime poller
	raw   syscall.RawConn // file's
	wake  [2]int          // a pipe: a byte on wake[1] stops the loop
	done  chan struct{}
	mu    sync.Mutex
	conns map[int32]*conn // by descriptor
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
	readers    *workers[*conn]
}

// parkEvents: readable or peer closed, edge-triggered (EPOLLET, 1<<31,
// which package syscall spells as a negative int).
const parkEvents = syscall.EPOLLIN | syscall.EPOLLRDHUP | 1<<31

// newPoller starts a poller whose readers run within bounds.
//
// The epoll descriptor is itself waited on through the runtime's network
// poller (an epoll set is readable while it has events), so the loop
// goroutine is woken by the scheduler like any reader, rather than holding
// a thread blocked in epoll_wait that needs a P back before it can run.
func newPoller(bounds readerBounds) (*poller, error) {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	p := &poller{epfd: epfd, done: make(chan struct{}), conns: make(map[int32]*conn),
		maxActive: bounds.all, maxFast: min(bounds.all, bounds.fast), stallEvery: bounds.stall}
	p.readers = newWorkers(p.serve)
	if err := p.init(); err != nil {
		p.closeFDs()
		return nil, err
	}
	go p.run()
	return p, nil
}

func (p *poller) init() error {
	if err := syscall.SetNonblock(p.epfd, true); err != nil {
		return fmt.Errorf("epoll: nonblocking: %w", err)
	}
	p.file = os.NewFile(uintptr(p.epfd), "epoll")
	if err := p.file.SetReadDeadline(time.Time{}); err != nil {
		return fmt.Errorf("epoll: not pollable: %w", err)
	}
	raw, err := p.file.SyscallConn()
	if err != nil {
		return err
	}
	p.raw = raw
	if err := syscall.Pipe2(p.wake[:], syscall.O_NONBLOCK|syscall.O_CLOEXEC); err != nil {
		return fmt.Errorf("pipe2: %w", err)
	}
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(p.wake[0])}
	if err := syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_ADD, p.wake[0], &ev); err != nil {
		return fmt.Errorf("epoll_ctl: %w", err)
	}
	return nil
}

func (p *poller) closeFDs() {
	if p.wake != [2]int{} {
		syscall.Close(p.wake[0])
		syscall.Close(p.wake[1])
	}
	if p.file != nil {
		p.file.Close()
	} else {
		syscall.Close(p.epfd)
	}
}

// stop ends the loop and waits for it.
func (p *poller) stop() {
	p.readers.stop()
	syscall.Write(p.wake[1], []byte{0})
	<-p.done
}

// run waits for events and wakes their connections. The generation in each
// event tells a stale event of a closed descriptor from one of a new
// connection that reuses the number.
func (p *poller) run() {
	defer close(p.done)
	defer p.closeFDs()
	evs := make([]syscall.EpollEvent, 256)
	ready := make([]*conn, 0, len(evs))
	var w stallWatch
	var armed time.Time // the wait's deadline: the next stall check
	stop := false
	var werr error
	// harvest is made once: a closure made at each wait would be
	// allocated at each wait.
	harvest := func(uintptr) bool {
		n, err := epollNow(p.epfd, evs)
		if err != nil && err != syscall.EINTR {
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
				ready = append(ready, c)
			}
		}
		p.mu.Unlock()
		return true
	}
	for !stop {
		// Re-arm only when a check is due sooner, or the need changed:
		// events come far more often than either.
		next := p.stalled(&w)
		if next.IsZero() != armed.IsZero() || (!armed.IsZero() && (next.Before(armed) || !time.Now().Before(armed))) {
			armed = next
			p.file.SetReadDeadline(armed)
		}
		err := p.raw.Read(harvest)
		if werr != nil || (err != nil && !errors.Is(err, os.ErrDeadlineExceeded)) {
			panic(fmt.Sprintf("broker: epoll: %v %v", werr, err))
		}
		for _, c := range ready {
			c.wakeup()
		}
		clear(ready)
		ready = ready[:0]
	}
}

// spawn serves c, taken from the parked state, on a reader goroutine, or
// queues it while the bounds are reached.
func (p *poller) spawn(c *conn) {
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
func (p *poller) serve(c *conn) {
	held := true // a fast slot
	for c != nil {
		c.fast = held
		held = c.loop()
		c = p.next(&held)
	}
}

// next takes the oldest waiting connection if a fast slot is free (the
// caller's own, if it still holds it), or retires the caller.
func (p *poller) next(held *bool) *conn {
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
	var extra []*conn
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
func (p *poller) register(c *conn) error {
	var err error
	cerr := c.raw.Control(func(fd uintptr) {
		p.mu.Lock()
		p.gen++
		c.gen = p.gen
		p.conns[int32(fd)] = c
		p.mu.Unlock()
		c.added = true
		ev := syscall.EpollEvent{Events: parkEvents, Fd: int32(fd), Pad: int32(c.gen)}
		if e := syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_ADD, int(fd), &ev); e != nil {
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
func (p *poller) remove(c *conn) {
	if !c.added {
		return
	}
	c.raw.Control(func(fd uintptr) {
		syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_DEL, int(fd), nil)
	})
	p.mu.Lock()
	if p.conns[c.fd] == c {
		delete(p.conns, c.fd)
	}
	p.mu.Unlock()
}
