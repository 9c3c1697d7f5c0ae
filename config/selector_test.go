package config

import (
	"errors"
	"strings"
	"testing"
)

func TestParseSelector(t *testing.T) {
	tests := []struct{ in, want string }{
		{"app=web", "app=web"},
		{"app==web", "app=web"},
		{" app = web ", "app=web"},
		{"app=web,tier=front", "app=web,tier=front"},
		{"tier=front, app=web", "app=web,tier=front"},
		{"app=web,app=web", "app=web"},
		{"app!=web", "app!=web"},
		{"app", "app"},
		{"!canary", "!canary"},
		{"! canary", "!canary"},
		{"env in (qa, dev)", "env in (dev,qa)"},
		{"env in (dev,dev)", "env in (dev)"},
		{"env notin (prod)", "env notin (prod)"},
		{"env in(dev)", "env in (dev)"},
		{"app=", "app="},
		{"app=,tier=front", "app=,tier=front"},
		{"example.com/app=web", "example.com/app=web"},
		{"app.kubernetes.io/name=Web_1.x", "app.kubernetes.io/name=Web_1.x"},
		{"tier=front,!canary,env in (dev),app", "app,!canary,env in (dev),tier=front"},
	}
	for _, tt := range tests {
		got, err := ParseSelector(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParseSelector(%q) = %q, %v; want %q, nil", tt.in, got, err, tt.want)
		}
	}
}

func TestParseSelectorErrors(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", "empty"},
		{" ", "empty"},
		{"app=web,", "want a label key, got end of selector"},
		{",app=web", `want a label key, got ","`},
		{"=web", `want a label key, got "="`},
		{"-app=web", `label key "-app"`},
		{"a/b/c=d", `label key "a/b/c"`},
		{"Example.com/app=web", `the prefix before '/'`},
		{"/app=web", `the prefix before '/'`},
		{"app/=web", `label key "app/": the name must be`},
		{"app=web!", `unexpected "!" after term "app=web"`},
		{"app=-web", `label value "-web" must be empty or`},
		{"app=" + strings.Repeat("x", 64), `label value "xxx`},
		{strings.Repeat("k", 64) + "=v", `label key "kkk`},
		{"replicas>1", `operator ">" is not supported`},
		{"replicas<1", `operator "<" is not supported`},
		{"env in dev", `want '(' after "env" in, got "dev"`},
		{"env in (dev,qa", `want ',' or ')' in "env" in (...), got end of selector`},
		{"env in ()", `want a label value in "env" in (...), got ")"`},
		{"env in (a,,b)", `want a label value in "env" in (...), got ","`},
		{"env notin (a b)", `want ',' or ')' in "env" notin (...), got "b"`},
		{"env in (-a)", `label value "-a" must be`},
		{"app web", `unexpected "web" after label key "app"`},
		{"app=web tier=front", `unexpected "tier" after term "app=web"`},
		{"!", "want a label key after '!', got end of selector"},
		{"!app=web", `unexpected "=" after term "!app"`},
		{"(app)", `want a label key, got "("`},
	}
	for _, tt := range tests {
		got, err := ParseSelector(tt.in)
		if err == nil {
			t.Errorf("ParseSelector(%q) = %q, nil; want an error containing %q", tt.in, got, tt.want)
			continue
		}
		if !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "selector ") {
			t.Errorf("ParseSelector(%q) error = %q; want it to contain %q", tt.in, err, tt.want)
		}
		var se *SelectorError
		if !errors.As(err, &se) || se.Selector != tt.in || !errors.Is(err, ErrInvalidSelector) {
			t.Errorf("ParseSelector(%q) error = %#v; want a *SelectorError matching ErrInvalidSelector", tt.in, err)
		}
	}
}

func TestMatchSelector(t *testing.T) {
	labels := map[string]string{"app": "web", "tier": "front", "env": "dev"}
	tests := []struct {
		sel  string
		want bool
	}{
		{"app=web", true},
		{"app==web", true},
		{"app=db", false},
		{"app=web,tier=front", true},
		{"app=web,tier=back", false},
		{"app!=db", true},
		{"app!=web", false},
		{"missing!=x", true}, // the API server selects pods without the key
		{"app", true},
		{"missing", false},
		{"!missing", true},
		{"!app", false},
		{"env in (dev,qa)", true},
		{"env in (prod)", false},
		{"missing in (dev)", false},
		{"env notin (prod)", true},
		{"env notin (dev)", false},
		{"missing notin (dev)", true},
		{"app=", false},
	}
	for _, tt := range tests {
		got, err := MatchSelector(tt.sel, labels)
		if err != nil || got != tt.want {
			t.Errorf("MatchSelector(%q) = %v, %v; want %v, nil", tt.sel, got, err, tt.want)
		}
	}
	if got, err := MatchSelector("app=web", map[string]string{"app": ""}); err != nil || got {
		t.Errorf("MatchSelector(app=web) of an empty value = %v, %v; want false, nil", got, err)
	}
	if _, err := MatchSelector("app in (", labels); !errors.Is(err, ErrInvalidSelector) {
		t.Errorf("MatchSelector of a broken selector: err = %v, want ErrInvalidSelector", err)
	}
}
