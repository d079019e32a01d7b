// Command webapp-web is the example's web server: it signs users up and
// accepts images, and leaves the slow part of each request (an email, a
// thumbnail) to background tasks that webapp-snappea runs.
//
// Usage:
//
//	webapp-web [-addr 127.0.0.1:8080] [-dir snappea-data] [-media media]
//
// -dir must be the daemon's data directory. The queue's location comes from
// the same SNAPPEA_* environment variables the daemon reads
// (cli.QueueConfigFromEnv), so setting them once serves both processes. It prints "listening on http://ADDR" once
// it accepts connections, and stops gracefully on INT or TERM.
package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"image"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/mail"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	// Decoders for the uploads the server accepts.
	_ "image/gif"
	_ "image/jpeg"
	_ "image/png"

	"github.com/snappea/snappea/cli"
	"github.com/snappea/snappea/examples/webapp/tasks"
	"github.com/snappea/snappea/queue"
	"github.com/snappea/snappea/registry"
)

// Limits on what a client may send.
const (
	maxSignupBody = 64 << 10
	maxImageBody  = 10 << 20
	maxPixels     = 40_000_000 // a small file can declare a huge image
)

// The application's own table, in the queue's database so that a signup
// and its welcome email commit together.
const createUsers = `CREATE TABLE IF NOT EXISTS users (
	id         INTEGER PRIMARY KEY,
	email      TEXT NOT NULL UNIQUE,
	created_at INTEGER NOT NULL
)`

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "webapp-web:", err)
		os.Exit(1)
	}
}

func run() error {
	// Where the queue lives, read from the environment exactly as the daemon
	// reads it: SNAPPEA_DIR, SNAPPEA_DB, SNAPPEA_WAKEUP_DIR, ...
	qcfg, err := cli.QueueConfigFromEnv(os.Getenv)
	if err != nil {
		return err
	}
	addr := flag.String("addr", "127.0.0.1:8080", "address to listen on; port 0 picks a free one")
	flag.StringVar(&qcfg.Dir, "dir", qcfg.Dir, "snappea data directory, the same as the daemon's (env SNAPPEA_DIR)")
	media := flag.String("media", "media", "directory for uploaded images and their thumbnails")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))

	// One Queue for the whole process: it is safe for concurrent use and
	// holds the database's connection pool.
	qcfg.Registry, qcfg.Logger = tasks.Registry, log
	// The daemon creates the database: a web server that created its own
	// (a wrong -dir) would queue tasks no daemon ever runs.
	qcfg.MustExist = true
	q, err := queue.Open(ctx, qcfg)
	if err != nil {
		return fmt.Errorf("open queue: %w", err)
	}
	defer q.Close()
	if _, err := q.DB().ExecContext(ctx, createUsers); err != nil {
		return fmt.Errorf("create users table: %w", err)
	}
	// The daemon may run from another working directory.
	mediaDir, err := filepath.Abs(*media)
	if err != nil {
		return fmt.Errorf("media directory: %w", err)
	}
	if err := os.MkdirAll(mediaDir, 0o750); err != nil {
		return fmt.Errorf("media directory: %w", err)
	}

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	s := &server{q: q, media: mediaDir, log: log}
	srv := &http.Server{Handler: s.routes(), ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	fmt.Printf("listening on http://%s\n", ln.Addr())

	select {
	case err := <-served:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	stop() // from here a second signal kills the process at once
	log.Info("stopping: finishing requests in flight")
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}

type server struct {
	q     *queue.Queue
	media string // absolute
	log   *slog.Logger
}

func (s *server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /signup", s.signup)
	mux.HandleFunc("POST /thumbnail", s.thumbnail)
	return mux
}

var errEmailTaken = errors.New("email already signed up")

// signup creates a user and queues their welcome email in one transaction:
// no user without an email on its way, no email for a user that was not
// saved. Body: JSON {"email": "..."} or a form with an email field.
func (s *server) signup(w http.ResponseWriter, r *http.Request) {
	email, err := readEmail(w, r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	ctx := r.Context()
	var userID, taskID int64
	// InTx commits, then wakes the daemon. Inside fn, use tx only:
	// q.Enqueue or q.InTx there would wait forever for this transaction.
	err = s.q.InTx(ctx, func(tx *sql.Tx) error {
		err := tx.QueryRowContext(ctx,
			`INSERT INTO users (email, created_at) VALUES (?, ?) ON CONFLICT (email) DO NOTHING RETURNING id`,
			email, time.Now().Unix()).Scan(&userID)
		if errors.Is(err, sql.ErrNoRows) {
			return errEmailTaken
		}
		if err != nil {
			return fmt.Errorf("insert user: %w", err)
		}
		taskID, err = tasks.SendWelcome.EnqueueTx(ctx, s.q, tx, tasks.WelcomeArgs{UserID: userID, Email: email})
		return err
	})
	if errors.Is(err, errEmailTaken) {
		writeError(w, http.StatusConflict, err.Error())
		return
	}
	if err != nil {
		s.enqueueFailed(w, r, err)
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]int64{"user_id": userID, "task_id": taskID})
}

func readEmail(w http.ResponseWriter, r *http.Request) (string, error) {
	r.Body = http.MaxBytesReader(w, r.Body, maxSignupBody)
	var email string
	if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct == "application/json" {
		var body struct {
			Email string `json:"email"`
		}
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			return "", fmt.Errorf("bad JSON body: %w", err)
		}
		email = body.Email
	} else {
		email = r.PostFormValue("email")
	}
	if email == "" {
		return "", errors.New("email is required")
	}
	if a, err := mail.ParseAddress(email); err != nil || a.Address != email {
		return "", errors.New("email is not a plain address like name@example.com")
	}
	return email, nil
}

