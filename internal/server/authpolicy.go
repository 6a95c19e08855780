package server

import (
	"log/slog"

	"github.com/culexmq/culex/internal/config"
)

// logAuthPolicy says at start-up what anonymous clients and unmatched
// topics get, and whether that was configured or follows from the other
// keys, and warns about every setting that leaves devices open.
func logAuthPolicy(log *slog.Logger, a *config.Auth) {
	anonFrom, aclFrom := "given", "given"
	if !a.AllowAnonymousSet && a.AllowAnonymous {
		anonFrom = "default: on without an auth backend, off with one"
	}
	if a.ACLDefault == "" {
		aclFrom = "default: deny with an acl_file, allow without"
	}
	aclDefault := "deny"
	if a.ACLDefaultAllow() {
		aclDefault = "allow"
	}
	log.Info("auth: policy", "allow_anonymous", a.AnonymousAllowed(), "allow_anonymous_from", anonFrom,
		"acl_default", aclDefault, "acl_default_from", aclFrom, "backend", a.HasBackend(), "acl_file", a.ACLFile)
	for _, w := range a.Exposures() {
		log.Warn("auth: devices are open: " + w)
	}
}
