package config

import (
	"fmt"
	"net"
	"time"
)

// Admin is the admin HTTP listener: the REST API, /metrics, /healthz,
// /readyz and the dashboard (docs/admin.md).
type Admin struct {
	// Listen is the host:port of the admin listener; empty turns it off.
	// The default binds loopback only: put it behind TLS (TLS) or a
	// reverse proxy before opening it to a network. A default address
	// that cannot be bound (another node on the host has it) is a warning;
	// an address given (ListenSet) that cannot be bound stops the start.
	Listen    string `yaml:"listen" given:"ListenSet"`
	ListenSet bool   `yaml:"-"`
	// TLS serves the listener over HTTPS (both files or neither); session
	// cookies are then marked Secure.
	TLS AdminTLS `yaml:"tls"`
	// DefaultPassword is the password of the admin account the first start
	// creates; empty creates admin/public, which must change its password
	// before it can do anything else. CULEX_ADMIN_PASSWORD sets it too.
	// Only the first start (no accounts stored yet) reads it.
	DefaultPassword string `yaml:"default_password" secret:"true"`
	// SessionTTL is how long a dashboard login lasts.
	SessionTTL time.Duration `yaml:"session_ttl"`
	// SecureCookies marks the session cookie Secure (sent over HTTPS
	// only): auto (when TLS is set), always (behind a reverse proxy that
	// terminates HTTPS) or never.
	SecureCookies string `yaml:"secure_cookies"`
	// RateLimit limits failed dashboard logins and API keys, apart from
	// the device logins' auth.rate_limit (0 turns a limit off).
	RateLimit AuthRateLimit `yaml:"rate_limit"`
}

// AdminTLS is the admin listener's certificate.
type AdminTLS struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// DefaultAdmin is the admin section's defaults: loopback, port 18083 as
// EMQX's dashboard.
func DefaultAdmin() Admin {
	return Admin{Listen: "127.0.0.1:18083", SessionTTL: 8 * time.Hour, SecureCookies: "auto",
		RateLimit: AuthRateLimit{PerAddress: 10, PerUsername: 5, Window: 15 * time.Minute, Ban: 15 * time.Minute,
			MaxDelay: 5 * time.Second}}
}

// adminPasswordEnv is the short name of CULEX_ADMIN_DEFAULT_PASSWORD that
// automated installs use.
const adminPasswordEnv = "CULEX_ADMIN_PASSWORD"

// ctlEnv are the variables of `culex ctl`, which `culex serve` ignores so
// that one shell can hold both.
var ctlEnv = map[string]bool{"CULEX_ADMIN_URL": true, "CULEX_API_KEY": true}

func (a *Admin) validate(bad func(key, format string, args ...any)) {
	if a.Listen != "" {
		if _, port, err := net.SplitHostPort(a.Listen); err != nil || port == "" {
			bad("admin.listen", "%q is not host:port (127.0.0.1:18083, :18083; empty turns the listener off)", a.Listen)
		}
	}
	if (a.TLS.CertFile == "") != (a.TLS.KeyFile == "") {
		bad("admin.tls", "cert_file and key_file go together")
	}
	if a.SessionTTL < time.Minute {
		bad("admin.session_ttl", "%v is under a minute", a.SessionTTL)
	}
	switch a.SecureCookies {
	case "auto", "always", "never":
	default:
		bad("admin.secure_cookies", "%q: want auto, always or never", a.SecureCookies)
	}
	if rl := a.RateLimit; (rl.PerAddress > 0 || rl.PerUsername > 0) && rl.Window <= 0 {
		bad("admin.rate_limit.window", "must be above 0 while a limit is set")
	}
	if d := a.RateLimit.MaxDelay; d > 10*time.Second {
		bad("admin.rate_limit.max_delay", "%v is over 10s, how long a login waits for its turn", d)
	}
	if n := len(a.DefaultPassword); n > 0 && (n < 8 || n > 72) {
		bad("admin.default_password", "%s", fmt.Sprintf("must be 8 to 72 bytes long, not %d", n))
	}
}
