package broker

import (
	"context"
	"strings"

	"github.com/culexmq/culex/internal/mqtt/packet"
)

// authState is a CONNECT waiting for its enhanced authentication exchange,
// or the method of a connected client for re-authentication.
type authState struct {
	connect  *packet.Connect
	assigned bool   // the client id was assigned by us
	method   string // Authentication Method [MQTT-4.12]
	resp     []byte // last data from the authenticator, for CONNACK
	reauth   bool   // a re-authentication waits for the client's AUTH 0x18
}

// startAuth begins v5 enhanced authentication with CONNECT's method and data.
func (c *conn) startAuth(st *authState) error {
	ea, ok := c.b.opts.Authenticator.(EnhancedAuthenticator)
	if !ok {
		return c.refuse(packet.ErrBadAuthenticationMethod, nil)
	}
	// A copy: the method is kept for re-authentication, the CONNECT's body
	// is not.
	st.method = strings.Clone(st.connect.Props.AuthMethod)
	c.auth = st
	return c.authStep(ea, st.connect.Props.AuthData, false)
}

// authStep runs one step of the exchange: continue with AUTH 0x18, or
// finish (CONNACK while connecting, AUTH 0x00 when re-authenticating).
func (c *conn) authStep(ea EnhancedAuthenticator, data []byte, reauth bool) error {
	st := c.auth
	ctx, cancel := context.WithTimeout(context.Background(), c.connectTimeout())
	c.mayBlock()
	resp, more, err := ea.AuthExchange(ctx, c.info, st.method, data)
	cancel()
	if err != nil {
		code := codeOf(err, packet.ErrNotAuthorized)
		if reauth {
			return c.fail(code) // [MQTT-4.12.1-2]
		}
		return c.refuse(code, nil)
	}
	st.resp = resp
	st.reauth = reauth && more
	if more {
		if !reauth {
			c.state = stateAuth
		}
		c.sendAuth(packet.ContinueAuthentication, st.method, resp) // [MQTT-4.12.0-1]
		return nil
	}
	if reauth {
		c.sendAuth(packet.Success, st.method, resp)
		return nil
	}
	return c.finishAuth(st)
}

func (c *conn) sendAuth(code packet.Code, method string, data []byte) {
	a := &packet.Auth{ReasonCode: code.Value}
	a.Props.AuthMethod = method
	a.Props.Set(packet.PropAuthMethod)
	if data != nil {
		a.Props.AuthData = data
		a.Props.Set(packet.PropAuthData)
	}
	c.sendPacket(a)
}

// onAuth handles AUTH: the next step of the CONNECT exchange (0x18), or a
// re-authentication (0x19) by a connected client [MQTT-4.12.1].
func (c *conn) onAuth(p *packet.Auth) error {
	if c.version != packet.V5 {
		return c.fail(packet.ErrProtocolError)
	}
	ea, ok := c.b.opts.Authenticator.(EnhancedAuthenticator)
	st := c.auth
	switch {
	case c.state == stateAuth && p.ReasonCode == packet.ContinueAuthentication.Value && ok:
	case c.state == stateConnected && ok && st != nil && (p.ReasonCode == packet.ReAuthenticate.Value ||
		p.ReasonCode == packet.ContinueAuthentication.Value && st.reauth):
	default:
		return c.fail(packet.ErrProtocolError)
	}
	if p.Props.AuthMethod != st.method {
		return c.fail(packet.ErrProtocolError) // [MQTT-4.12.0-5]
	}
	return c.authStep(ea, p.Props.AuthData, c.state == stateConnected)
}
