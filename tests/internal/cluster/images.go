package cluster

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// nodeImages are the real node's images: each one static Go binary from
// tests/cluster/images, its entry point.
var nodeImages = []struct{ ref, pkg string }{
	{PauseImage, "./cluster/images/pause"},
	{PodServerImage, "./cluster/images/podserver"},
}

// buildImages compiles the images' binaries (static, CGO_ENABLED=0, so they
// need nothing from a base image) and writes each image as a docker-archive
// tarball that `ctr images import` loads. It returns the tarballs' paths.
func buildImages(ctx context.Context, nodeDir string, o *Options) ([]string, error) {
	start := time.Now()
	dir := filepath.Join(nodeDir, "images")
	var tars []string
	for _, img := range nodeImages {
		name := filepath.Base(img.pkg)
		bin := filepath.Join(dir, name)
		cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, img.pkg)
		cmd.Dir = filepath.Join(repoRoot(o), "tests")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOFLAGS=", "GOWORK=off")
		if out, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("build image binary %s: %w: %s", img.pkg, err, bytes.TrimSpace(out))
		}
		tarPath := filepath.Join(dir, name+".tar")
		if err := writeDockerArchive(tarPath, img.ref, bin); err != nil {
			return nil, err
		}
		tars = append(tars, tarPath)
	}
	o.logf("built images %s and %s in %s", PauseImage, PodServerImage, time.Since(start).Round(100*time.Millisecond))
	return tars, nil
}

// writeDockerArchive writes a one-layer image holding bin as /NAME, its
// entry point, in the format `docker save` writes: manifest.json, the
// image config named by its digest, and the layer tarball.
func writeDockerArchive(path, ref, bin string) error {
	exe, err := os.ReadFile(bin)
	if err != nil {
		return fmt.Errorf("read image binary: %w", err)
	}
	name := filepath.Base(bin)
	var layer bytes.Buffer
	lw := tar.NewWriter(&layer)
	mtime := time.Unix(0, 0)
	for _, d := range []string{"etc/", "tmp/", "dev/", "proc/", "sys/"} {
		lw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d, Mode: 0o755, ModTime: mtime})
	}
	lw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o755, Size: int64(len(exe)), ModTime: mtime})
	lw.Write(exe)
	if err := lw.Close(); err != nil {
		return fmt.Errorf("write image layer: %w", err)
	}
	layerSum := sha256.Sum256(layer.Bytes())
	config, _ := json.Marshal(map[string]any{
		"architecture": runtime.GOARCH,
		"os":           "linux",
		"created":      mtime.UTC().Format(time.RFC3339),
		"config": map[string]any{
			"Entrypoint": []string{"/" + name},
			"Env":        []string{"PATH=/"},
		},
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{"sha256:" + hex.EncodeToString(layerSum[:])}},
	})
	configSum := sha256.Sum256(config)
	configName := hex.EncodeToString(configSum[:]) + ".json"
	layerName := hex.EncodeToString(layerSum[:]) + "/layer.tar"
	manifest, _ := json.Marshal([]map[string]any{{
		"Config":   configName,
		"RepoTags": []string{strings.TrimPrefix(ref, "docker.io/")},
		"Layers":   []string{layerName},
	}})

	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("create image archive: %w", err)
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	for _, e := range []struct {
		name string
		data []byte
	}{
		{filepath.Dir(layerName) + "/", nil},
		{layerName, layer.Bytes()},
		{configName, config},
		{"manifest.json", manifest},
	} {
		h := &tar.Header{Typeflag: tar.TypeReg, Name: e.name, Mode: 0o644, Size: int64(len(e.data)), ModTime: mtime}
		if strings.HasSuffix(e.name, "/") {
			h.Typeflag, h.Mode = tar.TypeDir, 0o755
		}
		if err := tw.WriteHeader(h); err != nil {
			return fmt.Errorf("write image archive: %w", err)
		}
		if _, err := tw.Write(e.data); err != nil {
			return fmt.Errorf("write image archive: %w", err)
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("write image archive: %w", err)
	}
	return f.Close()
}
