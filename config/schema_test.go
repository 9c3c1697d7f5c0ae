package config

import (
	"bytes"
	"encoding/json"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestRootSchemaUpToDate checks that the repository's schema.json, which
// editors load, is the schema tunnels prints. go generate ./config (or
// go test ./config -run TestRootSchemaUpToDate -update) rewrites it.
func TestRootSchemaUpToDate(t *testing.T) {
	const root = "../schema.json"
	if *update {
		if err := os.WriteFile(root, Schema(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(root)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, Schema()) {
		t.Errorf("%s differs from config/schema.json; run: go generate ./config", root)
	}
}

// TestSchemaShape checks the conventions of the schema: Draft 2020-12, an
// $id, no additional properties on any object with fixed keys, and a
// description on every property, which editors show on hover.
func TestSchemaShape(t *testing.T) {
	var schema map[string]any
	if err := json.Unmarshal(Schema(), &schema); err != nil {
		t.Fatalf("schema.json is not JSON: %v", err)
	}
	if got := schema["$schema"]; got != "https://json-schema.org/draft/2020-12/schema" {
		t.Errorf("$schema = %v; want Draft 2020-12", got)
	}
	if id, _ := schema["$id"].(string); !strings.HasPrefix(id, "https://") {
		t.Errorf("$id = %v; want an https URL", schema["$id"])
	}
	if got, _ := json.Marshal(schema["required"]); string(got) != `["version","tunnels"]` {
		t.Errorf("required = %s; want [version, tunnels]", got)
	}
	objects := 0
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch v := v.(type) {
		case map[string]any:
			if props, ok := v["properties"].(map[string]any); ok {
				objects++
				if v["additionalProperties"] != false {
					t.Errorf("%s: additionalProperties = %v; want false", path, v["additionalProperties"])
				}
				for name, p := range props {
					if d, _ := p.(map[string]any)["description"].(string); d == "" {
						t.Errorf("%s.properties.%s: no description", path, name)
					}
				}
			}
			for k, child := range v {
				walk(path+"."+k, child)
			}
		case []any:
			for i, child := range v {
				walk(path+"["+strconv.Itoa(i)+"]", child)
			}
		}
	}
	walk("$", schema)
	if objects < 2 {
		t.Errorf("found %d object schemas with properties, want the file and the tunnel", objects)
	}
}

// portSpecPatterns returns the string patterns of $defs.portSpec: a string
// spec is valid by the schema when it matches all the patterns of one
// branch.
func portSpecPatterns(t testing.TB) [][]*regexp.Regexp {
	t.Helper()
	var schema struct {
		Defs struct {
			PortSpec struct {
				AnyOf []struct {
					Type    string `json:"type"`
					Pattern string `json:"pattern"`
					AllOf   []struct {
						Pattern string `json:"pattern"`
					} `json:"allOf"`
				} `json:"anyOf"`
			} `json:"portSpec"`
		} `json:"$defs"`
	}
	if err := json.Unmarshal(Schema(), &schema); err != nil {
		t.Fatal(err)
	}
	var branches [][]*regexp.Regexp
	for _, b := range schema.Defs.PortSpec.AnyOf {
		if b.Type != "string" {
			continue
		}
		var res []*regexp.Regexp
		if b.Pattern != "" {
			res = append(res, regexp.MustCompile(b.Pattern))
		}
		for _, a := range b.AllOf {
			res = append(res, regexp.MustCompile(a.Pattern))
		}
		branches = append(branches, res)
	}
	if len(branches) == 0 {
		t.Fatal("no string branches in $defs.portSpec")
	}
	return branches
}

// schemaAcceptsPortSpec reports whether the schema's patterns accept s.
func schemaAcceptsPortSpec(branches [][]*regexp.Regexp, s string) bool {
	for _, res := range branches {
		all := true
		for _, re := range res {
			all = all && re.MatchString(s)
		}
		if all {
			return true
		}
	}
	return false
}

// TestSchemaPortSpecAgreesWithParser checks that the schema's port spec
// patterns accept exactly the string specs ParsePortSpec accepts, so an
// editor flags what tunnels validate rejects. FuzzParsePortSpec checks it
// on random input too.
func TestSchemaPortSpecAgreesWithParser(t *testing.T) {
	branches := portSpecPatterns(t)
	specs := []string{
		"", " ", "0", "1", "9", "10", "99", "100", "999", "1000", "9999", "10000", "59999", "60000", "64999", "65000",
		"65499", "65500", "65529", "65530", "65535", "65536", "65540", "65600", "66000", "70000", "99999", "100000",
		"00080", "0000", "-1", "+1", "1.5", "1e3", "0x1F",
		":80", "0:80", "00:80", "080:80", "65535:80", "65536:80", "-1:80", "a:80", "80:", ":", "::80", "1:2:3",
		"http", ":http", "0:http", "8080:http", "HTTP", "h2c", "1a", "a1", "-a", "a-", "a--b", "a-b", "1-2", "1-a",
		"abcdefghijklmno", "abcdefghijklmnop", "8080:abcdefghijklmno", "8080:abcdefghijklmnop", "a_b", "a.b", " 80", "80 ",
		"8080:80\n", "\n",
	}
	for _, s := range specs {
		_, err := ParsePortSpec(s)
		if got, want := schemaAcceptsPortSpec(branches, s), err == nil; got != want {
			t.Errorf("port spec %q: schema accepts = %v; ParsePortSpec accepts = %v (%v)", s, got, want, err)
		}
	}
}
