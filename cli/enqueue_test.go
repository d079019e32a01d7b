package cli

import (
	"context"
	"encoding/json"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/snappea/snappea/queue"
	"github.com/snappea/snappea/registry"
)

// fakeProgress records what enqueue reports.
type fakeProgress struct {
	steps    []int
	finished bool
}

func (p *fakeProgress) update(step, steps int, what string) {
	if steps == 1000 && what == "enqueue snappea.noop" && !p.finished {
		p.steps = append(p.steps, step)
	}
}

func (p *fakeProgress) finish() { p.finished = true }

func TestEnqueue_progress(t *testing.T) {
	ctx := context.Background()
	q, err := queue.Open(ctx, queue.Config{Dir: filepath.Join(t.TempDir(), "data")})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	c := &cmdEnv{Env: Env{Stdout: io.Discard, Stderr: io.Discard}, reg: registry.New()}
	for _, opts := range []registry.Options{{}, {Key: "k"}} {
		var p fakeProgress
		batch := opts.Key != "" // one transaction, a task at a time
		if code := c.enqueue(ctx, q, "snappea.noop", json.RawMessage("null"), opts, 1000, batch, &p); code != ExitOK {
			t.Fatalf("exit %d", code)
		}
		if len(p.steps) != 1000/progressEvery || p.steps[len(p.steps)-1] != 1000-progressEvery || !p.finished {
			t.Errorf("%+v: progress %v, finished %v; want every %d tasks, then finished", opts, p.steps, p.finished, progressEvery)
		}
	}
}

func TestEnqueue_replace(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	enqueue := func(args ...string) (string, string) {
		t.Helper()
		code, stdout, stderr := runCLI(t, nil, append([]string{"enqueue", "--dir", dir, "--no-check"}, args...)...)
		if code != ExitOK {
			t.Fatalf("enqueue %v: exit %d: %s", args, code, stderr)
		}
		return strings.TrimSpace(stdout), stderr
	}
	id, _ := enqueue("--key", "k", "--replace", "digest", `{"n":1}`)
	again, stderr := enqueue("--key", "k", "--replace", "digest", `{"n":2}`)
	if again != id || !strings.Contains(stderr, "replaced: task "+id+`, pending with key "k"`) ||
		!strings.Contains(stderr, "its due time kept") || !strings.Contains(stderr, "enqueued 0 ×") {
		t.Errorf("second enqueue --replace printed %q, %q; want id %s and that it replaced it", again, stderr, id)
	}
	ids, stderr := enqueue("--key", "k", "--replace", "--debounce", "1h", "--count", "2", "--batch", "digest", `{"n":3}`)
	if ids != id+"\n"+id || !strings.Contains(stderr, "replaced 2 times: task "+id) || !strings.Contains(stderr, "due at ") {
		t.Errorf("enqueue --replace --debounce --count 2 printed %q, %q; want id %s twice, replaced 2 times, due at", ids, stderr, id)
	}
	q, err := queue.Open(context.Background(), queue.Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	var args string
	var runAt int64
	if err := q.DB().QueryRow(`SELECT args, run_at FROM snappea_tasks WHERE key = 'k'`).Scan(&args, &runAt); err != nil {
		t.Fatal(err)
	}
	if args != `{"n":3}` || time.Until(time.Unix(0, runAt)) < 59*time.Minute {
		t.Errorf("pending task has %s due in %v, want {\"n\":3} due in an hour", args, time.Until(time.Unix(0, runAt)))
	}
}
