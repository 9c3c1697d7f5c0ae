module github.com/tunnels-dev/tunnels

go 1.26.0

require (
	github.com/coder/websocket v1.8.15
	github.com/fsnotify/fsnotify v1.10.1
	github.com/moby/spdystream v0.5.1
	gopkg.in/yaml.v3 v3.0.1
)

require golang.org/x/sys v0.13.0

require golang.org/x/sync v0.24.0
