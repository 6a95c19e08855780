package auth

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"
)

// Webhook asks an HTTP endpoint: it POSTs a JSON webhookRequest and reads
// {"result": "allow"|"deny"|"ignore", "username": "...", "superuser": bool,
// "acl": [...]}. An allow's username, when given, is the client's identity
// (its ACL ${username} and its session's owner) instead of the CONNECT's.
// Timeouts, transport errors, non-2xx statuses and unreadable answers are
// failures, answered as OnError says. Answers (not failures) are cached
// for CacheTTL by a digest of the credentials.
type Webhook struct {
	URL     string
	Client  *http.Client
	Timeout time.Duration
	// NextOnError passes the request to the next backend on a failure
	// instead of denying it.
	NextOnError bool
	CacheTTL    time.Duration

	mu    sync.Mutex
	cache map[[32]byte]cachedAnswer
	now   func() time.Time
}

type cachedAnswer struct {
	res     Result
	expires time.Time
}

// webhookRequest is the JSON body of the POST.
type webhookRequest struct {
	ClientID string `json:"clientid"`
	Username string `json:"username"`
	Password string `json:"password"`
	Peer     string `json:"peer"`
	CertCN   string `json:"cert_cn"`
}

type webhookAnswer struct {
	Result    string          `json:"result"`
	Username  string          `json:"username"`
	Superuser bool            `json:"superuser"`
	ACL       json.RawMessage `json:"acl"`
}

const maxWebhookCache = 100_000

// Name implements Authenticator.
func (w *Webhook) Name() string { return "http" }

// Authenticate implements Authenticator.
func (w *Webhook) Authenticate(ctx context.Context, r *Request) (Result, error) {
	body := webhookRequest{ClientID: r.ClientID, Username: r.Username, Password: string(r.Password),
		CertCN: verifiedCN(r)}
	if r.Remote != nil {
		body.Peer = r.Remote.String()
	}
	key := w.key(&body)
	if res, ok := w.cached(key); ok {
		return res, nil
	}
	res, err := w.ask(ctx, &body)
	if err != nil {
		if w.NextOnError {
			return Result{}, nil
		}
		return Result{}, err
	}
	w.remember(key, res)
	return res, nil
}

func (w *Webhook) ask(ctx context.Context, body *webhookRequest) (Result, error) {
	if w.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, w.Timeout)
		defer cancel()
	}
	data, _ := json.Marshal(body)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.URL, bytes.NewReader(data))
	if err != nil {
		return Result{}, fmt.Errorf("webhook: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	client := w.Client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return Result{}, fmt.Errorf("webhook: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		return Result{}, fmt.Errorf("webhook: status %s", resp.Status)
	}
	var ans webhookAnswer
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&ans); err != nil {
		return Result{}, fmt.Errorf("webhook answer: %w", err)
	}
	switch ans.Result {
	case "allow":
		rules, err := parseJSONRules(ans.ACL)
		if err != nil {
			return Result{}, fmt.Errorf("webhook answer: %w", err)
		}
		if len(ans.Username) > maxNameLen {
			return Result{}, fmt.Errorf("webhook answer: username longer than %d bytes", maxNameLen)
		}
		return Result{Verdict: Allow, Username: ans.Username, Superuser: ans.Superuser, ACL: rules}, nil
	case "deny":
		return Result{Verdict: Deny}, nil
	case "ignore":
		return Result{}, nil
	}
	return Result{}, errors.New("webhook answer: result is not allow, deny or ignore")
}

func (w *Webhook) key(b *webhookRequest) [32]byte {
	h := sha256.New()
	for _, s := range []string{b.ClientID, b.Username, b.Password, b.CertCN} {
		fmt.Fprintf(h, "%d:%s", len(s), s)
	}
	var k [32]byte
	h.Sum(k[:0])
	return k
}

func (w *Webhook) clock() time.Time {
	if w.now != nil {
		return w.now()
	}
	return time.Now()
}

func (w *Webhook) cached(k [32]byte) (Result, bool) {
	if w.CacheTTL <= 0 {
		return Result{}, false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	c, ok := w.cache[k]
	if !ok || !w.clock().Before(c.expires) {
		return Result{}, false
	}
	return c.res, true
}

func (w *Webhook) remember(k [32]byte, res Result) {
	if w.CacheTTL <= 0 {
		return
	}
	now := w.clock()
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.cache == nil {
		w.cache = map[[32]byte]cachedAnswer{}
	}
	if len(w.cache) >= maxWebhookCache {
		for k, c := range w.cache {
			if !now.Before(c.expires) {
				delete(w.cache, k)
			}
		}
		if len(w.cache) >= maxWebhookCache {
			clear(w.cache)
		}
	}
	w.cache[k] = cachedAnswer{res: res, expires: now.Add(w.CacheTTL)}
}
