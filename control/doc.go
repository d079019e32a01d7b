// Package control is the daemon's inspector: an HTTP server speaking JSON on
// a unix socket in the data directory ([SocketFile]), and the [Client] the
// command line uses to ask it.
//
// The daemon implements [Handler], creates the socket with [Listen] while
// it holds the single-instance lock, and serves with [Server.Run]. Any HTTP
// client will do, for example:
//
//	curl --unix-socket DATADIR/snappea.sock http://snappea/status
//	curl --unix-socket DATADIR/snappea.sock -X POST 'http://snappea/stop?now=true'
//	curl --unix-socket DATADIR/snappea.sock -d '{"workers": 8}' http://snappea/workers
//
// # Endpoints
//
//	GET  /status   the daemon's [Status]
//	GET  /health   200 {"ok":true}, or 503 {"ok":false,"reason":"..."}
//	POST /pause    stop claiming tasks; running ones go on
//	POST /resume   claim again
//	POST /reload   start a reload (the daemon re-executes itself)
//	POST /stop     start a stop; {"now": true} or ?now=true cancels running tasks at once
//	POST /workers  {"workers": N}
//	POST /cancel   {"id": N}: cancel a running task's context; answers {"cancelled": bool}
//
// The other POST endpoints answer {"ok":true}. Errors answer {"error":"..."}: 404
// for an unknown path, 405 for a wrong method, 400 for a bad body or a
// Handler error wrapping [ErrInvalid], 409 for one wrapping [ErrConflict],
// 500 for any other. Requests that change the daemon are logged at info
// with the peer's uid and pid.
//
// # Who may connect
//
// The socket file has mode 0600 from the moment it exists (see [Listen]),
// and the server checks the peer's credentials on every connection it
// accepts (SO_PEERCRED on Linux, LOCAL_PEERCRED on macOS and FreeBSD; on
// other systems every connection is refused): only the daemon's own user
// and root get an answer. Anyone else's connection is closed without one
// and logged at warn. The client reports either case as [ErrPermission].
//
// # Time limits
//
// Each Handler call gets a context that ends after 10 seconds, or when the
// client goes away. A client has 5 seconds to send its request's headers
// and 10 for the whole request; an idle connection is closed after 30.
//
// The [Client] puts its context's deadline in the [DeadlineHeader]. A request
// read after it, 408 for any endpoint, is not carried out: a daemon stopped
// with SIGSTOP finds, once continued, the requests that queued up on its
// socket meanwhile, and their senders have given up.
//
// # Reloads
//
// A reload re-executes the daemon, and the socket goes on accepting
// connections throughout: [Server.File] duplicates the listening socket for
// the exec, [Server.ShutdownForExec] answers the requests in flight and
// leaves the socket file in place, and the new program adopts the socket
// with [ListenFile]. Clients that connect in between wait in the socket's
// backlog.
package control
