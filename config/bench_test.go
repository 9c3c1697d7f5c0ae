package config

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

func BenchmarkParseFull(b *testing.B) {
	data, err := os.ReadFile("../examples/full.yaml")
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := Parse("full.yaml", data); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParseManyTunnels parses 10,000 tunnels sharing one local port on
// distinct addresses: the conflict check must stay linear.
func BenchmarkParseManyTunnels(b *testing.B) {
	var sb strings.Builder
	sb.WriteString("version: 1\ntunnels:\n")
	for i := range 10000 {
		fmt.Fprintf(&sb, "  t%d: {pod: p%d, address: 127.0.%d.%d, ports: [80, ':81']}\n", i, i, i/250, i%250+1)
	}
	data := []byte(sb.String())
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := Parse("many.yaml", data); err != nil {
			b.Fatal(err)
		}
	}
}
