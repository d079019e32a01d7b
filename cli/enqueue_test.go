package cli

import (
	"context"
	"encoding/json"
	"io"
	"path/filepath"
	"testing"

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
