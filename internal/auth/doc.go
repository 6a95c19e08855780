// Package auth is Culex's device security: an authentication chain (users
// file, HTTP webhook, JWT, TLS client certificates, SCRAM-SHA-256 enhanced
// authentication), topic ACLs with placeholders, failed-login rate limits
// with temporary bans, and hot reload of the users and ACL files.
//
// The core types (Identity, Request, Chain, ACL, Users, Limiter) import
// nothing of the broker; adapter.go plugs a Service into the broker's
// Authenticator and Authorizer seams. docs/security.md describes the file
// formats and the policy; the lock order is: Service.mu, then any backend
// mutex, then Limiter.mu; none is held while hashing or doing I/O.
package auth
