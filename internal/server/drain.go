package server

import "context"

// Drain moves the node's clients away before it stops (SIGTERM in a
// cluster): readiness turns false, new connections are refused, clients
// are disconnected at cluster.drain_rate per second (v5: DISCONNECT 0x9C
// with cluster.drain_server_reference, else 0x8B). It returns once no
// client is left or ctx ends; Shutdown does the rest. A node alone has
// nowhere to move its clients to and returns at once. The drain cannot be
// undone (`culex cluster drain --undo` is refused).
func (s *Server) Drain(ctx context.Context) error {
	if s.router == nil {
		return nil
	}
	return s.router.DrainToStop(ctx)
}
