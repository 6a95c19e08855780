package admin

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/culexmq/culex/internal/atomicfile"
	"github.com/culexmq/culex/internal/auth"
	"github.com/culexmq/culex/internal/broker"
)

// BansFile holds a node's manual bans in data_dir.
const BansFile = "bans.json"

// missingHeader names the nodes that did not answer a request whose
// answer is not a page (GET /bans, POST /bans, DELETE /bans/...).
const missingHeader = "Culex-Missing-Nodes"

func setMissing(w http.ResponseWriter, missing []string) {
	if len(missing) > 0 {
		w.Header().Set(missingHeader, strings.Join(missing, ","))
	}
}

// wideReq and wideResp are the fields of remoteReq and remoteResp for
// bans, subscriptions and topics.
type wideReq struct {
	Ban   *banJSON `json:"ban,omitempty"`   // ban_add
	Kind  string   `json:"kind,omitempty"`  // ban_remove
	Value string   `json:"value,omitempty"` // ban_remove
}

type wideResp struct {
	Bans   []banJSON          `json:"bans,omitempty"`
	Subs   []subscriptionJSON `json:"subscriptions,omitempty"`
	Topics []topicJSON        `json:"topics,omitempty"`
}

// answerWide answers the requests of the cluster-wide bans, subscriptions
// and topics.
func (s *Server) answerWide(req *remoteReq) (resp remoteResp) {
	if s.opts.Auth == nil && strings.HasPrefix(req.Op, "ban") {
		resp.Err = "no auth service"
		return resp
	}
	switch req.Op {
	case "bans":
		resp.Bans = s.localBans()
	case "ban_add":
		if req.Ban == nil {
			resp.Err = "ban_add without a ban"
			return resp
		}
		if _, err := s.applyBan(req.Ban, req.By); err != nil {
			resp.Err = err.Error()
		}
	case "ban_remove":
		ok, err := s.liftBan(req.Kind, req.Value, req.By)
		resp.Found = ok
		if err != nil {
			resp.Err = err.Error()
		}
	case "subscriptions":
		all := s.localSubs(&http.Request{URL: queryURL(req.Query)})
		resp.Count, resp.Subs = len(all), all[:min(len(all), req.Upto)]
	case "topics":
		all := s.localTopics(&http.Request{URL: queryURL(req.Query)})
		resp.Count, resp.Topics = len(all), all[:min(len(all), req.Upto)]
	default:
		resp.Err = "unknown request " + req.Op
	}
	return resp
}

func queryURL(q string) *url.URL { return &url.URL{RawQuery: q} }

// banIn is the auth.Ban of a banJSON.
func banIn(j *banJSON) auth.Ban {
	b := auth.Ban{Kind: j.Kind, Value: j.Value, Reason: j.Reason, Created: j.Created}
	if j.Until != nil {
		b.Until = *j.Until
	}
	return b
}

// applyBan adds a manual ban on this node, disconnects the clients it
// matches and saves the node's manual bans.
func (s *Server) applyBan(j *banJSON, by string) (auth.Ban, error) {
	b, err := s.opts.Auth.AddBan(banIn(j))
	if err != nil {
		return b, err
	}
	kicked := s.kickBanned(&b)
	s.log.Info("admin: ban added", "kind", b.Kind, "value", b.Value, "disconnected", kicked, "by", by)
	s.saveBans()
	return b, nil
}

// liftBan lifts a ban on this node and saves the node's manual bans.
func (s *Server) liftBan(kind, value, by string) (bool, error) {
	ok, err := s.opts.Auth.RemoveBan(kind, value)
	if err != nil || !ok {
		return ok, err
	}
	s.log.Info("admin: ban lifted", "kind", kind, "value", value, "by", by)
	s.saveBans()
	return true, nil
}

// localBans are this node's bans; those after failed logins name the node
// (each node counts its own).
func (s *Server) localBans() []banJSON {
	out := []banJSON{}
	if s.opts.Auth == nil {
		return out
	}
	for _, b := range s.opts.Auth.Bans() {
		j := banOut(&b)
		if b.Source != auth.BanManual {
			j.Node = s.node
		}
		out = append(out, j)
	}
	return out
}

// manualBans are this node's manual bans.
func (s *Server) manualBans() []banJSON {
	return slices.DeleteFunc(s.localBans(), func(j banJSON) bool { return j.Source != auth.BanManual })
}

