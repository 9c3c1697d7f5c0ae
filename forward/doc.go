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
// SPDY only when the upgrade itself is refused (UpgradeRefused); a Session
// remembers the fallback and dials SPDY directly for autoFallbackTTL.
//
// # Honest endings
//
// A forwarded connection is either whole or visibly broken. The local
// client gets a FIN (a clean EOF) only when the server finished the
// connection's data stream with a FIN and its error stream ended empty; the
// kubelet closes the error stream before the data stream on success, so
// this costs nothing on the happy path. The connection's frame reader
// (spdy.go) ends each stream with what ended it: a FIN, a reset, or the
// connection's own end, which is recorded before any stream is ended
// (spdystream, which we used before, ended all three with the same EOF,
// docs/protocol.md §7). Any other end (a message on the error stream, a
// reset, the SPDY connection lost, the session closed) reaches the local
// client as a TCP reset, after every byte that had
// arrived: what was received is written out, the socket's send queue is
// left to drain (SIOCOUTQ), and only then is the socket closed with
// SO_LINGER 0.
//
// # Backpressure
//
// Neither our client nor the kubelet implements SPDY flow control, so all
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
// reader stopped this way as life, never as a dead peer. (A session does
// keep a small pool of connections to its pod now, but for throughput,
// pool.go: each stream stays on the connection it started on, so the pool
// spreads the load, not the stall.)
//
// Memory bounds, with the defaults: per stream, 256 KiB of received data
// plus one 32 KiB piece of a frame (the kubelet's frames are at most
// 32 KiB; a larger one is read in pieces), and one 128 KiB read
// buffer from a pool while local data is being sent or spilled data read
// back; per SPDY connection, that times its streams, plus a 16 KiB read
// buffer and a frame writer buffer of up to 256 KiB (and, only while a
// write is under way, frames held by a cork, up to 64 KiB, and package
// kube's pooled batch of TLS records). Header blocks cost no zlib state:
// ours are written as stored deflate blocks, and the server's are never
// read (headers.go). Over WebSocket also the library's 4 KiB read and
// write buffers, and a pooled buffer the size of a frame while one is
// written; per session, that times its connections (one, up to
// SessionOptions.Pool while many local connections are open, plus any
// draining after a move). Disk: up to SpillLimit per stream, only while
// its reader is behind. An idle connection holds no data buffer: its
// local reads wait for readability before taking one
// (BenchmarkIdleConnections measures 14-15 KiB and three goroutines per
// idle connection: the Forward call's own, send and deliver).
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
//     pair.sendEarly). Local data is read behind room for the frame
//     header, so a DATA frame is written from the buffer it was read into.
//   - No goroutine hop per received frame: the frame reader writes a small
//     frame to the local socket itself when the socket takes it at once
//     and nothing waits in the stream buffer (Conn.streamData); anything
//     else goes into the stream buffer for deliver.
//   - No allocation per received frame: a payload too large to write at
//     once is read into a pooled 32 KiB buffer (frameBuffers), which goes
//     back to the pool once deliver has written it (or it was spilled).
//   - Fair turns for many uploads, in frames as large as fairness allows:
//     frames are written in the order their senders came (fifoMutex), and
//     while other local connections are sending, a frame's size adapts to
//     how long frames wait for their turn (Conn.adaptSharedFrame): from
//     32 KiB, doubled while a turn takes under 25 ms, halved when it takes
//     over 100 ms, up to the 128 KiB of a local read. A hundred concurrent
//     uploads over WebSocket under the race detector once let a stream wait
//     up to a second between two 128 KiB frames, long enough for a server
//     with a 1 s read timeout (tests/e2e
//     TestWebSocketTransportManyConnections) to give up on it; there the
//     frames stay at 32 KiB. Through the kubelet's code, where a turn is
//     short, they grow, and the server's CPU per GiB of a hundred uploads
//     fell from 3.0 to 2.5 s over TLS (fixed 32 KiB frames against
//     adaptive ones, in the same run: 1.17x to 1.37-1.42x client-go's
//     rate over TLS, 1.11x to 1.23-1.50x plain).
//
// Our own SPDY connection (spdy.go), not spdystream's. With spdystream, per
// 1-byte round trip the client used about 110 µs of CPU, as client-go
// does: a round-trip profile was half syscalls and a quarter futex and
// scheduler, because each received frame was allocated (spdy.Framer),
// queued in a PriorityFrameQueue (mutex, sync.Cond, heap), handed to one
// of five frame workers and from there over an unbuffered channel to our
// receive goroutine, and every frame read or written also woke the
// idleAwareFramer's monitor goroutine. Wrapping it could not remove those
// hops, so the connection logic is ours now, on a frame codec of a few
// hundred lines: one goroutine reads every frame and hands DATA straight
// to its stream; the server's header blocks are skipped, not inflated.
// Measured before and after, back to back (make bench, 2 CPUs shared by
// client and server and, that day, other jobs; medians of 5, tunnels ÷
// client-go): client CPU per round trip 114 → 65 µs (0.94x → 0.57x),
// round trip p50 0.93x → 0.66x, per new connection 549 → 476 µs of client
// CPU and 1.41x → 1.73x the rate (the kubelet's code alone uses about
// 770 µs per connection here, so 2x is out of reach), upload 1.27x →
// 1.83x, download 0.95x → 1.00x, 100 concurrent downloads 0.99x → 1.10x,
// client CPU per GiB 0.86x → 0.74x. 100 concurrent uploads went 1.45x →
// 1.18x: the price of fixed 32 KiB frames to keep their turns fair (an
// earlier run without them: 1.35x both sides), which frames that adapt to
// the wait have since won back. Each local connection also
// costs three goroutines instead of five, and an idle one 14-15 KiB
// instead of 21-23.
//
// What bounds the rest, on the machine make bench runs on (2 cores that
// the client, the kubelet's server code and the load generator share),
// from its protocol table (tests/protocol BenchmarkTable, which prints for
// each rate case how busy the cores were and a ceiling: the ratio against
// client-go that a client costing no CPU at all could reach, given the
// server's and the load generator's CPU per MB). Nearly all of this
// client's CPU on bulk transfers is syscalls and AES-GCM (a profile of
// download and upload: 63% syscalls, 16% TLS crypto, 1% allocation).
// Downloads are the server's: it spends 2-3.6 s of CPU per GiB (it
// writes each frame in three calls, three TLS records), so both clients
// move about the same. It often spends 10-40% more serving this client
// than client-go, and not for want of a core: with the client and the load
// generator pinned to one core and the server to the other, it still spent
// 2.5-2.7 s per GiB against 2.1-2.4. It makes as many syscalls for either
// client (per 768 MiB, 24k reads and 118-122k writes); what differs is how
// often the client waits for it. This client keeps up with the server, so
// its frame reader finds the socket empty and sleeps about twice as often
// as client-go's (per 768 MiB over TLS, 43k epoll waits against 23k, and
// 57k reads of 14 KiB on average against 35k of 23 KiB), and every sleep
// is a wake-up that the server's next write pays for (in the server's
// profile, sock_def_readable 4.6% against 3.3%, and twice the time
// preempted on the way back from write). Waking later would have to be
// asked of the kernel (SO_RCVLOWAT), and under TLS the client cannot know
// how many bytes of a frame crypto/tls has already read ahead, so a low
// mark could wait for bytes that never come. Neither reading ahead under
// TLS (64 KiB reads), writing large frames to the local socket from the
// frame reader, SO_RCVLOWAT set to the rest of a frame (plain), nor one
// read(2) per wake-up of a local connection instead of a peek and a read
// changed the rates beyond the noise.
//
// A hundred concurrent connections keep the cores 90-94% busy; there the
// ceiling is 1.8-2.6x. Over one SPDY connection, whose framing and crypto
// run on one core at a time on each side, tunnels reached 0.9-1.2x
// client-go down and 1.2-1.4x up; over a pool of up to four (pool.go),
// 1.4-1.9x and 1.4-1.7x, and the server's CPU per GiB fell by 10-25%.
// Connection setup, one connection after another, is latency (70% busy):
// per connection the server spends 510-650 µs of CPU, the load generator
// about 140 and this client 270-360 (client-go 730-950), and tunnels makes
// one in 0.6-0.8 ms, 1.5-1.9x client-go; most of this client's CPU per
// connection is the syscalls of two sockets (accept, the local reads,
// writes and shutdown, the frames' writes and reads), and a quarter of it
// reading the server's frames, which it writes one at a time.
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
