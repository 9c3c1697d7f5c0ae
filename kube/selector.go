package kube

import (
	"fmt"
	"sort"
	"strings"
)

// SelectorString converts a label selector to the string form the API's
// labelSelector parameter takes, as metav1.LabelSelectorAsSelector does:
// terms sorted by key, set values sorted. An empty selector selects
// everything and gives "".
func (s *LabelSelector) SelectorString() (string, error) {
	if s == nil {
		return "", nil
	}
	type term struct{ key, text string }
	var terms []term
	for k, v := range s.MatchLabels {
		terms = append(terms, term{k, k + "=" + v})
	}
	for _, e := range s.MatchExpressions {
		vals := append([]string(nil), e.Values...)
		sort.Strings(vals)
		switch e.Operator {
		case "In":
			if len(vals) == 0 {
				return "", fmt.Errorf("selector term %q: operator In needs values", e.Key)
			}
			terms = append(terms, term{e.Key, e.Key + " in (" + strings.Join(vals, ",") + ")"})
		case "NotIn":
			if len(vals) == 0 {
				return "", fmt.Errorf("selector term %q: operator NotIn needs values", e.Key)
			}
			terms = append(terms, term{e.Key, e.Key + " notin (" + strings.Join(vals, ",") + ")"})
		case "Exists":
			terms = append(terms, term{e.Key, e.Key})
		case "DoesNotExist":
			terms = append(terms, term{e.Key, "!" + e.Key})
		default:
			return "", fmt.Errorf("selector term %q: unknown operator %q", e.Key, e.Operator)
		}
	}
	sort.SliceStable(terms, func(i, j int) bool { return terms[i].key < terms[j].key })
	out := make([]string, len(terms))
	for i, t := range terms {
		out[i] = t.text
	}
	return strings.Join(out, ","), nil
}

// mapSelector renders a service's equality selector.
func mapSelector(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + m[k]
	}
	return strings.Join(parts, ",")
}
