package admin

import (
	"cmp"
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
)

// Peers carries the admin API's requests to the other nodes of a cluster
// (the cluster's router implements it over NATS). Each node answers with
// Server.Answer.
type Peers interface {
	// Ask sends req to node, or to every other node when node is "", and
	// returns the answers by node and the nodes that did not answer within
	// a bounded time.
	Ask(ctx context.Context, node string, req []byte) (answers map[string][]byte, missing []string)
}

// remoteReq is one request between nodes' admin APIs.
type remoteReq struct {
	Op         string `json:"op"` // node, clients, client, kick
	Query      string `json:"query,omitempty"`
	Persistent bool   `json:"persistent,omitempty"`
	Upto       int    `json:"upto,omitempty"` // clients: the first Upto by client id
	ClientID   string `json:"client_id,omitempty"`
	By         string `json:"by,omitempty"`
	wideReq
}

type remoteResp struct {
	Node    *Node             `json:"node,omitempty"`
	Clients []clientJSON      `json:"clients,omitempty"`
	Count   int               `json:"count,omitempty"`
	Client  *clientDetailJSON `json:"client,omitempty"`
	Found   bool              `json:"found,omitempty"`
	Err     string            `json:"err,omitempty"`
	wideResp
}

// Answer answers another node's request (the cluster calls it).
func (s *Server) Answer(data []byte) []byte {
	var req remoteReq
	var resp remoteResp
	if err := json.Unmarshal(data, &req); err != nil {
		resp.Err = err.Error()
	} else {
		resp = s.answer(&req)
	}
	out, _ := json.Marshal(resp)
	return out
}

func (s *Server) answer(req *remoteReq) (resp remoteResp) {
	switch req.Op {
	case "node":
		n := s.Local()
		resp.Node = &n
	case "clients":
		r := &http.Request{URL: &url.URL{RawQuery: req.Query}}
		all, err := s.localClients(r, req.Persistent)
		if err != nil {
			resp.Err = err.Error()
			return resp
		}
		resp.Count = len(all)
		resp.Clients = all[:min(len(all), req.Upto)]
	case "client":
		if c, ok := s.localClient(req.ClientID); ok {
			resp.Client, resp.Found = &c, true
		}
	case "kick":
		resp.Found = s.kickLocal(req.ClientID, req.By)
	default:
		return s.answerWide(req)
	}
	return resp
}

// ask sends req to the other nodes (node "" for all) and decodes their
// answers; nil peers (a node alone) ask nobody.
func (s *Server) ask(ctx context.Context, node string, req remoteReq) (map[string]remoteResp, []string) {
	if s.opts.Peers == nil {
		return nil, nil
	}
	data, _ := json.Marshal(req)
	raw, missing := s.opts.Peers.Ask(ctx, node, data)
	out := make(map[string]remoteResp, len(raw))
	for n, b := range raw {
		var r remoteResp
		if err := json.Unmarshal(b, &r); err != nil || r.Err != "" {
			missing = append(missing, n)
			continue
		}
		out[n] = r
	}
	slices.Sort(missing)
	return out, missing
}

// clusterNodes is Nodes of a cluster: this node and every other node's
// own description; a node that does not answer is listed as unreachable.
type clusterNodes struct{ s *Server }

func (c clusterNodes) Nodes(ctx context.Context) []Node {
	out := []Node{c.s.Local()}
	answers, missing := c.s.ask(ctx, "", remoteReq{Op: "node"})
	for _, a := range answers {
		if a.Node != nil {
			out = append(out, *a.Node)
		}
	}
	for _, n := range missing {
		out = append(out, Node{Name: n, Status: "unreachable", Listeners: []string{}})
	}
	slices.SortFunc(out, func(a, b Node) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

// clusterClients adds the other nodes' clients matching r's filters to
// local: enough of each node's first ones for the requested page.
func (s *Server) clusterClients(r *http.Request, persistentOnly bool, local []clientJSON) ([]clientJSON, int, []string, error) {
	pg, limit, err := paging(r)
	if err != nil {
		return nil, 0, nil, err
	}
	count := len(local)
	node := r.URL.Query().Get("node")
	if node == s.node || s.opts.Peers == nil {
		return local, count, nil, nil
	}
	answers, missing := s.ask(r.Context(), node, remoteReq{Op: "clients", Query: r.URL.RawQuery, Persistent: persistentOnly, Upto: pg * limit})
	all := local
	for _, a := range answers {
		all = append(all, a.Clients...)
		count += a.Count
	}
	slices.SortFunc(all, func(a, b clientJSON) int {
		return cmp.Or(cmp.Compare(a.ClientID, b.ClientID), cmp.Compare(a.Node, b.Node))
	})
	return all, count, missing, nil
}

// remoteClient finds a client on another node.
func (s *Server) remoteClient(r *http.Request, id string) (*clientDetailJSON, []string) {
	answers, missing := s.ask(r.Context(), "", remoteReq{Op: "client", ClientID: id})
	for _, a := range answers {
		if a.Found && a.Client != nil {
			return a.Client, nil
		}
	}
	return nil, missing
}

// remoteKick asks the node the client is connected to to disconnect it.
func (s *Server) remoteKick(r *http.Request, id string) (bool, []string) {
	answers, missing := s.ask(r.Context(), "", remoteReq{Op: "kick", ClientID: id, By: caller(r).name})
	for _, a := range answers {
		if a.Found {
			return true, nil
		}
	}
	return false, missing
}
