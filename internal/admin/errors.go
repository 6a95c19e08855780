package admin

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
)

// Error is an API error: an HTTP status and a stable code, with a message
// for people. Handlers return it; writeError turns it into JSON. Any other
// error is logged and answered 500 "internal" without its text.
type Error struct {
	Status  int    `json:"-"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

func errorf(status int, code, format string, args ...any) *Error {
	return &Error{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

func badRequest(format string, args ...any) *Error {
	return errorf(http.StatusBadRequest, "bad_request", format, args...)
}

func notFound(format string, args ...any) *Error {
	return errorf(http.StatusNotFound, "not_found", format, args...)
}

func conflict(format string, args ...any) *Error {
	return errorf(http.StatusConflict, "conflict", format, args...)
}

var (
	errUnauthorized = errorf(http.StatusUnauthorized, "unauthorized", "log in (POST /api/v1/login) or send an API key (Authorization: Bearer ID:SECRET)")
	errForbidden    = errorf(http.StatusForbidden, "forbidden", "the viewer role may only read")
	errMustChange   = errorf(http.StatusForbidden, "password_change_required", "change the password first (POST /api/v1/me/password)")
	errCSRF         = errorf(http.StatusForbidden, "csrf_failed", "missing or wrong X-CSRF-Token header (GET /api/v1/me returns the token)")
	errTooMany      = errorf(http.StatusTooManyRequests, "too_many_requests", "too many failed logins; try again later")
)

// handlerFunc is an API handler: it writes its answer, or returns an error
// for writeError.
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

// writeJSON writes v with status.
func writeJSON(w http.ResponseWriter, status int, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// noContent answers 204.
func noContent(w http.ResponseWriter) error {
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// writeError answers err as JSON: an *Error as it is, anything else as 500
// (logged, not shown).
func writeError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	var e *Error
	if !errors.As(err, &e) {
		log.Error("admin: request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		e = errorf(http.StatusInternalServerError, "internal", "internal error (logged by the node)")
	}
	writeJSON(w, e.Status, e)
}

// maxBody bounds a request body.
const maxBody = 64 << 10

// decode reads r's JSON body into v: one object of known fields, at most
// maxBody bytes, with a JSON content type (or none).
func decode(r *http.Request, v any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
			return errorf(http.StatusUnsupportedMediaType, "unsupported_media_type", "send application/json")
		}
	}
	data, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	switch t := bytes.TrimSpace(data); {
	case err != nil || len(data) > maxBody:
		return errorf(http.StatusRequestEntityTooLarge, "too_large", "the body is over %d bytes", maxBody)
	case len(t) == 0:
		return badRequest("the request needs a JSON body")
	case t[0] != '{':
		return badRequest("the body must be a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var me *json.UnmarshalTypeError
		switch {
		case errors.As(err, &me) && me.Field != "":
			return badRequest("field %q: want %s", me.Field, me.Type.Kind())
		case errors.Is(err, io.ErrUnexpectedEOF):
			return badRequest("the JSON body is cut short")
		}
		return badRequest("bad JSON body: %s", jsonMessage(err))
	}
	if dec.More() {
		return badRequest("one JSON object expected")
	}
	return nil
}

// jsonMessage keeps the decoder's message but not Go type names.
func jsonMessage(err error) string {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("syntax error at byte %d", se.Offset)
	}
	msg := err.Error()
	if len(msg) > 200 {
		msg = msg[:200]
	}
	return msg
}
