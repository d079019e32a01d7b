package report_test

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getsentry/sentry-go"

	"github.com/snappea/snappea/foreman"
	"github.com/snappea/snappea/prefork"
	"github.com/snappea/snappea/queue"
	"github.com/snappea/snappea/registry"
	"github.com/snappea/snappea/report"
	"github.com/snappea/snappea/report/sentrytest"
)

var enqueuedAt = time.Date(2026, 3, 1, 12, 30, 0, 123_000_000, time.UTC)

func newTask(id int64, name string) *queue.Task {
	return &queue.Task{ID: id, Name: name, Args: []byte(`{"to":"ann@example.com"}`), EnqueuedAt: enqueuedAt}
}

// newSentry returns a reporter to dsn with fixed release, environment and
// server name, closed when the test ends. Its log goes to the test's output.
func newSentry(t *testing.T, dsn string) *report.Sentry {
	t.Helper()
	s, err := report.NewSentry(report.Config{
		DSN:         dsn,
		Environment: "test",
		Release:     "v1.2.3",
		ServerName:  "worker-1",
		Logger:      slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatalf("NewSentry: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

type quotaError struct{ limit int }

func (e *quotaError) Error() string { return fmt.Sprintf("quota of %d mails exceeded", e.limit) }

func explodingHandler() { panic("template cache is nil") }

// callLikeForeman runs f and turns a panic into a *foreman.PanicError the
// way the foreman does.
func callLikeForeman(f func()) (err error) {
	defer func() {
		if r := recover(); r != nil {
			pcs := make([]uintptr, 64)
			pcs = pcs[:runtime.Callers(3, pcs)]
			err = &foreman.PanicError{Value: r, Stack: debug.Stack(), PCs: pcs}
		}
	}()
	f()
	return nil
}

// checkTags fails the test unless ev has the tags in want and none of the
// keys in absent.
func checkTags(t *testing.T, ev sentrytest.Event, want map[string]string, absent ...string) {
	t.Helper()
	for k, v := range want {
		if got, ok := ev.Tags[k]; !ok || got != v {
			t.Errorf("tag %q = %q (present: %v), want %q; all tags: %v", k, got, ok, v, ev.Tags)
		}
	}
	for _, k := range absent {
		if v, ok := ev.Tags[k]; ok {
			t.Errorf("tag %q = %q, want no such tag", k, v)
		}
	}
}

// onlyException returns ev's exception, failing the test unless there is
// exactly one.
func onlyException(t *testing.T, ev sentrytest.Event) sentrytest.Exception {
	t.Helper()
	if len(ev.Exception) != 1 {
		t.Fatalf("event has %d exceptions, want 1: %+v", len(ev.Exception), ev.Exception)
	}
	return ev.Exception[0]
}

func TestSentry_Report(t *testing.T) {
	t.Run("failed", func(t *testing.T) {
		dsn, events, _ := newReceiver(t)
		s := newSentry(t, dsn)
		err := fmt.Errorf("send welcome mail: %w", &quotaError{limit: 100})

		s.Report(err, newTask(7, "send_welcome"))
		ev := waitEvent(t, events)

		checkTags(t, ev, map[string]string{"task": "send_welcome", "task_id": "7", "outcome": "failed"}, "component")
		ex := onlyException(t, ev)
		if want := "*report_test.quotaError"; ex.Type != want {
			t.Errorf("exception type = %q, want %q (the innermost error's)", ex.Type, want)
		}
		if ex.Value != err.Error() {
			t.Errorf("exception value = %q, want %q", ex.Value, err.Error())
		}
		if ex.Mechanism == "panic" {
			t.Errorf("exception mechanism = %q for an error that is not a panic", ex.Mechanism)
		}
		if ev.Message != err.Error() {
			t.Errorf("message = %q, want %q", ev.Message, err.Error())
		}
		if ev.Level != "error" {
			t.Errorf("level = %q, want error", ev.Level)
		}
		wantCtx := map[string]any{"id": 7.0, "name": "send_welcome", "enqueued_at": "2026-03-01T12:30:00.123Z"}
		if got := ev.Contexts["task"]; !reflect.DeepEqual(got, wantCtx) {
			t.Errorf("task context = %v, want %v", got, wantCtx)
		}
		if want := []string{"{{ default }}", "send_welcome"}; !slices.Equal(ev.Fingerprint, want) {
			t.Errorf("fingerprint = %q, want %q", ev.Fingerprint, want)
		}
		if ev.Release != "v1.2.3" || ev.Environment != "test" || ev.ServerName != "worker-1" {
			t.Errorf("release, environment, server name = %q, %q, %q; want v1.2.3, test, worker-1",
				ev.Release, ev.Environment, ev.ServerName)
		}
	})

	t.Run("panicked", func(t *testing.T) {
		dsn, events, _ := newReceiver(t)
		s := newSentry(t, dsn)
		err := callLikeForeman(explodingHandler)
		if err == nil {
			t.Fatal("explodingHandler did not panic")
		}

		s.Report(err, newTask(8, "render_invoice"))
		ev := waitEvent(t, events)

		checkTags(t, ev, map[string]string{"task": "render_invoice", "task_id": "8", "outcome": "panicked"})
		ex := onlyException(t, ev)
		if ex.Type != "*foreman.PanicError" || ex.Value != "panic: template cache is nil" {
			t.Errorf("exception = %q: %q, want *foreman.PanicError: panic: template cache is nil", ex.Type, ex.Value)
		}
		if ex.Mechanism != "panic" || ex.Handled == nil || *ex.Handled {
			handled := "unset"
			if ex.Handled != nil {
				handled = strconv.FormatBool(*ex.Handled)
			}
			t.Errorf("mechanism = %q, handled %s; want panic, handled false", ex.Mechanism, handled)
		}
		// Sentry lists the crashing frame last.
		if len(ex.Frames) == 0 || !strings.HasSuffix(ex.Frames[len(ex.Frames)-1], "report_test.explodingHandler") {
			t.Errorf("stack frames, outermost first:\n  %s\nwant the last to be report_test.explodingHandler",
				strings.Join(ex.Frames, "\n  "))
		}
		if !slices.ContainsFunc(ex.Frames, func(f string) bool { return strings.HasSuffix(f, ".callLikeForeman") }) {
			t.Errorf("stack frames %q do not include the caller callLikeForeman", ex.Frames)
		}
	})

	t.Run("discarded", func(t *testing.T) {
		dsn, events, _ := newReceiver(t)
		s := newSentry(t, dsn)
		for _, err := range []error{
			fmt.Errorf("%w %q", registry.ErrUnknownTask, "send_welcom"),
			fmt.Errorf("%w for task %q: %v", registry.ErrBadArgs, "send_welcome", "unexpected end of JSON input"),
		} {
			s.Report(err, newTask(9, "send_welcome"))
			ev := waitEvent(t, events)
			checkTags(t, ev, map[string]string{"task": "send_welcome", "task_id": "9", "outcome": "discarded"})
			if ex := onlyException(t, ev); ex.Value != err.Error() {
				t.Errorf("exception value = %q, want %q", ex.Value, err.Error())
			}
		}
	})

	t.Run("no task", func(t *testing.T) {
		dsn, events, _ := newReceiver(t)
		s := newSentry(t, dsn)
		err := fmt.Errorf("claim tasks: %w", queue.ErrBusy)

		s.Report(err, nil)
		ev := waitEvent(t, events)

		checkTags(t, ev, map[string]string{"component": "foreman"}, "task", "task_id", "outcome")
		if ctx, ok := ev.Contexts["task"]; ok {
			t.Errorf("task context = %v for an error without a task", ctx)
		}
		if len(ev.Fingerprint) != 0 {
			t.Errorf("fingerprint = %q, want Sentry's default", ev.Fingerprint)
		}
		if ex := onlyException(t, ev); ex.Value != err.Error() {
			t.Errorf("exception value = %q, want %q", ex.Value, err.Error())
		}
	})

	t.Run("nil error", func(t *testing.T) {
		dsn, events, _ := newReceiver(t)
		s := newSentry(t, dsn)
		s.Report(nil, newTask(1, "noop"))
		if !s.Flush(eventTimeout) {
			t.Fatal("Flush timed out")
		}
		if got := queued(events); len(got) != 0 {
			t.Errorf("Report(nil) sent %d events, want none", len(got))
		}
	})
}

// stackError records where it was made, the way github.com/pkg/errors
// does, through a StackTrace method.
type stackError struct{ pcs []uintptr }

func (e *stackError) Error() string         { return "disk quota exceeded" }
func (e *stackError) StackTrace() []uintptr { return e.pcs }

func writeReport() error {
	pcs := make([]uintptr, 32)
	return &stackError{pcs: pcs[:runtime.Callers(1, pcs)]}
}

func TestSentry_Report_exception(t *testing.T) {
	joined := errors.Join(errors.New("a"), errors.New("b"))
	tests := []struct {
		name      string
		err       error
		wantType  string
		wantFrame string // suffix of a function name the stacktrace must hold; "" for no stacktrace
	}{
		{"plain", errors.New("boom"), "*errors.errorString", ""},
		{"wrapped twice", fmt.Errorf("a: %w", fmt.Errorf("b: %w", &quotaError{1})), "*report_test.quotaError", ""},
		{"joined", fmt.Errorf("cleanup: %w", joined), "*errors.joinError", ""},
		{"panic with a string", callLikeForeman(explodingHandler), "*foreman.PanicError", "report_test.explodingHandler"},
		{"panic with an error", callLikeForeman(func() { panic(fmt.Errorf("render: %w", &quotaError{2})) }),
			"*report_test.quotaError", ".callLikeForeman"},
		{"error with a recorded stack", fmt.Errorf("save: %w", writeReport()), "*report_test.stackError", "report_test.writeReport"},
	}
	dsn, events, _ := newReceiver(t)
	s := newSentry(t, dsn)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s.Report(tt.err, newTask(1, "t"))
			ex := onlyException(t, waitEvent(t, events))
			if ex.Type != tt.wantType {
				t.Errorf("exception type = %q, want %q", ex.Type, tt.wantType)
			}
			if ex.Value != tt.err.Error() {
				t.Errorf("exception value = %q, want %q", ex.Value, tt.err.Error())
			}
			switch {
			case tt.wantFrame == "" && len(ex.Frames) > 0:
				t.Errorf("stack frames %q, want none: the reporting stack is not the error's", ex.Frames)
			case tt.wantFrame != "" && !slices.ContainsFunc(ex.Frames, func(f string) bool { return strings.HasSuffix(f, tt.wantFrame) }):
				t.Errorf("stack frames %q, want one ending in %q", ex.Frames, tt.wantFrame)
			}
		})
	}
}

func TestSentry_Report_neverSendsArgs(t *testing.T) {
	const secret = "hunter2-s3cr3t-7f9c1e"
	args := []byte(`{"password":"` + secret + `"}`)
	forbidden := []string{
		secret,
		base64.StdEncoding.EncodeToString(args), // how encoding/json writes a []byte
		base64.RawStdEncoding.EncodeToString(args),
		"[running]", // PanicError.Stack, as debug.Stack prints it
	}
	dsn, events, raw := newReceiver(t)
	s := newSentry(t, dsn)
	task := &queue.Task{ID: 3, Name: "reset_password", Args: args, EnqueuedAt: enqueuedAt}

	s.Report(errors.New("smtp: 451 try again later"), task)
	s.Report(callLikeForeman(explodingHandler), task)
	s.Report(fmt.Errorf("%w for task %q: %v", registry.ErrBadArgs, task.Name, "json: cannot unmarshal"), task)
	waitEvents(t, events, 3)

	bodies := raw()
	if len(bodies) < 3 {
		t.Fatalf("the receiver holds %d request bodies, want at least 3", len(bodies))
	}
	for i, b := range bodies {
		for _, f := range forbidden {
			if bytes.Contains(b, []byte(f)) {
				t.Errorf("request body %d contains %q:\n%s", i, f, b)
			}
		}
	}
}

func TestSentry_Flush(t *testing.T) {
	t.Run("sent", func(t *testing.T) {
		dsn, events, _ := newReceiver(t)
		s := newSentry(t, dsn)
		const n = 5
		for i := range n {
			s.Report(fmt.Errorf("failure %d", i), newTask(int64(i), "t"))
		}
		if !s.Flush(eventTimeout) {
			t.Fatalf("Flush(%v) = false, want true", eventTimeout)
		}
		// No waiting: once Flush returns true, the events have been received.
		if got := queued(events); len(got) != n {
			t.Errorf("after Flush, the receiver has %d events, want %d", len(got), n)
		}
	})

	t.Run("nothing queued", func(t *testing.T) {
		dsn, _, _ := newReceiver(t)
		if s := newSentry(t, dsn); !s.Flush(eventTimeout) {
			t.Errorf("Flush with nothing queued = false, want true")
		}
	})

	t.Run("server does not answer", func(t *testing.T) {
		release := make(chan struct{})
		arrived := make(chan struct{}, 1)
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			select {
			case arrived <- struct{}{}:
			default:
			}
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}))
		defer srv.Close()
		s, err := report.NewSentry(report.Config{
			DSN:     "http://publickey@" + strings.TrimPrefix(srv.URL, "http://") + "/42",
			Release: "v1.2.3",
			Logger:  slog.New(slog.DiscardHandler),
		})
		if err != nil {
			t.Fatalf("NewSentry: %v", err)
		}
		// Unblock the server before Close, which waits for the send in progress.
		defer s.Close()
		defer close(release)

		s.Report(errors.New("boom"), newTask(1, "t"))
		select {
		case <-arrived:
		case <-time.After(eventTimeout):
			t.Fatalf("no request reached the server within %v", eventTimeout)
		}
		if s.Flush(50 * time.Millisecond) {
			t.Error("Flush = true while the server holds the request, want false")
		}
	})
}

