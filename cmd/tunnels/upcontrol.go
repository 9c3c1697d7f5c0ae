package main

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"

	"github.com/tunnels-dev/tunnels/config"
)

// upControl is what a running `tunnels up` serves on its control socket
// besides its status: POST /stop (tunnels down) and POST /plan (tunnels
// plan).
type upControl struct {
	// stop ends the `tunnels up` as SIGTERM would.
	stop func()
	// plan diffs a candidate file, named name for problem locations,
	// against what runs; config.Problems when it is invalid.
	plan func(name string, data []byte) (*planReport, error)
}

// maxCandidate caps the size of a candidate file sent to POST /plan.
const maxCandidate = 8 << 20

func (u upControl) routes(mux *http.ServeMux) {
	mux.HandleFunc("POST /stop", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, "{}\n")
		u.stop()
	})
	mux.HandleFunc("POST /plan", func(w http.ResponseWriter, r *http.Request) {
		data, err := io.ReadAll(io.LimitReader(r.Body, maxCandidate))
		if err != nil {
			http.Error(w, "read candidate: "+err.Error(), http.StatusBadRequest)
			return
		}
		name := r.URL.Query().Get("name")
		rep, err := u.plan(name, data)
		var problems config.Problems
		switch {
		case errors.As(err, &problems):
			http.Error(w, problems.Error(), http.StatusUnprocessableEntity)
			return
		case err != nil:
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(rep)
	})
}
