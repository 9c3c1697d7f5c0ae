package main

import (
	"github.com/tunnels-dev/tunnels/config"
)

// envLookup is ${VAR} expansion's view of the environment: set or not, as
// os.LookupEnv; with only getenv (tests), an empty value counts as unset.
func envLookup(e *env) func(string) (string, bool) {
	if e.lookupEnv != nil {
		return e.lookupEnv
	}
	return func(k string) (string, bool) {
		v := e.getenv(k)
		return v, v != ""
	}
}

// loadFile reads and parses the tunnels file at path with its local
// override and the environment, as tunnels up runs it.
func loadFile(e *env, path string) (*config.File, error) {
	return config.LoadLayers(path, envLookup(e))
}

// parseFile parses data, saved as or over the tunnels file at path and
// named name in problems, with path's local override and the environment.
func parseFile(e *env, path, name string, data []byte) (*config.File, error) {
	local, err := config.ReadLocal(path)
	if err != nil {
		return nil, err
	}
	return config.ParseLayers(config.Layer{Name: name, Data: data}, local, envLookup(e))
}
