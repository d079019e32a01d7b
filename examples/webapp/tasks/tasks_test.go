package tasks_test

import (
	"bytes"
	"database/sql"
	"encoding/json"
	"errors"
	"image"
	"image/color"
	"image/png"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/snappea/snappea/examples/webapp/tasks"
	"github.com/snappea/snappea/queue"
)

// mustOpenInline opens a queue that runs each task in the caller, through
// the same JSON round trip as the daemon, and logs to the returned buffer.
// This is how to test handlers without a daemon.
func mustOpenInline(t *testing.T) (*queue.Queue, *bytes.Buffer) {
	t.Helper()
	var logs bytes.Buffer
	q, err := queue.Open(t.Context(), queue.Config{
		Dir:      t.TempDir(),
		Registry: tasks.Registry,
		Inline:   true,
		Logger:   slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	return q, &logs
}

// records parses JSON log lines.
func records(t *testing.T, logs *bytes.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for line := range strings.Lines(logs.String()) {
		var r map[string]any
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		out = append(out, r)
	}
	return out
}

func TestSendWelcome(t *testing.T) {
	q, logs := mustOpenInline(t)
	const email = "ada@example.com"

	id, err := tasks.SendWelcome.Enqueue(t.Context(), q, tasks.WelcomeArgs{UserID: 7, Email: email})
	if err != nil {
		t.Fatalf("Enqueue: %v", err)
	}

	var sent int
	for _, r := range records(t, logs) {
		if r["level"] != "DEBUG" && strings.Contains(jsonString(r), email) {
			t.Errorf("email logged at %v: %v", r["level"], r)
		}
		if r["msg"] != "welcome sent" {
			continue
		}
		sent++
		if r["level"] != "INFO" || r["user_id"] != 7.0 || r["task"] != tasks.SendWelcome.Name() || r["task_id"] != float64(id) {
			t.Errorf("got record %v, want level INFO, user_id 7, task %s, task_id %d", r, tasks.SendWelcome.Name(), id)
		}
	}
	if sent != 1 {
		t.Errorf("got %d \"welcome sent\" records, want 1\n%s", sent, logs)
	}
}

func jsonString(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func TestSendWelcome_noEmail(t *testing.T) {
	q, _ := mustOpenInline(t)
	// Inline, Enqueue returns the handler's error; the daemon would log
	// the task as failed.
	if _, err := tasks.SendWelcome.Enqueue(t.Context(), q, tasks.WelcomeArgs{UserID: 7}); err == nil {
		t.Error("Enqueue without an email succeeded, want the handler's error")
	}
}

// A task enqueued with EnqueueTx runs when InTx commits, and never if it
// rolls back, just as the daemon would see it.
func TestSendWelcome_inTx(t *testing.T) {
	q, logs := mustOpenInline(t)
	ctx := t.Context()
	errRollback := errors.New("roll back")

	err := q.InTx(ctx, func(tx *sql.Tx) error {
		if _, err := tasks.SendWelcome.EnqueueTx(ctx, q, tx, tasks.WelcomeArgs{UserID: 1, Email: "a@example.com"}); err != nil {
			return err
		}
		return errRollback
	})
	if !errors.Is(err, errRollback) {
		t.Fatalf("InTx: got %v, want %v", err, errRollback)
	}
	if strings.Contains(logs.String(), "welcome sent") {
		t.Fatalf("rolled-back task ran:\n%s", logs)
	}

	err = q.InTx(ctx, func(tx *sql.Tx) error {
		_, err := tasks.SendWelcome.EnqueueTx(ctx, q, tx, tasks.WelcomeArgs{UserID: 2, Email: "b@example.com"})
		return err
	})
	if err != nil {
		t.Fatalf("InTx: %v", err)
	}
	if got := strings.Count(logs.String(), `"msg":"welcome sent"`); got != 1 {
		t.Errorf("got %d \"welcome sent\" records after commit, want 1\n%s", got, logs)
	}
}

func TestThumbnail(t *testing.T) {
	q, _ := mustOpenInline(t)
	red := color.RGBA{R: 255, A: 255}
	for _, tc := range []struct {
		name         string
		w, h, size   int
		wantW, wantH int
	}{
		{"landscape", 300, 200, 64, 64, 42},
		{"portrait", 100, 400, 64, 16, 64},
		{"square", 500, 500, 50, 50, 50},
		{"already small", 50, 40, 64, 50, 40},
		{"thin", 1000, 1, 10, 10, 1},
		{"default size", 256, 512, 0, 64, tasks.DefaultThumbnailSize},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			src := filepath.Join(dir, "in.png")
			dst := filepath.Join(dir, "out.png")
			img := image.NewRGBA(image.Rect(0, 0, tc.w, tc.h))
			for y := range tc.h {
				for x := range tc.w {
					img.Set(x, y, red)
				}
			}
			writePNG(t, src, img)

			_, err := tasks.Thumbnail.Enqueue(t.Context(), q, tasks.ThumbnailArgs{Src: src, Dst: dst, Size: tc.size})
			if err != nil {
				t.Fatalf("Enqueue: %v", err)
			}

			got := readPNG(t, dst)
			if b := got.Bounds(); b.Dx() != tc.wantW || b.Dy() != tc.wantH {
				t.Errorf("got %dx%d, want %dx%d", b.Dx(), b.Dy(), tc.wantW, tc.wantH)
			}
			if c := color.RGBAModel.Convert(got.At(0, 0)); c != red {
				t.Errorf("got pixel %v, want %v", c, red)
			}
		})
	}
}

func TestThumbnail_errors(t *testing.T) {
	q, _ := mustOpenInline(t)
	dir := t.TempDir()
	notImage := filepath.Join(dir, "notes.txt")
	if err := os.WriteFile(notImage, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args tasks.ThumbnailArgs
	}{
		{"missing source", tasks.ThumbnailArgs{Src: filepath.Join(dir, "nope.png"), Dst: filepath.Join(dir, "a.png")}},
		{"not an image", tasks.ThumbnailArgs{Src: notImage, Dst: filepath.Join(dir, "b.png")}},
		{"negative size", tasks.ThumbnailArgs{Src: notImage, Dst: filepath.Join(dir, "c.png"), Size: -1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := tasks.Thumbnail.Enqueue(t.Context(), q, tc.args); err == nil {
				t.Error("Enqueue succeeded, want the handler's error")
			}
			if _, err := os.Stat(tc.args.Dst); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("Stat(Dst): got %v, want no file", err)
			}
		})
	}
}

func writePNG(t *testing.T, path string, img image.Image) {
	t.Helper()
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
}

func readPNG(t *testing.T, path string) image.Image {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("decode %s: %v", path, err)
	}
	return img
}
