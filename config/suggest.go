package config

// keyAliases maps keys people write by habit (kubectl short names, plurals)
// to the key this format uses.
var keyAliases = map[string]string{
	"po":           "pod",
	"pods":         "pod",
	"svc":          "service",
	"services":     "service",
	"deploy":       "deployment",
	"deployments":  "deployment",
	"sts":          "statefulset",
	"statefulsets": "statefulset",
	"stateful-set": "statefulset",
	"l":            "selector",
	"label":        "selector",
	"labels":       "selector",
	"ns":           "namespace",
	"port":         "ports",
	"addresses":    "address",
	"kube-context": "context",
	"kubecontext":  "context",
}

// suggest returns the allowed key closest to an unknown one, or "" when
// none is close enough to be a likely typo.
func suggest(key string, allowed []string) string {
	if alias, ok := keyAliases[key]; ok {
		for _, a := range allowed {
			if a == alias {
				return a
			}
		}
	}
	best, bestDist := "", max(1, min(3, len(key)/2))+1
	for _, a := range allowed {
		if d := editDistance(key, a); d < bestDist {
			best, bestDist = a, d
		}
	}
	return best
}

// editDistance is the optimal-string-alignment distance between a and b:
// insertions, deletions, substitutions and transpositions of adjacent bytes
// each cost one.
func editDistance(a, b string) int {
	// Keys are short; bound the work for pathological input anyway.
	if len(a) > 64 || len(b) > 64 {
		return max(len(a), len(b))
	}
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}
