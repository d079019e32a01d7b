package report

import (
	"context"
	"errors"
	"log/slog"
	"net/url"
	"os"
	"reflect"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/getsentry/sentry-go"

	"github.com/snappea/snappea"
	"github.com/snappea/snappea/foreman"
	"github.com/snappea/snappea/prefork"
	"github.com/snappea/snappea/registry"
)

// Config configures a Sentry reporter. DSN is required; every other field
// has a default.
type Config struct {
	// DSN is the Sentry project's client key URL,
	// https://PUBLIC_KEY@HOST/PROJECT_ID. Required. Surrounding white
	// space is ignored.
	DSN string
	// Environment names the deployment, such as "production". Default:
	// none (sentry-go then uses SENTRY_ENVIRONMENT if set).
	Environment string
	// Release is the version events are attributed to. Default: the main
	// module's version from the build info, unless it is "(devel)"; if
	// there is none, sentry-go's own detection.
	Release string
	// ServerName is the host name sent with events. Default os.Hostname().
	ServerName string
	// Logger receives one info record when the reporter is created (the
	// Sentry host, never the DSN), a debug record per event, and a warning
	// if an event is dropped before it is queued. Default slog.Default().
	// sentry-go's own debug output stays off.
	Logger *slog.Logger
}

// Sentry reports errors to Sentry. It implements foreman.Reporter and is
// safe for concurrent use. Create it with NewSentry.
type Sentry struct {
	client *sentry.Client
	hub    *sentry.Hub
	log    *slog.Logger
}

var _ foreman.Reporter = (*Sentry)(nil)

// The values of the outcome and component tags.
const (
	outcomePanicked  = "panicked"
	outcomeDiscarded = "discarded"
	outcomeFailed    = "failed"
	componentForeman = "foreman"
)

// maxUnwrap bounds how far an error chain is followed, in case an Unwrap
// method returns its own receiver.
const maxUnwrap = 100

// NewSentry checks cfg and returns a reporter with its own sentry-go client.
// A bad DSN is reported by what is wrong with it; the error never contains
// the DSN or its keys.
func NewSentry(cfg Config) (*Sentry, error) {
	dsn := strings.TrimSpace(cfg.DSN)
	host, err := checkDSN(dsn)
	if err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Release == "" {
		if info, ok := debug.ReadBuildInfo(); ok {
			cfg.Release = releaseFrom(info)
		}
	}
	if cfg.ServerName == "" {
		cfg.ServerName, _ = os.Hostname()
	}
	client, err := sentry.NewClient(sentry.ClientOptions{
		Dsn:         dsn,
		Environment: cfg.Environment,
		Release:     cfg.Release,
		ServerName:  cfg.ServerName,
		// No user data, ever: nothing the SDK could collect on its own
		// (user fields, cookies, headers, query parameters, bodies).
		DataCollection: &sentry.DataCollection{
			UserInfo:    sentry.Set(false),
			Cookies:     &sentry.KeyValueCollectionBehavior{Mode: sentry.CollectionOff},
			HTTPHeaders: &sentry.HeaderCollectionConfig{Request: &sentry.KeyValueCollectionBehavior{Mode: sentry.CollectionOff}, Response: &sentry.KeyValueCollectionBehavior{Mode: sentry.CollectionOff}},
			QueryParams: &sentry.KeyValueCollectionBehavior{Mode: sentry.CollectionOff},
			HTTPBodies:  []sentry.BodyType{},
		},
		// Negative disables breadcrumbs: nothing the daemon logs or does
		// before an error ends up in an event.
		MaxBreadcrumbs: -1,
	})
	if err != nil {
		// checkDSN accepts only what sentry-go parses, so this is not
		// expected; its message could quote the DSN, so it is not passed on.
		return nil, errors.New("report config: DSN rejected by the Sentry client")
	}
	cfg.Logger.Info("reporting errors to Sentry", "sentry_host", host,
		"environment", client.Options().Environment, "release", client.Options().Release)
	return &Sentry{
		client: client,
		hub:    sentry.NewHub(client, sentry.NewScope()),
		log:    cfg.Logger,
	}, nil
}

