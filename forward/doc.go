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
// back; per SPDY connection, that times its streams, plus a 16 KiB read
// buffer, a frame writer buffer of up to 256 KiB (and, only while a
// write is under way, frames held by a cork, up to 64 KiB, and package
// kube's pooled batch of TLS records), and from the first
// reply a zlib reader of about 45 KB for the server's header blocks
// (spdystream's own header compression, an 800 KB zlib writer per
// connection, is turned off: headers.go); over WebSocket also the
// library's 4 KiB read and write buffers, and a pooled buffer the size of
// a frame while one is written; per session, that
// times its connections (one, plus any draining after a move). Disk: up to
// SpillLimit per stream, only while its reader is behind. An idle
// connection holds no data buffer: its local reads wait for readability
// before taking one (BenchmarkIdleConnections measures 23-29 KiB per
// idle connection, half or more of it the stacks of its five goroutines).
//
// The kubelet's side of the same problem (a pod that does not read what we
// send stalls the kubelet's frame workers for that connection) cannot be
// fixed from the client.
//
// # Where the time goes
//
// Against the kubelet's own server code (make bench, tests/protocol
// BenchmarkTable, which also reports each side's CPU), the client is the
// bound for uploads and its own CPU; downloads and connection setup are
// bound by the server, round trips by both. What the client does about
// its part:
//   - One write(2) per frame, or per burst. crypto/tls writes every record
//     (16 KiB at most) with its own syscall; package kube puts a batching
//     connection under TLS (writeBatcher) and the frame writer runs each
//     write as one batch. A new local connection's two SYN_STREAMs, the
//     error stream's FIN and whatever the local client already sent leave
//     corked, in one write and one TLS record (frameWriter.cork,
//     pair.sendEarly).
//   - One goroutine hop fewer per small received frame: while the stream
//     buffer is empty, the goroutine that receives a frame of up to 8 KiB
//     writes it to the local socket without waiting (pair.writeNow).
//
// What is left was measured before deciding to keep spdystream (make
// bench, medians of 5, 2 CPUs shared by client and server): per 1-byte
// round trip the client uses about 110 µs of CPU, as client-go does, and
// the kubelet's code 130 µs; per new connection the client 370 µs
// (client-go 750) and the server 565 µs (client-go 835). A round-trip
// profile of the client is half syscalls and a quarter futex and
// scheduler: the kubelet writes each frame as three TLS records, so the
// frame reader wakes up to three times per frame, and then each received
// frame is allocated (spdy.Framer), queued in a PriorityFrameQueue (mutex,
// sync.Cond, heap), handed to one of five frame workers and from there
// over an unbuffered channel to our receive goroutine, and every frame
// read or written also wakes the idleAwareFramer's monitor goroutine, even
// with no idle timeout. The round-trip goal (0.7x client-go) needs the
// client's share cut by more than half, which the wake-ups inside
// spdystream prevent; the connection goal (2x) is below what the server
// alone uses per connection here. The way forward, when it is worth it, is
// our own connection logic on spdystream's spdy framer rather than a
// wrapper: the wire layer already parses every frame header (endTracker),
// and could hand the DATA frames of our streams straight to their stream
// buffers, giving spdystream only control frames (or replacing it). The
// monitor's wake-up per frame is a small upstream patch (signal only when
// an idle timeout is set).
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
