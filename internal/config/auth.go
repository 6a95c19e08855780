package config

// The effective values of the auth keys whose defaults depend on other
// keys: anonymous access is off once a backend is configured, and an ACL
// file denies what its rules do not allow, unless the key says otherwise.

// HasBackend reports whether an authentication backend is configured: a
// users file, a webhook URL, a JWT key or a client certificate CA.
func (a *Auth) HasBackend() bool {
	j := &a.JWT
	return a.UsersFile != "" || a.HTTP.URL != "" || a.Cert.CAFile != "" ||
		j.SecretFile != "" || j.PublicKeyFile != "" || j.JWKSURL != ""
}

// AnonymousAllowed is the effective allow_anonymous: the key's value when
// it was given (AllowAnonymousSet), otherwise on only while no backend is
// configured. A false AllowAnonymous is always off.
func (a *Auth) AnonymousAllowed() bool {
	return a.AllowAnonymous && (a.AllowAnonymousSet || !a.HasBackend())
}

// ACLDefaultAllow is the effective acl_default: allow or deny as given,
// otherwise deny with an ACL file and allow without.
func (a *Auth) ACLDefaultAllow() bool {
	switch a.ACLDefault {
	case "allow":
		return true
	case "deny":
		return false
	}
	return a.ACLFile == ""
}

// Exposures lists the settings that leave devices open, one sentence each,
// for the start-up log to warn about: anonymous access with a backend or
// without any, an ACL file whose default is allow, and authentication
// without an ACL file.
func (a *Auth) Exposures() []string {
	var out []string
	switch {
	case a.AnonymousAllowed() && a.HasBackend():
		out = append(out, "auth.allow_anonymous is true although an authentication backend is configured: "+
			"clients without credentials connect anonymously")
	case a.AnonymousAllowed():
		out = append(out, "no authentication backend (auth.users_file, auth.http.url, auth.jwt, auth.cert.ca_file): "+
			"every client connects anonymously")
	}
	switch {
	case a.ACLFile != "" && a.ACLDefaultAllow():
		out = append(out, "auth.acl_default is allow with an ACL file: topics that no rule names are open to every client")
	case a.ACLFile == "" && a.HasBackend() && a.ACLDefaultAllow():
		out = append(out, "authentication without an ACL file (auth.acl_file): "+
			"every authenticated client may publish and subscribe to every topic, other devices' included")
	}
	return out
}