// checkDSN validates a DSN as sentry-go will parse it, with messages that
// name the problem without quoting the DSN, and returns its host.
func checkDSN(dsn string) (host string, err error) {
	if dsn == "" {
		return "", errors.New("report config: DSN is required")
	}
	u, err := url.Parse(dsn)
	if err != nil {
		// url.Parse's error quotes the whole URL, secret key included.
		return "", errors.New("report config: DSN is not a valid URL")
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return "", errors.New("report config: DSN must start with https:// or http://")
	case u.User == nil || u.User.Username() == "":
		return "", errors.New("report config: DSN has no public key (want https://PUBLIC_KEY@HOST/PROJECT_ID)")
	case u.Hostname() == "":
		return "", errors.New("report config: DSN has no host")
	case strings.Trim(u.Path, "/") == "" || strings.HasSuffix(u.Path, "/"):
		return "", errors.New("report config: DSN has no project ID (want https://PUBLIC_KEY@HOST/PROJECT_ID)")
	}
	if p := u.Port(); p != "" {
		if _, err := strconv.Atoi(p); err != nil {
			return "", errors.New("report config: DSN has an invalid port")
		}
	}
	return u.Hostname(), nil
}

// releaseFrom returns the main module's version, or "" for a build without
// one ("(devel)").
func releaseFrom(info *debug.BuildInfo) string {
	if v := info.Main.Version; v != "(devel)" {
		return v
	}
	return ""
}

// Report sends one event for err, queued for sentry-go's HTTP transport:
// it does not wait for the network. task is the task that failed, or nil
// for an error of the daemon's loop. A nil err is ignored.
func (s *Sentry) Report(err error, task *snappea.Task) {
	if err == nil {
		return
	}
	// A reporter must never take the daemon down with it.
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("reporting to Sentry panicked; the error was not reported", "panic", r, "err", err)
		}
	}()

	event := sentry.NewEvent()
	event.Level = sentry.LevelError
	event.Message = err.Error()
	event.Exception = []sentry.Exception{exception(err)}

	// A hub per call: scopes on a shared hub would mix concurrent reports.
	hub := s.hub.Clone()
	scope := hub.Scope()
	if task == nil {
		scope.SetTag("component", componentForeman)
	} else {
		scope.SetTags(map[string]string{
			"task":    task.Name,
			"task_id": strconv.FormatInt(task.ID, 10),
			"outcome": outcome(err),
		})
		// Deliberately not task.Args: arguments can hold secrets.
		tc := sentry.Context{"id": task.ID, "name": task.Name}
		if !task.EnqueuedAt.IsZero() {
			tc["enqueued_at"] = task.EnqueuedAt.UTC().Format(time.RFC3339Nano)
		}
		scope.SetContext("task", tc)
		processContext(scope, err)
		scope.SetFingerprint([]string{"{{ default }}", task.Name})
	}

	id := hub.CaptureEvent(event)
	if id == nil {
		s.log.Warn("Sentry client dropped an error report", "err", err)
		return
	}
	if s.log.Enabled(context.Background(), slog.LevelDebug) {
		attrs := []any{"event_id", string(*id)}
		if task != nil {
			attrs = append(attrs, "task", task.Name, "task_id", task.ID)
		}
		s.log.Debug("error reported to Sentry", attrs...)
	}
}

// Flush waits up to timeout for the events queued so far to be sent, and
// reports whether the queue emptied in time. A send that failed (Sentry
// unreachable or refusing) still empties the queue: sentry-go does not
// retry. The daemon calls it when it stops, as queued events are lost when
// the process exits.
func (s *Sentry) Flush(timeout time.Duration) bool {
	return s.client.Flush(timeout)
}