// clusterBans are this node's bans and every other node's: a manual ban
// once, a ban after failed logins once per node.
func (s *Server) clusterBans(ctx context.Context) ([]banJSON, []string) {
	all := s.localBans()
	answers, missing := s.ask(ctx, "", remoteReq{Op: "bans"})
	for _, a := range answers {
		for _, b := range a.Bans {
			if !slices.ContainsFunc(all, func(x banJSON) bool { return x.Kind == b.Kind && x.Value == b.Value && x.Node == b.Node }) {
				all = append(all, b)
			}
		}
	}
	slices.SortFunc(all, func(a, b banJSON) int {
		return cmp.Or(cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.Value, b.Value), cmp.Compare(a.Node, b.Node))
	})
	return all, missing
}

// bansPath is the file of the manual bans, "" without data_dir.
func (s *Server) bansPath() string {
	if s.opts.Config.DataDir == "" {
		return ""
	}
	return filepath.Join(s.opts.Config.DataDir, BansFile)
}

// bansFileMu orders the writes of the bans file: a request and another
// node's may change the bans at once; the last write has both.
var bansFileMu sync.Mutex

// saveBans writes the node's manual bans to data_dir (atomically).
func (s *Server) saveBans() {
	path := s.bansPath()
	if path == "" {
		return
	}
	bansFileMu.Lock()
	defer bansFileMu.Unlock()
	data, _ := json.MarshalIndent(s.manualBans(), "", "  ")
	if err := atomicfile.WriteFile(path, data, 0o600); err != nil {
		s.log.Error("admin: saving the bans", "file", path, "err", err)
	}
}

// restoreBans puts back the manual bans saved in data_dir.
func (s *Server) restoreBans() error {
	if s.opts.Auth == nil {
		return nil
	}
	if path := s.bansPath(); path != "" {
		data, err := os.ReadFile(path)
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			return fmt.Errorf("admin bans: %w", err)
		default:
			var saved []banJSON
			if err := json.Unmarshal(data, &saved); err != nil {
				return fmt.Errorf("admin bans %s: %w", path, err)
			}
			now := time.Now()
			for i := range saved {
				if saved[i].Until != nil && !now.Before(*saved[i].Until) {
					continue
				}
				if _, err := s.opts.Auth.AddBan(banIn(&saved[i])); err != nil {
					return fmt.Errorf("admin bans %s: %w", path, err)
				}
			}
		}
	}
	return nil
}

// syncBans, in a cluster, takes the other nodes' manual bans in the
// background until ctx ends: once another node answers (within a minute),
// this node holds the manual bans the answering nodes hold, and lifts
// those none of them holds (lifted while this node was away).
func (s *Server) syncBans(ctx context.Context) {
	if s.opts.Peers == nil || s.opts.Auth == nil {
		return
	}
	s.done.Add(1)
	go func() {
		defer s.done.Done()
		s.takeBans(ctx)
	}()
}

