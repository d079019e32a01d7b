// Package tasks holds the webapp's background tasks: one [Registry] shared by
// the web server, which enqueues, and the daemon, which runs them.
//
// Both binaries import this package, so a producer can only enqueue a task
// the daemon knows, with arguments of the handler's own type:
//
//	id, err := tasks.SendWelcome.Enqueue(ctx, q, tasks.WelcomeArgs{UserID: 7, Email: "ada@example.com"})
//
// Arguments travel as JSON, so the json tags on the argument structs are
// the wire format between binaries of different ages: add fields freely,
// but rename or remove one only once no queued task still carries it.
package tasks
