package kube

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
)

func TestUpgradeRefusedOrAnswered(t *testing.T) {
	status := []byte(`{"kind":"Status","apiVersion":"v1","status":"Failure","message":"pods \"web\" is forbidden","reason":"Forbidden","code":403}`)
	tests := []struct {
		name    string
		err     error
		refused bool
		says    string
	}{
		{"the API server's 403", &UpgradeError{StatusCode: 403, Status: "403 Forbidden", Body: status, Message: `pods "web" is forbidden`, Method: http.MethodGet, Resource: "pods/portforward"}, false, "RBAC"},
		{"a proxy's 403", &UpgradeError{StatusCode: 403, Status: "403 Forbidden", Body: []byte("blocked by policy\n"), Method: http.MethodPost}, true, "not an answer of the API server"},
		{"a server without websockets", &UpgradeError{StatusCode: 400, Status: "400 Bad Request", Body: []byte("unable to upgrade")}, true, "refused the upgrade"},
		{"a proxy that will not tunnel", fmt.Errorf("proxy http://p: %w", &ProxyError{Status: "407 Proxy Authentication Required"}), true, "proxy refused"},
		{"a dial error", errors.New("dial tcp: connection refused"), false, "connection refused"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r interface{ UpgradeRefused() bool }
			got := errors.As(tt.err, &r) && r.UpgradeRefused()
			if got != tt.refused {
				t.Errorf("UpgradeRefused: got %v, want %v", got, tt.refused)
			}
			if !strings.Contains(tt.err.Error(), tt.says) {
				t.Errorf("message %q does not say %q", tt.err, tt.says)
			}
		})
	}
}