func TestNewSentry_invalidDSN(t *testing.T) {
	const pub, secret = "pubk3y0a1b2c", "s3cr3t9z8y7x"
	tests := []struct {
		name, dsn, want string
	}{
		{"empty", "", "DSN is required"},
		{"blank", "  \n", "DSN is required"},
		{"not a URL", "https://" + pub + ":" + secret + "@exa mple.com/42", "not a valid URL"},
		{"bad escape", "https://" + pub + ":" + secret + "%zz@sentry.example.com/42", "not a valid URL"},
		{"no scheme", pub + ":" + secret + "@sentry.example.com/42", "https://"},
		{"bad scheme", "ftp://" + pub + ":" + secret + "@sentry.example.com/42", "https://"},
		{"no public key", "https://:" + secret + "@sentry.example.com/42", "no public key"},
		{"no host", "https://" + pub + ":" + secret + "@/42", "no host"},
		{"no project", "https://" + pub + ":" + secret + "@sentry.example.com", "no project ID"},
		{"trailing slash", "https://" + pub + ":" + secret + "@sentry.example.com/42/", "no project ID"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := report.NewSentry(report.Config{DSN: tt.dsn, Logger: slog.New(slog.DiscardHandler)})
			if err == nil {
				s.Close()
				t.Fatalf("NewSentry(%q) succeeded, want an error", tt.dsn)
			}
			msg := err.Error()
			if !strings.Contains(msg, "DSN") || !strings.Contains(msg, tt.want) {
				t.Errorf("error = %q, want it to name the DSN and say %q", msg, tt.want)
			}
			if strings.Contains(msg, secret) || strings.Contains(msg, pub) {
				t.Errorf("error = %q, which contains a key of the DSN", msg)
			}
		})
	}
}

