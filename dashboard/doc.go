// Package dashboard is snappea's web dashboard: an http.Handler showing
// the queue, the running tasks, the failed record, the schedules and the
// per-minute statistics, with forms to act on them (pause and resume,
// workers, cancel, retry, purge).
//
// Mount it in your own server under a prefix, behind your own
// authentication:
//
//	dash, err := dashboard.New(dashboard.Config{Queue: q, Authorize: myAuth})
//	mux.Handle("/snappea/", http.StripPrefix("/snappea", dash))
//
// or let the daemon serve it with 'snappea run --dashboard-addr ADDR'.
//
// The pages are rendered on the server with html/template from templates
// embedded in the binary; they read and work with JavaScript off, and a
// few lines of plain JavaScript refresh them while they are open.
//
// Safety, by default:
//
//   - Task arguments are never shown unless Config.ShowArgs is set: they
//     can hold secrets.
//   - A GET never changes anything. Every change is a POST carrying a CSRF
//     token tied to a cookie (HMAC of the cookie with a key of the
//     Handler's); a POST without a valid one is refused with 403.
//   - Config.ReadOnly shows no forms and refuses every POST.
//   - Config.Authorize is asked about every request before anything else.
//   - Bad input (unknown ids, malformed forms and query strings, huge
//     ones) gets a 4xx page that says what was wrong.
//
// The pages stay fast with a million pending tasks: counts are bounded
// (storage.Backend.CountPending, exact up to Config.CountLimit), the
// queued tasks are listed in pages read from the claim index after a
// cursor, never with an offset, and a page filtered by task name reads at
// most Config.SearchLimit tasks.
package dashboard
