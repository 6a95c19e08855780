// Package admin is a node's admin HTTP listener: the REST API under
// /api/v1 described by openapi.json (served at /api/v1/openapi.json), its
// authentication (dashboard accounts with roles, API keys, sessions with
// CSRF tokens), and the mount points of the metrics, health and dashboard
// handlers. See docs/admin.md.
package admin
