//go:build !linux

package broker

import "errors"

// poller parks idle connections; on this platform there is none, and every
// connection has a reader goroutine blocked in Read.
type poller struct{}

func newPoller(readerBounds, func(error), func() error) (*poller, error) {
	return nil, errors.New("no poller on this platform")
}

func (p *poller) stop()                  {}
func (p *poller) register(c *conn) error { return errors.New("no poller") }
func (p *poller) remove(c *conn)         {}
func (p *poller) spawn(c *conn)          {}
func (p *poller) release()               {}