func (s *Server) takeBans(ctx context.Context) {
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for range 120 {
		answers, _ := s.ask(ctx, "", remoteReq{Op: "bans"})
		if len(answers) > 0 {
			want := map[[2]string]banJSON{}
			for _, a := range answers {
				for _, b := range a.Bans {
					if b.Source == auth.BanManual {
						want[[2]string{b.Kind, b.Value}] = b
					}
				}
			}
			for _, b := range s.manualBans() {
				if _, ok := want[[2]string{b.Kind, b.Value}]; !ok {
					s.liftBan(b.Kind, b.Value, "cluster")
				}
			}
			for _, b := range want {
				if _, err := s.applyBan(&b, "cluster"); err != nil {
					s.log.Warn("admin: a ban from another node", "kind", b.Kind, "value", b.Value, "err", err)
				}
			}
			s.saveBans()
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (s *Server) listBans(w http.ResponseWriter, r *http.Request) error {
	all, missing := s.clusterBans(r.Context())
	setMissing(w, missing)
	return writeJSON(w, http.StatusOK, all)
}

// broadcastBan adds a ban on this node and every other node.
func (s *Server) broadcastBan(r *http.Request, j *banJSON) (auth.Ban, []string, error) {
	b, err := s.applyBan(j, caller(r).name)
	if err != nil {
		return b, nil, err
	}
	out := banOut(&b)
	_, missing := s.ask(r.Context(), "", remoteReq{Op: "ban_add", By: caller(r).name, wideReq: wideReq{Ban: &out}})
	if len(missing) > 0 {
		s.log.Warn("admin: ban not applied on every node", "kind", b.Kind, "value", b.Value, "missing_nodes", missing)
	}
	return b, missing, nil
}

func (s *Server) deleteBan(w http.ResponseWriter, r *http.Request) error {
	kind, value := r.PathValue("kind"), r.PathValue("value")
	ok, err := s.liftBan(kind, value, caller(r).name)
	if err != nil {
		return badRequest("%v", err)
	}
	answers, missing := s.ask(r.Context(), "", remoteReq{Op: "ban_remove", By: caller(r).name, wideReq: wideReq{Kind: kind, Value: value}})
	for _, a := range answers {
		ok = ok || a.Found
	}
	setMissing(w, missing)
	if !ok {
		return notFound("no ban of %s %q%s", kind, value, unanswered(missing))
	}
	return noContent(w)
}

// localSubs are this node's subscriptions matching r's filters.
func (s *Server) localSubs(r *http.Request) []subscriptionJSON {
	q := r.URL.Query()
	id, f, group, node := q.Get("client_id"), q.Get("topic"), q.Get("share_group"), q.Get("node")
	out := []subscriptionJSON{}
	if node != "" && node != s.node {
		return out
	}
	for _, x := range s.opts.Broker.Subscriptions(func(x *broker.SubscriptionSnapshot) bool {
		return (id == "" || x.ClientID == id) && strings.Contains(x.Filter, f) && (group == "" || x.Group == group)
	}) {
		out = append(out, s.subOut(&x))
	}
	slices.SortFunc(out, cmpSub)
	return out
}

func cmpSub(a, b subscriptionJSON) int {
	return cmp.Or(cmp.Compare(a.ClientID, b.ClientID), cmp.Compare(a.Topic, b.Topic), cmp.Compare(a.Group, b.Group), cmp.Compare(a.Node, b.Node))
}

func (s *Server) listSubscriptions(w http.ResponseWriter, r *http.Request) error {
	all, count, missing, err := clusterList(s, r, "subscriptions", s.localSubs(r),
		func(a *remoteResp) []subscriptionJSON { return a.Subs }, cmpSub)
	if err != nil {
		return err
	}
	return writePageOf(w, r, all, func(x *subscriptionJSON) subscriptionJSON { return *x }, count, missing)
}

// localTopics are this node's subscribed topic filters containing ?topic=.
func (s *Server) localTopics(r *http.Request) []topicJSON {
	q := r.URL.Query()
	f, node := q.Get("topic"), q.Get("node")
	out := []topicJSON{}
	if node != "" && node != s.node {
		return out
	}
	filters, counts := s.opts.Broker.Topics()
	for i, t := range filters {
		if strings.Contains(t, f) {
			out = append(out, topicJSON{Topic: t, Subscribers: counts[i], Node: s.node})
		}
	}
	slices.SortFunc(out, cmpTopic)
	return out
}

func cmpTopic(a, b topicJSON) int {
	return cmp.Or(cmp.Compare(a.Topic, b.Topic), cmp.Compare(a.Node, b.Node))
}

func (s *Server) listTopics(w http.ResponseWriter, r *http.Request) error {
	all, count, missing, err := clusterList(s, r, "topics", s.localTopics(r),
		func(a *remoteResp) []topicJSON { return a.Topics }, cmpTopic)
	if err != nil {
		return err
	}
	return writePageOf(w, r, all, func(x *topicJSON) topicJSON { return *x }, count, missing)
}

// clusterList adds the other nodes' rows (each node's first ones, enough
// for the requested page) to local, sorted by less; ?node= asks one node.
func clusterList[T any](s *Server, r *http.Request, op string, local []T, rows func(*remoteResp) []T, less func(a, b T) int) ([]T, int, []string, error) {
	pg, limit, err := paging(r)
	if err != nil {
		return nil, 0, nil, err
	}
	count := len(local)
	node := r.URL.Query().Get("node")
	if node == s.node || s.opts.Peers == nil {
		return local, count, nil, nil
	}
	answers, missing := s.ask(r.Context(), node, remoteReq{Op: op, Query: r.URL.RawQuery, Upto: pg * limit})
	all := local
	for _, a := range answers {
		all = append(all, rows(&a)...)
		count += a.Count
	}
	slices.SortFunc(all, less)
	return all, count, missing, nil
}
