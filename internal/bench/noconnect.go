package bench

import (
	"fmt"
	"sort"
)

// noneConnected is the error of a run in which no client could connect
// (the broker is down, the address or credentials are wrong): a run that
// measured nothing must not exit 0. It names the most frequent error.
func (s *Summary) noneConnected() error {
	if s.Clients.Target == 0 || s.Clients.Connected > 0 {
		return nil
	}
	keys := make([]string, 0, len(s.Errors))
	for k := range s.Errors {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		return s.Errors[keys[i]] > s.Errors[keys[j]] || s.Errors[keys[i]] == s.Errors[keys[j]] && keys[i] < keys[j]
	})
	cause := "no error recorded"
	if len(keys) > 0 {
		cause = keys[0]
	}
	return fmt.Errorf("bench: no client could connect to %s (%d of %d failed; %s)", s.Broker, s.Clients.Failed, s.Clients.Target, cause)
}
