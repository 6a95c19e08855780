package server

import "github.com/culexmq/culex/internal/admin"

// openAdmin binds the admin listener (admin.listen) over this node's
// broker, auth service and Kafka bridge; nothing with admin.listen empty.
func (s *Server) openAdmin() error {
	opts := admin.Options{Config: s.cfg, Broker: s.broker, Auth: s.auth, Kafka: s.kafka, Reload: s.Reload,
		Version: Version, Log: s.log, Listeners: s.listenerURLs}
	s.clusterAdmin(&opts)
	a, err := admin.New(opts)
	if err != nil {
		return err
	}
	s.admin = a
	return s.serveClusterAdmin()
}

func (s *Server) listenerURLs() []string {
	out := make([]string, 0, len(s.listeners))
	for _, l := range s.listeners {
		out = append(out, l.URL())
	}
	return out
}

// Admin returns the admin listener (nil when admin.listen is empty): mount
// the metrics, health and dashboard handlers on it before Start.
func (s *Server) Admin() *admin.Server { return s.admin }

// AdminURL is the admin listener's base URL with its real port, or "".
func (s *Server) AdminURL() string {
	if s.admin == nil {
		return ""
	}
	return s.admin.URL()
}
