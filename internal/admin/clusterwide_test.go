package admin_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/culexmq/culex/internal/config"
)

// TestBansKeptAcrossRestart: manual bans are saved in data_dir: a node
// started again on the same data_dir refuses the banned client id (a real
// mosquitto_pub gets 0x8A) and lists the ban with its reason and end;
// lifting it there is saved too.
func TestBansKeptAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	withDir := func(c *config.Config) { c.DataDir, c.Admin.DefaultPassword = dir, "admin-pw-1" }
	first := startNode(t, withDir)
	a := adminClient(t, first, "admin-pw-1")
	a.want(http.StatusCreated, "POST", "/api/v1/bans", map[string]any{"kind": "client_id", "value": "kept-dev", "reason": "stolen", "duration_seconds": 3600}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := first.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}

	for i, wantBans := range []int{1, 0} {
		srv := startNode(t, withDir)
		out, err := mosquittoPub(t, srv, "-i", "kept-dev", "-t", "t", "-m", "x")
		if banned := err != nil && strings.Contains(strings.ToLower(out), "banned"); banned != (wantBans == 1) {
			t.Fatalf("start %d: kept-dev: %v %q, banned want %v", i+2, err, out, wantBans == 1)
		}
		a := adminClient(t, srv, "admin-pw-1")
		var bans []struct {
			Value, Source, Reason string
			Until                 *time.Time
		}
		a.want(http.StatusOK, "GET", "/api/v1/bans", nil, &bans)
		if len(bans) != wantBans || wantBans == 1 && (bans[0].Value != "kept-dev" || bans[0].Reason != "stolen" || bans[0].Until == nil || time.Until(*bans[0].Until) < 50*time.Minute) {
			t.Fatalf("start %d: bans %+v, want %d", i+2, bans, wantBans)
		}
		if wantBans == 1 {
			a.want(http.StatusNoContent, "DELETE", "/api/v1/bans/client_id/kept-dev", nil, nil)
		}
		if err := srv.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
	}
}
