package auth

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/culexmq/culex/internal/broker"
	"github.com/culexmq/culex/internal/mqtt/packet"
)

// fileStamp is what the watcher compares to notice a changed file: a
// rename over the file (as `culex users` does) changes its identity even
// within one modification-time tick.
type fileStamp struct{ fi os.FileInfo }

func stamp(path string) fileStamp {
	fi, _ := os.Stat(path)
	return fileStamp{fi}
}

func (a fileStamp) same(b fileStamp) bool {
	if a.fi == nil || b.fi == nil {
		return a.fi == nil && b.fi == nil
	}
	return os.SameFile(a.fi, b.fi) && a.fi.ModTime().Equal(b.fi.ModTime()) && a.fi.Size() == b.fi.Size()
}

// Reload reads the users and ACL files again (on SIGHUP or when the
// watcher sees a change). A file that cannot be read or fails to parse
// leaves the previous version in force, is logged as an error and counted
// (Stats.ReloadFailures); so does a users file that was removed (an empty
// one removes every user); connections are not dropped, except those whose
// credentials the new users file revoked or whose superuser rights it
// removed.
func (s *Service) Reload() error {
	var kick []string
	s.mu.Lock()
	err := errors.Join(s.reloadUsersLocked(&kick), s.reloadACLLocked())
	s.mu.Unlock()
	s.kick(kick)
	return err
}

// reloadUsersLocked loads the users file and appends the client ids whose
// credentials it revoked to kick. A file that fails to parse is not
// retried until it changes again.
func (s *Service) reloadUsersLocked(kick *[]string) error {
	if s.users == nil {
		return nil
	}
	s.usersSeen = stamp(s.cfg.UsersFile)
	u, err := LoadUsers(s.cfg.UsersFile)
	if err == nil && s.usersSeen.fi == nil && s.users.Users().Len() > 0 {
		// A file that vanished is mostly one being replaced by a tool
		// that removes before it writes: dropping every user meanwhile
		// would disconnect the fleet.
		err = fmt.Errorf("%s: the file is missing (an empty file removes every user)", s.cfg.UsersFile)
	}
	if err != nil {
		s.stats.ReloadFailures.Add(1)
		s.log.Error("auth: users file not loaded, the previous users stay in force", "file", s.cfg.UsersFile, "err", err)
		return fmt.Errorf("auth: %w", err)
	}
	s.users.SetUsers(u)
	s.log.Info("auth: users loaded", "file", s.cfg.UsersFile, "users", u.Len())
	*kick = append(*kick, s.revokeLocked(u)...)
	return nil
}

func (s *Service) reloadACLLocked() error {
	if s.cfg.ACLFile == "" {
		return nil
	}
	s.aclSeen = stamp(s.cfg.ACLFile)
	rules, err := LoadACL(s.cfg.ACLFile)
	if err != nil {
		s.stats.ReloadFailures.Add(1)
		s.log.Error("auth: ACL file not loaded, the previous rules stay in force", "file", s.cfg.ACLFile, "err", err)
		return fmt.Errorf("auth: %w", err)
	}
	s.acl.Store(NewACL(rules, s.cfg.ACLDefaultAllow(), s.cfg.SysSuperuserOnly))
	s.log.Info("auth: ACL loaded", "file", s.cfg.ACLFile, "rules", len(rules))
	return nil
}

// revokeLocked marks the connected identities whose users-file credential
// is gone or changed, or whose superuser rights are gone, and returns their
// client ids. A demoted superuser is disconnected (0x87) like a revoked
// one: from its mark on every check it makes fails, and it comes back
// judged as the user it now is.
func (s *Service) revokeLocked(u *Users) (kick []string) {
	for id := range s.live {
		if id.Backend != "users" && id.Backend != SCRAMMethod {
			continue
		}
		x, ok := u.Get(id.Username)
		why := ""
		switch {
		case !ok:
			why = "user removed"
		case id.Backend == "users" && x.Hash != id.credential, id.Backend == SCRAMMethod && x.SCRAM != id.credential:
			why = "credentials changed"
		case id.Superuser && !x.Superuser:
			why = "superuser rights removed"
		}
		if why != "" && !id.revoked.Swap(true) {
			s.stats.Revoked.Add(1)
			kick = append(kick, id.ClientID)
			s.log.Warn("auth: "+why+", disconnecting", "client_id", id.ClientID, "username", id.Username)
		}
	}
	return kick
}

// kick disconnects clients, without holding s.mu: the disconnect hook
// comes back into the service.
func (s *Service) kick(clientIDs []string) {
	fn := s.disconnect.Load()
	if fn == nil {
		return
	}
	for _, c := range clientIDs {
		(*fn)(c)
	}
}

// endAsync ends the connection c describes from a goroutine of the
// service's: it is called on the broker's own goroutines, which may hold
// its locks.
func (s *Service) endAsync(c *broker.ClientInfo, code packet.Code) {
	fn := s.endConn.Load()
	if fn == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		(*fn)(c, code)
	}()
}

// watch polls the files' modification time and size every interval.
func (s *Service) watch(every time.Duration) {
	defer s.wg.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		var kick []string
		s.mu.Lock()
		if s.users != nil && !stamp(s.cfg.UsersFile).same(s.usersSeen) {
			s.reloadUsersLocked(&kick)
		}
		if s.cfg.ACLFile != "" && !stamp(s.cfg.ACLFile).same(s.aclSeen) {
			s.reloadACLLocked()
		}
		s.mu.Unlock()
		s.kick(kick)
	}
}