func TestNewSentry_logsNoKey(t *testing.T) {
	const pub, secret = "pubk3y0a1b2c", "s3cr3t9z8y7x"
	var buf bytes.Buffer
	s, err := report.NewSentry(report.Config{
		DSN:     "http://" + pub + ":" + secret + "@127.0.0.1:1/42",
		Release: "v1.2.3",
		Logger:  slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatalf("NewSentry with a secret key: %v", err)
	}
	s.Close()
	if log := buf.String(); strings.Contains(log, pub) || strings.Contains(log, secret) {
		t.Errorf("log contains a key of the DSN:\n%s", log)
	}
	if !strings.Contains(buf.String(), "127.0.0.1") {
		t.Errorf("log does not name the Sentry host:\n%s", buf.String())
	}
}

func TestSentry_isolated(t *testing.T) {
	dsnA, eventsA, _ := newReceiver(t)
	dsnB, eventsB, _ := newReceiver(t)
	a, b := newSentry(t, dsnA), newSentry(t, dsnB)

	a.Report(errors.New("from a"), newTask(1, "task_a"))
	b.Report(errors.New("from b"), nil)
	if !a.Flush(eventTimeout) || !b.Flush(eventTimeout) {
		t.Fatal("Flush timed out")
	}

	for _, c := range []struct {
		name      string
		events    <-chan sentrytest.Event
		wantValue string
		wantTags  map[string]string
		absent    string
	}{
		{"a", eventsA, "from a", map[string]string{"task": "task_a"}, "component"},
		{"b", eventsB, "from b", map[string]string{"component": "foreman"}, "task"},
	} {
		got := queued(c.events)
		if len(got) != 1 {
			t.Errorf("receiver %s has %d events, want 1", c.name, len(got))
			continue
		}
		if ex := onlyException(t, got[0]); ex.Value != c.wantValue {
			t.Errorf("receiver %s got %q, want %q", c.name, ex.Value, c.wantValue)
		}
		checkTags(t, got[0], c.wantTags, c.absent)
	}
	if sentry.CurrentHub().Client().IsEnabled() {
		t.Error("the global sentry hub has an enabled client; NewSentry must not bind one")
	}
}

func TestSentry_Report_concurrent(t *testing.T) {
	dsn, events, _ := newReceiver(t)
	s := newSentry(t, dsn)
	const n = 20
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			s.Report(fmt.Errorf("failure %d", i), newTask(int64(i), fmt.Sprintf("task_%d", i)))
		})
	}
	wg.Wait()

	seen := map[string]bool{}
	for _, ev := range waitEvents(t, events, n) {
		id := ev.Tags["task_id"]
		seen[id] = true
		// Each event's parts must all come from the same Report call.
		if ev.Tags["task"] != "task_"+id || ev.Message != "failure "+id || fmt.Sprint(ev.Contexts["task"]["id"]) != id {
			t.Errorf("mixed-up event: tags %v, message %q, task context %v", ev.Tags, ev.Message, ev.Contexts["task"])
		}
	}
	if len(seen) != n {
		t.Errorf("events for %d distinct tasks, want %d", len(seen), n)
	}
}

