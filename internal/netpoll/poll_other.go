//go:build !linux

package netpoll

import "errors"

// poller parks idle connections; on this platform there is none, and every
// connection has a reader goroutine blocked in Read.
type poller struct{}

func newPoller(Bounds, func(error), func() error) (*poller, error) {
	return nil, errors.New("no poller on this platform")
}

func (p *poller) stop()                  {}
func (p *poller) register(c *Conn) error { return errors.New("no poller") }
func (p *poller) remove(c *Conn)         {}
func (p *poller) spawn(c *Conn)          {}
func (p *poller) release()               {}
