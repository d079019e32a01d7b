package dashboard

import (
	"context"
	"crypto/rand"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"

	"github.com/snappea/snappea/control"
	"github.com/snappea/snappea/queue"
	"github.com/snappea/snappea/storage/sqlite"
)

// The defaults of Config, and the pages' sizes.
const (
	DefaultChartWindow = 3 * time.Hour // Config.ChartWindow's default
	DefaultCountLimit  = 10000         // Config.CountLimit's default
	DefaultSearchLimit = 5000          // Config.SearchLimit's default
	DefaultPageSize    = 50            // rows of a page of /queued or /failed without ?limit=
	MaxPageSize        = 500           // the largest ?limit= a page takes
)

// Limits on what a request may bring: beyond them it is refused with a
// 4xx page before anything is parsed.
const (
	maxQuery   = 4096     // bytes of query string
	maxForm    = 16 << 10 // bytes of a POST's body
	maxName    = 200      // bytes of a task name or key in a filter
	daemonWait = 5 * time.Second
)

// Daemon is the live daemon the pages show and operate: its running
// tasks, counters, pause and workers. A *control.Client (a daemon in
// another process, through its control socket) and any control.Handler
// implement it; Local adapts a foreman running in this process.
type Daemon interface {
	// Status is the daemon's state. The dashboard reads its state,
	// workers, running tasks, counters, pid, generation and start; it
	// counts the queue itself, and calls LiveStatus instead when the
	// Daemon has it (as *control.Client does), so that the daemon does not
	// count every pending row for each page.
	Status(ctx context.Context) (*control.Status, error)
	Pause(ctx context.Context) error
	Resume(ctx context.Context) error
	SetWorkers(ctx context.Context, n int) error
	// Cancel cancels a running task's context; false if it runs no task
	// with that id.
	Cancel(ctx context.Context, id int64) (bool, error)
}

// Config configures a Handler. Queue is required; the zero value of every
// other field is its documented default.
type Config struct {
	// Queue is the queue the pages show and act on. Required.
	Queue *queue.Queue
	// Daemon is the live daemon, for the running tasks, the counters and
	// the pause, workers and cancel actions. Nil: the pages show what the
	// database holds (on PostgreSQL, every daemon's heartbeat), and those
	// actions are not offered.
	Daemon Daemon
	// ShowArgs shows the failed tasks' arguments. Default false: they are
	// never shown, as they can hold secrets.
	ShowArgs bool
	// ReadOnly shows no forms and refuses every POST with 403.
	ReadOnly bool
	// Authorize, if set, is asked about every request first; an error
	// refuses it: with 401 and a request for basic authentication when
	// the error matches ErrUnauthenticated, else with 403 and the error's
	// text. BasicAuth and BearerToken make one. Nil: every request is
	// allowed (put the handler behind your own authentication).
	Authorize func(r *http.Request) error
	// ChartWindow is how far back the charts of finished and failed tasks
	// per minute go. Default 3h; at most 24h.
	ChartWindow time.Duration
	// CountLimit bounds the counts of ready and delayed tasks: beyond it
	// the overview says "more than" and shows the backlog the daemon's
	// statistics sampled. Default 10000.
	CountLimit int64
	// SearchLimit is the most queued tasks a page of /queued filtered by
	// task name reads, in claim order, to find its tasks (the index holds
	// no names); a page that found fewer says so and its next page
	// searches on. It also bounds the newest failed records a page of
	// /failed?lost=1 picks the lost tasks from. Default 5000.
	SearchLimit int
	// Logger receives the handler's errors (not the refused requests).
	// Default slog.Default().
	Logger *slog.Logger
}

