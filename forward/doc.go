// Package forward forwards local TCP connections to a pod over the Kubernetes port-forward protocol (SPDY/3.1, directly or inside a WebSocket).
//
// # Transports
//
// A Conn runs the same SPDY/3.1 code over either upgrade (transport.go): a
// POST upgraded to SPDY, or a GET upgraded to a WebSocket whose binary
// messages carry the SPDY frames (websocket.go, a net.Conn over
// github.com/coder/websocket). Keepalive pings, stream pairs, buffering
// and honest endings are therefore one implementation; the WebSocket conn
// exposes the TCP socket underneath (NetConn), so the keepalive's TCP_INFO
// reading works the same. TransportAuto tries WebSocket and falls back to
// SPDY only when the upgrade itself is refused (UpgradeRefused).
//
// # Honest endings
//
// A forwarded connection is either whole or visibly broken. The local
// client gets a FIN (a clean EOF) only when the server finished the
// connection's data stream with a FIN and its error stream ended empty; the
// kubelet closes the error stream before the data stream on success, so
// this costs nothing on the happy path. spdystream ends a stream's reads
// with the same EOF for a FIN, a reset and a lost connection, so the
// connection's reader records the FIN flags of the frames it reads
// (endTracker) before spdystream handles them. Any other end (a message on
// the error stream, a reset, the SPDY connection lost, the session closed)
// reaches the local client as a TCP reset, after every byte that had
// arrived: what was received is written out, the socket's send queue is
// left to drain (SIOCOUTQ), and only then is the socket closed with
// SO_LINGER 0.
//
// # Backpressure
//
// Neither spdystream nor the kubelet implements SPDY flow control, so all
// streams of a SPDY connection share one TCP receive path: a client that
// stops reading the connection because one local reader is slow stalls
// every stream on it (client-go's behaviour), and its keepalive then sees
// silence. The choices (docs/protocol.md §14) were a pool of SPDY
// connections per pod, a connection per heavy stream, or buffering the slow stream so that the frame reader never
// waits. A pool only bounds the blast radius (the streams already on a
// blocked connection still stall) and a stream cannot be moved once it
// turns heavy; buffering keeps every other stream flowing, costs nothing
// while readers keep up, and loses no byte. So each stream has a
// streamBuffer, as nginx's proxy_buffering: received data waits in memory
// up to Options.StreamBuffer (256 KiB); when that is full and the local
// reader takes nothing for 20 ms, it waits in an unlinked temporary file
// up to Options.SpillLimit (1 GiB), and only past that does the stream's
// reader stop, stalling the connection as before. (A reader that is merely
// slower than the pod stays in memory and sets the pace: spilling a busy
// stream cost 15% of download throughput, measured by BenchmarkDownload.) The keepalive counts a
// reader stopped this way as life, never as a dead peer.
//
// Memory bounds, with the defaults: per stream, 256 KiB of received data
// plus one frame (the kubelet sends at most 32 KiB), and one 128 KiB read
// buffer from a pool while local data is being sent or spilled data read
// back; per SPDY connection, that times its streams, plus a 64 KiB read
// buffer, a frame writer buffer of up to 256 KiB, and from the first
// reply a zlib reader of about 45 KB for the server's header blocks
// (spdystream's own header compression, an 800 KB zlib writer per
// connection, is turned off: headers.go); over WebSocket also the
// library's 4 KiB read and write buffers, and a pooled buffer the size of
// a frame while one is written; per session, that
// times its connections (one, plus any draining after a move). Disk: up to
// SpillLimit per stream, only while its reader is behind. An idle
// connection holds no data buffer: its local reads wait for readability
// before taking one (BenchmarkIdleConnections measures about 29 KiB per
// idle connection, two thirds of it the stacks of its five goroutines).
//
// The kubelet's side of the same problem (a pod that does not read what we
// send stalls the kubelet's frame workers for that connection) cannot be
// fixed from the client.
//
// # Failures and retries
//
// One failed connection fails alone. A connection that never reached the
// pod (no reply to its streams, the pod gone, the stream reset or the link
// lost before any byte came back) is not failed: it waits for the session's
// next connection and is tried there, sending again the up to 64 KiB it had
// sent, until SessionOptions.ConnectWait has passed. A connection that
// cannot open streams, or whose server stopped answering new ones, is
// marked stale: the session dials a fresh one, and the stale one drains,
// as does the old connection when the target moves to another pod (or to
// a pod re-created under the same name, told apart by UID), so that
// connections already open are not cut.
package forward
