package config

import (
	"io"
	"strings"
	"testing"
)

func TestAdminKeys(t *testing.T) {
	c, err := Parse("serve", nil, nil, io.Discard)
	if err != nil || c.Admin.Listen != "127.0.0.1:18083" || c.Admin.DefaultPassword != "" {
		t.Fatalf("defaults: %+v %v", c.Admin, err)
	}
	// CULEX_ADMIN_PASSWORD is the short form; the long one wins; the
	// variables of culex ctl are ignored by serve.
	c, err = Parse("serve", []string{"--admin.listen", ""}, []string{"CULEX_ADMIN_PASSWORD=s3cret-pw", "CULEX_ADMIN_URL=http://x", "CULEX_API_KEY=a:b"}, io.Discard)
	if err != nil || c.Admin.DefaultPassword != "s3cret-pw" || c.Admin.Listen != "" {
		t.Fatalf("short env: %+v %v", c.Admin, err)
	}
	c, err = Parse("serve", nil, []string{"CULEX_ADMIN_PASSWORD=short-one", "CULEX_ADMIN_DEFAULT_PASSWORD=long-one"}, io.Discard)
	if err != nil || c.Admin.DefaultPassword != "long-one" {
		t.Fatalf("long env: %+v %v", c.Admin, err)
	}
	c, err = Parse("serve", []string{"--admin.secure-cookies", "always"}, []string{"CULEX_ADMIN_RATE_LIMIT_PER_ADDRESS=3"}, io.Discard)
	if err != nil || c.Admin.SecureCookies != "always" || c.Admin.RateLimit.PerAddress != 3 || c.Admin.RateLimit.PerUsername != 5 {
		t.Fatalf("secure_cookies and rate_limit: %+v %v", c.Admin, err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--admin.listen", "localhost"}, "admin.listen"},
		{[]string{"--admin.tls.cert-file", "c.pem"}, "admin.tls"},
		{[]string{"--admin.session-ttl", "1s"}, "admin.session_ttl"},
		{[]string{"--admin.default-password", "short"}, "admin.default_password"},
		{[]string{"--admin.secure-cookies", "yes"}, "admin.secure_cookies"},
		{[]string{"--admin.rate-limit.max-delay", "1m"}, "admin.rate_limit.max_delay"},
		{[]string{"--admin.rate-limit.window", "0s"}, "admin.rate_limit.window"},
	} {
		_, err := Parse("serve", tc.args, nil, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want an error naming %s", tc.args, err, tc.want)
		}
	}
}
