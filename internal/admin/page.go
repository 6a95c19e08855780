package admin

import (
	"net/http"
	"strconv"
)

// Paging: ?page=1&limit=100 (limit at most maxLimit).
const (
	defaultLimit = 100
	maxLimit     = 10000
)

type meta struct {
	Page  int `json:"page"`
	Limit int `json:"limit"`
	Count int `json:"count"`
	// Missing names the nodes of a cluster that did not answer: the page
	// is partial.
	Missing []string `json:"missing_nodes,omitempty"`
}

type page[T any] struct {
	Data []T  `json:"data"`
	Meta meta `json:"meta"`
}

// paging reads page and limit.
func paging(r *http.Request) (pg, limit int, err error) {
	pg, limit = 1, defaultLimit
	q := r.URL.Query()
	if v := q.Get("page"); v != "" {
		if pg, err = strconv.Atoi(v); err != nil || pg < 1 {
			return 0, 0, badRequest("page %q: want a whole number from 1", v)
		}
	}
	if v := q.Get("limit"); v != "" {
		if limit, err = strconv.Atoi(v); err != nil || limit < 1 || limit > maxLimit {
			return 0, 0, badRequest("limit %q: want a whole number from 1 to %d", v, maxLimit)
		}
	}
	return pg, limit, nil
}

// writePage answers one page of all, mapped by conv.
func writePage[S, T any](w http.ResponseWriter, r *http.Request, all []S, conv func(*S) T) error {
	return writePageOf(w, r, all, conv, len(all), nil)
}

// writePageOf answers one page of all, of count in the whole cluster,
// missing the nodes named.
func writePageOf[S, T any](w http.ResponseWriter, r *http.Request, all []S, conv func(*S) T, count int, missing []string) error {
	pg, limit, err := paging(r)
	if err != nil {
		return err
	}
	out := page[T]{Data: []T{}, Meta: meta{Page: pg, Limit: limit, Count: count, Missing: missing}}
	if from := (pg - 1) * limit; from < len(all) && from >= 0 {
		for i := from; i < len(all) && i < from+limit; i++ {
			out.Data = append(out.Data, conv(&all[i]))
		}
	}
	return writeJSON(w, http.StatusOK, out)
}

// boolParam reads an optional true/false query parameter.
func boolParam(r *http.Request, name string) (v, set bool, err error) {
	s := r.URL.Query().Get(name)
	if s == "" {
		return false, false, nil
	}
	v, err = strconv.ParseBool(s)
	if err != nil {
		return false, false, badRequest("%s %q: want true or false", name, s)
	}
	return v, true, nil
}
