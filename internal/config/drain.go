package config

import "net"

// defaultDrainRate is cluster.drain_rate's default: clients per second.
const defaultDrainRate = 100

func (c *Cluster) validateDrain(bad func(key, format string, args ...any)) {
	if r := c.DrainServerReference; r != "" {
		if _, _, err := net.SplitHostPort(r); err != nil {
			bad("cluster.drain_server_reference", "%q is not host:port (example: mqtt.example.com:1883)", r)
		}
	}
}
