package admin

import "net/http"

// route is one API operation: what it requires and its handler. The
// OpenAPI document lists exactly these (openapi_test.go).
type route struct {
	method, path string
	access       access
	h            handlerFunc
}

// routes is the API, in the order of openapi.json.
func (s *Server) routes() []route {
	return []route{
		{"GET", "/api/v1/openapi.json", public, s.openapi},
		{"POST", "/api/v1/login", public, s.login},
		{"POST", "/api/v1/logout", self, s.logout},
		{"GET", "/api/v1/session", public, s.session},
		{"GET", "/api/v1/me", self, s.me},
		{"POST", "/api/v1/me/password", self, s.changePassword},
		{"GET", "/api/v1/accounts", write, s.listAccounts},
		{"POST", "/api/v1/accounts", write, s.addAccount},
		{"PUT", "/api/v1/accounts/{username}", write, s.updateAccount},
		{"DELETE", "/api/v1/accounts/{username}", write, s.deleteAccount},
		{"GET", "/api/v1/api-keys", write, s.listKeys},
		{"POST", "/api/v1/api-keys", write, s.addKey},
		{"DELETE", "/api/v1/api-keys/{id}", write, s.deleteKey},
		{"GET", "/api/v1/nodes", read, s.listNodes},
		{"GET", "/api/v1/nodes/{node}", read, s.getNode},
		{"GET", "/api/v1/clients", read, s.listClients},
		{"GET", "/api/v1/clients/{client_id}", read, s.getClient},
		{"POST", "/api/v1/clients/{client_id}/kick", write, s.kickClient},
		{"GET", "/api/v1/sessions", read, s.listSessions},
		{"GET", "/api/v1/subscriptions", read, s.listSubscriptions},
		{"GET", "/api/v1/topics", read, s.listTopics},
		{"GET", "/api/v1/retained", read, s.listRetained},
		{"GET", "/api/v1/retained/{topic}", read, s.getRetained},
		{"DELETE", "/api/v1/retained/{topic}", write, s.deleteRetained},
		{"GET", "/api/v1/retained-message", read, s.getRetained},
		{"DELETE", "/api/v1/retained-message", write, s.deleteRetained},
		{"GET", "/api/v1/bans", read, s.listBans},
		{"POST", "/api/v1/bans", write, s.addBan},
		{"DELETE", "/api/v1/bans/{kind}/{value}", write, s.deleteBan},
		{"GET", "/api/v1/users", read, s.listUsers},
		{"POST", "/api/v1/users", write, s.addUser},
		{"PUT", "/api/v1/users/{username}", write, s.updateUser},
		{"DELETE", "/api/v1/users/{username}", write, s.deleteUser},
		{"GET", "/api/v1/acl", read, s.getACL},
		{"POST", "/api/v1/acl/reload", write, s.reloadACL},
		{"GET", "/api/v1/kafka", read, s.getKafka},
		{"GET", "/api/v1/kafka/held", read, s.listHeld},
		{"POST", "/api/v1/kafka/held/{topic}/retry", write, s.retryHeld},
		{"DELETE", "/api/v1/kafka/held/{topic}", write, s.dropHeld},
		{"GET", "/api/v1/stats", read, s.getStats},
		{"GET", "/api/v1/config", read, s.getConfig},
	}
}

func (s *Server) openapi(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Content-Type", "application/json")
	_, err := w.Write(openapiJSON)
	return err
}