func (c *Config) setDefaults() error {
	switch {
	case c.Queue == nil:
		return errors.New("dashboard: Queue is required")
	case c.ChartWindow < 0 || c.ChartWindow > 24*time.Hour:
		return fmt.Errorf("dashboard: ChartWindow %v: want 0 (the default, %v) up to 24h", c.ChartWindow, DefaultChartWindow)
	case c.SearchLimit < 0:
		return fmt.Errorf("dashboard: SearchLimit %d: want 0 (the default, %d) or more", c.SearchLimit, DefaultSearchLimit)
	case c.CountLimit < 0:
		return fmt.Errorf("dashboard: CountLimit %d: want 0 (the default, %d) or more", c.CountLimit, DefaultCountLimit)
	}
	if c.ChartWindow == 0 {
		c.ChartWindow = DefaultChartWindow
	}
	if c.ChartWindow < 10*time.Minute {
		c.ChartWindow = 10 * time.Minute
	}
	if c.SearchLimit == 0 {
		c.SearchLimit = DefaultSearchLimit
	}
	if c.CountLimit == 0 {
		c.CountLimit = DefaultCountLimit
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Handler serves the dashboard. Create it with New; it is safe for
// concurrent use.
type Handler struct {
	cfg     Config
	q       *queue.Queue
	log     *slog.Logger
	lite    bool // SQLite: one daemon, reached through Config.Daemon only
	csrfKey []byte
	pages   map[string]*template.Template
	mux     *http.ServeMux
}

// asset serves an embedded stylesheet or script.
func (h *Handler) asset(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	types := map[string]string{".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8"}
	typ := types[path.Ext(name)]
	b, err := fs.ReadFile(staticFS, "static/"+name)
	if err != nil || typ == "" || !fs.ValidPath(name) {
		h.fail(w, r, http.StatusNotFound, "no asset %.60q", name)
		return
	}
	w.Header().Set("Content-Type", typ)
	w.Header().Set("Cache-Control", "public, max-age=3600")
	w.Write(b)
}

// New checks cfg and returns the Handler. Mount it under a prefix with
// http.StripPrefix; its links follow the prefix.
func New(cfg Config) (*Handler, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	h := &Handler{cfg: cfg, q: cfg.Queue, log: cfg.Logger, csrfKey: make([]byte, 32), pages: map[string]*template.Template{}}
	rand.Read(h.csrfKey)
	_, h.lite = h.q.Backend().(*sqlite.Backend)
	for _, name := range []string{"overview", "running", "queued", "failed", "failure", "schedules", "tasks", "error"} {
		t, err := template.New(name).Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("dashboard: parse template %s: %w", name, err)
		}
		h.pages[name] = t
	}

	m := http.NewServeMux()
	m.HandleFunc("GET /{$}", h.overview)
	m.HandleFunc("GET /running", h.running)
	m.HandleFunc("GET /queued", h.queued)
	m.HandleFunc("GET /failed", h.failed)
	m.HandleFunc("GET /failed/{id}", h.failure)
	m.HandleFunc("GET /schedules", h.schedules)
	m.HandleFunc("GET /tasks", h.tasks)
	m.HandleFunc("GET /static/{name}", h.asset)
	m.HandleFunc("POST /pause", h.post(h.pause))
	m.HandleFunc("POST /resume", h.post(h.resume))
	m.HandleFunc("POST /workers", h.post(h.setWorkers))
	m.HandleFunc("POST /running/{id}/cancel", h.post(h.cancelRunning))
	m.HandleFunc("POST /queued/{id}/cancel", h.post(h.cancelQueued))
	m.HandleFunc("POST /failed/{id}/retry", h.post(h.retryOne))
	m.HandleFunc("POST /failed/retry", h.post(h.retryAll))
	m.HandleFunc("POST /failed/purge", h.post(h.purge))
	m.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead && r.Method != http.MethodPost {
			h.fail(w, r, http.StatusMethodNotAllowed, "method %s is not used here: pages are GET, actions POST", r.Method)
			return
		}
		h.fail(w, r, http.StatusNotFound, "no page %s here (or not for %s)", r.URL.Path, r.Method)
	})
	h.mux = m
	return h, nil
}

