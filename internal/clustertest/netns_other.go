//go:build !linux

package clustertest

import (
	"errors"
	"net/netip"
)

// netnet exists on Linux only; elsewhere a namespaced cluster fails to
// start.
type netnet struct {
	hub  string
	host netip.Addr
}

var errNoNetns = errors.New("network namespaces need Linux")

// NetnsSupported says why namespaced clusters cannot run here.
func NetnsSupported() error { return errNoNetns }

func newNetnet() (*netnet, error)                           { return nil, errNoNetns }
func (nn *netnet) addr(int) netip.Addr                      { return netip.Addr{} }
func (nn *netnet) addNode(string, string, netip.Addr) error { return errNoNetns }
func (nn *netnet) drop(string, []netip.Addr) error          { return errNoNetns }
func (nn *netnet) heal(string) error                        { return errNoNetns }
func (nn *netnet) link(string, bool) error                  { return errNoNetns }
func (nn *netnet) close(...string)                          {}