// A task that ran in a child process: its death is reported with the
// child's pid, cause, stderr tail and crash report; a panic there, whose
// program counters stayed in the child, with its stack as text.
func TestSentry_Report_childProcess(t *testing.T) {
	dsn, events, _ := newReceiver(t)
	s := newSentry(t, dsn)
	died := fmt.Errorf("attempt 1: %w", &prefork.ExitError{PID: 4242, Cause: "killed by SIGSEGV",
		Stderr: []byte("some log line\nSIGSEGV: segmentation violation\ngoroutine 1 [running]:\nmain.crash()"),
		Stack:  []byte("SIGSEGV: segmentation violation\ngoroutine 1 [running]:\nmain.crash()")})
	s.Report(died, newTask(1, "t"))
	ev := waitEvent(t, events)
	pc := ev.Contexts["process"]
	if pc == nil || pc["pid"] != float64(4242) || pc["cause"] != "killed by SIGSEGV" ||
		!strings.Contains(fmt.Sprint(pc["stderr_tail"]), "some log line") ||
		!strings.HasPrefix(fmt.Sprint(pc["crash_report"]), "SIGSEGV: segmentation violation") {
		t.Errorf("process context = %v, want the pid, cause, stderr tail and crash report", pc)
	}
	if ev.Message != died.Error() {
		t.Errorf("message = %q, want %q", ev.Message, died.Error())
	}

	s.Report(&foreman.PanicError{Value: "kaboom", Stack: []byte("goroutine 7 [running]:\nmain.handler()")}, newTask(2, "t"))
	ev = waitEvent(t, events)
	if st := fmt.Sprint(ev.Contexts["panic"]["stack"]); !strings.Contains(st, "main.handler()") {
		t.Errorf("panic context = %v, want the child's stack", ev.Contexts["panic"])
	}
	if ev.Tags["outcome"] != "panicked" {
		t.Errorf("outcome tag = %q, want panicked", ev.Tags["outcome"])
	}
}