// thumbnail stores the uploaded image (the request body) and queues a task
// to shrink it; the answer names the thumbnail the task will write in the
// media directory. The query parameter size sets its longest side.
func (s *server) thumbnail(w http.ResponseWriter, r *http.Request) {
	size := 0 // the task's default
	if v := r.URL.Query().Get("size"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1024 {
			writeError(w, http.StatusBadRequest, "size must be a number of pixels from 1 to 1024")
			return
		}
		size = n
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxImageBody))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			writeError(w, http.StatusRequestEntityTooLarge, "image is larger than 10 MiB")
		} else {
			writeError(w, http.StatusBadRequest, "could not read the body")
		}
		return
	}
	// Check the header here, so that the client hears about a bad upload
	// now; decoding the pixels is the task's work.
	cfg, format, err := image.DecodeConfig(bytes.NewReader(body))
	if err != nil {
		writeError(w, http.StatusBadRequest, "body is not a PNG, JPEG or GIF image")
		return
	}
	if cfg.Width*cfg.Height > maxPixels {
		writeError(w, http.StatusBadRequest, "image has too many pixels")
		return
	}
	src, err := s.save(body, format)
	if err != nil {
		s.log.Error("thumbnail request failed", "err", err)
		writeError(w, http.StatusInternalServerError, "could not store the image")
		return
	}
	dst := strings.TrimSuffix(src, filepath.Ext(src)) + ".thumb.png"
	taskID, err := tasks.Thumbnail.Enqueue(r.Context(), s.q, tasks.ThumbnailArgs{Src: src, Dst: dst, Size: size})
	if err != nil {
		os.Remove(src)
		s.enqueueFailed(w, r, err)
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]any{"task_id": taskID, "thumbnail": filepath.Base(dst)})
}

// save writes an upload under a fresh name in the media directory and
// returns its path.
func (s *server) save(b []byte, format string) (string, error) {
	f, err := os.CreateTemp(s.media, "upload-*."+format)
	if err != nil {
		return "", fmt.Errorf("save upload: %w", err)
	}
	_, err = f.Write(b)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", fmt.Errorf("save upload: %w", err)
	}
	return f.Name(), nil
}

// enqueueFailed answers a request whose task could not be queued.
func (s *server) enqueueFailed(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, queue.ErrBusy):
		// Nothing was written: the client may simply try again.
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, "busy, try again shortly")
	case errors.Is(err, registry.ErrBadArgs):
		writeError(w, http.StatusBadRequest, "invalid task arguments")
	default:
		s.log.Error("enqueue failed", "path", r.URL.Path, "err", err)
		writeError(w, http.StatusInternalServerError, "internal error")
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}