// ServeHTTP authorises the request, bounds it, and serves the page or the
// action.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("X-Frame-Options", "DENY")
	w.Header().Set("Referrer-Policy", "same-origin")
	w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; form-action 'self'; frame-ancestors 'none'")
	if h.cfg.Authorize != nil {
		if err := h.cfg.Authorize(r); err != nil {
			if errors.Is(err, ErrUnauthenticated) {
				w.Header().Set("WWW-Authenticate", `Basic realm="snappea", charset="UTF-8"`)
				h.fail(w, r, http.StatusUnauthorized, "%v", err)
				return
			}
			h.fail(w, r, http.StatusForbidden, "%v", err)
			return
		}
	}
	if len(r.URL.RawQuery) > maxQuery {
		h.fail(w, r, http.StatusRequestURITooLong, "the query string is %d bytes: at most %d", len(r.URL.RawQuery), maxQuery)
		return
	}
	if r.Method == http.MethodPost {
		r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	}
	h.mux.ServeHTTP(w, r)
}

// base is the prefix the handler is mounted under, found by comparing the
// request's original path with the one http.StripPrefix left: links and
// redirects start with it.
func base(r *http.Request) string {
	u, err := url.ParseRequestURI(r.RequestURI)
	if err != nil || r.RequestURI == "" {
		return ""
	}
	if b, ok := strings.CutSuffix(u.Path, r.URL.Path); ok {
		return strings.TrimSuffix(b, "/")
	}
	return ""
}

// page is what every template gets.
type page struct {
	Base, Path, Title string
	Back              string // the path and query to come back to after a form

	CSRF      string
	ReadOnly  bool
	HasDaemon bool
	Notice    string
	Now       time.Time
	Data      any
}

func (h *Handler) newPage(w http.ResponseWriter, r *http.Request, title string, data any) *page {
	back := r.URL.Path
	if r.URL.RawQuery != "" {
		back += "?" + r.URL.RawQuery
	}
	return &page{Base: base(r), Path: r.URL.Path, Back: back, Title: title, CSRF: h.csrfToken(w, r), ReadOnly: h.cfg.ReadOnly,
		HasDaemon: h.cfg.Daemon != nil, Notice: notice(r), Now: time.Now(), Data: data}
}

// notice is the message an action left for the page it returned to.
func notice(r *http.Request) string {
	n := r.URL.Query().Get("notice")
	if len(n) > 300 {
		n = n[:300]
	}
	return n
}

func (h *Handler) render(w http.ResponseWriter, r *http.Request, name string, code int, p *page) {
	var b strings.Builder
	if err := h.pages[name].ExecuteTemplate(&b, "layout", p); err != nil {
		h.log.Error("dashboard: render page", "page", name, "err", err)
		http.Error(w, "could not render the page", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	if r.Method != http.MethodHead {
		w.Write([]byte(b.String()))
	}
}

// errorPage is the error template's data.
type errorPage struct {
	Code    int
	Status  string
	Message string
}

// fail answers with an error page saying what was wrong.
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, code int, format string, a ...any) {
	msg := fmt.Sprintf(format, a...)
	p := &page{Base: base(r), Path: r.URL.Path, Title: http.StatusText(code), ReadOnly: h.cfg.ReadOnly,
		HasDaemon: h.cfg.Daemon != nil, Now: time.Now(),
		Data: errorPage{Code: code, Status: http.StatusText(code), Message: msg}}
	h.render(w, r, "error", code, p)
}

// internal answers a failure of the database or the daemon: logged, and
// shown as such.
func (h *Handler) internal(w http.ResponseWriter, r *http.Request, what string, err error) {
	if r.Context().Err() != nil {
		return // the client went away
	}
	h.log.Error("dashboard: "+what, "err", err)
	code := http.StatusInternalServerError
	if errors.Is(err, control.ErrNoDaemon) || errors.Is(err, context.DeadlineExceeded) {
		code = http.StatusServiceUnavailable
	}
	h.fail(w, r, code, "%s: %v", what, err)
}

// daemonCtx bounds a call to the daemon.
func daemonCtx(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), daemonWait)
}