// Close stops the client's background goroutines. Call Flush first to
// choose how long to wait for queued events: Close gives them at most 5
// seconds (sentry-go's limit). Events reported after Close are dropped.
func (s *Sentry) Close() {
	s.client.Close()
}

// outcome names how the task ended, as the foreman counts it.
// maxStderr bounds the stderr tail and the crash report sent with a child process's death:
// Sentry truncates a context's long values anyway, and the end is where the
// crash is.
const maxStderr = 8 << 10

// processContext adds what a task that ran in a child process left behind:
// for a child that died or was killed, its pid, how it ended, the tail of
// its stderr and the Go runtime's crash report from it (context
// "process"); for a panic in a child, whose program counters did not cross
// the process boundary, the panicking goroutine's stack as text (context
// "panic").
func processContext(scope *sentry.Scope, err error) {
	var ee *prefork.ExitError
	if errors.As(err, &ee) {
		pc := sentry.Context{"pid": ee.PID, "cause": ee.Cause}
		if ee.Reason != nil {
			pc["killed_because"] = ee.Reason.Error()
		}
		if len(ee.Stderr) > 0 {
			pc["stderr_tail"] = string(tail(ee.Stderr, maxStderr))
		}
		if len(ee.Stack) > 0 {
			// Its start is what matters: the signal or panic, and the
			// goroutine that raised it.
			pc["crash_report"] = string(ee.Stack[:min(len(ee.Stack), maxStderr)])
		}
		scope.SetContext("process", pc)
	}
	var pe *foreman.PanicError
	if errors.As(err, &pe) && len(pe.PCs) == 0 && len(pe.Stack) > 0 {
		scope.SetContext("panic", sentry.Context{"stack": string(tail(pe.Stack, maxStderr))})
	}
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

func outcome(err error) string {
	var pe *foreman.PanicError
	switch {
	case errors.As(err, &pe):
		return outcomePanicked
	case errors.Is(err, registry.ErrUnknownTask), errors.Is(err, registry.ErrBadArgs):
		return outcomeDiscarded
	default:
		return outcomeFailed
	}
}

// exception describes err as one Sentry exception: the innermost error's
// type, titled by the whole message, since wrappers such as
// *fmt.wrapError say nothing about what went wrong.
func exception(err error) sentry.Exception {
	ex := sentry.Exception{
		Type:  reflect.TypeOf(innermost(err)).String(),
		Value: err.Error(),
	}
	var pe *foreman.PanicError
	if errors.As(err, &pe) {
		ex.Stacktrace = stacktrace(pe.PCs)
		ex.Mechanism = &sentry.Mechanism{Type: "panic"}
		ex.Mechanism.SetUnhandled()
		return ex
	}
	// The deepest stack recorded by an error of the chain is the closest
	// to where things went wrong.
	e := err
	for range maxUnwrap {
		if st := sentry.ExtractStacktrace(e); st != nil {
			ex.Stacktrace = st
		}
		if e = errors.Unwrap(e); e == nil {
			break
		}
	}
	return ex
}

// innermost follows err's chain of single wrapping to its end. An error
// joining several others (Unwrap() []error) is its own innermost error.
func innermost(err error) error {
	for range maxUnwrap {
		next := errors.Unwrap(err)
		if next == nil {
			break
		}
		err = next
	}
	return err
}

// stacktrace turns program counters, innermost call first as
// runtime.Callers returns them, into a Sentry stacktrace. sentry-go's
// NewFrame sets each frame's module, function and in-app flag; runtime
// frames are kept, marked not in-app, as Sentry shows them collapsed.
func stacktrace(pcs []uintptr) *sentry.Stacktrace {
	if len(pcs) == 0 {
		return nil
	}
	var frames []sentry.Frame
	it := runtime.CallersFrames(pcs)
	for {
		f, more := it.Next()
		frames = append(frames, sentry.NewFrame(f))
		if !more {
			break
		}
	}
	// Sentry wants the outermost call first and the crashing frame last.
	slices.Reverse(frames)
	return &sentry.Stacktrace{Frames: frames}
}
