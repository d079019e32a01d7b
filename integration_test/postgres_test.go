package integration_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx", to drop the test schemas
)

// pgDatabase is a schema of its own on the tests' PostgreSQL server,
// dropped when the test ends. Without SNAPPEA_TEST_DATABASE_URL the test
// skips.
type pgDatabase struct {
	url, schema string
	secret      string // the URL's password, which nothing may print
}

// args are the data flags that put a command on the database.
func (p pgDatabase) args() []string { return []string{"--database-url", p.url, "--schema", p.schema} }

func newPGDatabase(t *testing.T) pgDatabase {
	t.Helper()
	raw := os.Getenv("SNAPPEA_TEST_DATABASE_URL")
	if raw == "" {
		t.Skip("no PostgreSQL server for the tests: set SNAPPEA_TEST_DATABASE_URL=postgres://user@host:port/dbname?sslmode=disable, or run .ci/run, which starts one")
	}
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatalf("SNAPPEA_TEST_DATABASE_URL: %v", err)
	}
	// A password to look for in the output; a server that trusts local
	// connections ignores it.
	secret, ok := u.User.Password()
	if !ok {
		secret = "pw-" + randomHex(6)
		u.User = url.UserPassword(u.User.Username(), secret)
	}
	p := pgDatabase{url: u.String(), schema: "snappea_it_" + randomHex(6), secret: secret}
	t.Cleanup(func() {
		db, err := sql.Open("pgx", raw)
		if err != nil {
			t.Errorf("drop schema %s: %v", p.schema, err)
			return
		}
		defer db.Close()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if _, err := db.ExecContext(ctx, `DROP SCHEMA IF EXISTS `+p.schema+` CASCADE`); err != nil {
			t.Errorf("drop schema %s: %v", p.schema, err)
		}
	})
	return p
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// pgStatus is what the tests read of `status --json` on PostgreSQL.
type pgStatus struct {
	Pending int64 `json:"pending"`
	Daemons []struct {
		ID       int64     `json:"id"`
		Host     string    `json:"host"`
		PID      int       `json:"pid"`
		Workers  int       `json:"workers"`
		Busy     int       `json:"busy"`
		LastSeen time.Time `json:"last_seen"`
		Gone     bool      `json:"gone"`
	} `json:"daemons"`
}

func (p pgDatabase) status(t *testing.T, dir string) (pgStatus, string) {
	t.Helper()
	r := mustSnappea(t, append([]string{"status", "--json", "--dir", dir}, p.args()...)...)
	var s pgStatus
	if err := json.Unmarshal([]byte(r.stdout), &s); err != nil {
		t.Fatalf("status --json printed %q: %v", r.stdout, err)
	}
	return s, r.stdout + r.stderr
}

// waitPGStatus polls `status --json` until cond holds.
func (p pgDatabase) waitStatus(t *testing.T, dir string, timeout time.Duration, what string, cond func(pgStatus) bool) pgStatus {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		s, out := p.status(t, dir)
		if cond(s) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s; last status\n%s", timeout, what, out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestPostgres_producerProcess(t *testing.T) {
	p := newPGDatabase(t)
	dir := dataDir(t)
	d := startDaemon(t, dir, append(p.args(), "--workers", "8")...)
	const n = 300
	r := mustSnappea(t, append([]string{"enqueue", "--dir", dataDir(t), "--count", fmt.Sprint(n), "snappea.noop"}, p.args()...)...)
	enqueued := ids(t, r.stdout)
	if len(enqueued) != n {
		t.Fatalf("enqueue printed %d ids, want %d", len(enqueued), n)
	}
	d.waitUntil(60*time.Second, "every task to finish", func() bool { return d.count(isMsg("task done")) >= n })
	done := taskIDs(d, "task done")
	for _, id := range enqueued {
		if done[id] != 1 {
			t.Errorf("task %d ran %d times, want once", id, done[id])
		}
	}
	if len(done) != n {
		t.Errorf("%d distinct tasks ran, want %d", len(done), n)
	}

	s, out := p.status(t, dir)
	host, _ := os.Hostname()
	if len(s.Daemons) != 1 || s.Daemons[0].PID != d.pid() || s.Daemons[0].Host != host || s.Daemons[0].Workers != 8 || s.Daemons[0].Gone {
		t.Errorf("status lists the daemons %+v, want the one daemon (pid %d on %s, 8 workers)", s.Daemons, d.pid(), host)
	}
	human := mustSnappea(t, append([]string{"status", "--dir", dir}, p.args()...)...)
	if !strings.Contains(human.stdout, fmt.Sprint(d.pid())) || !strings.Contains(human.stdout, "DAEMON") {
		t.Errorf("status does not list the daemon:\n%s", human.stdout)
	}
	d.stop()
	if s, _ := p.status(t, dir); len(s.Daemons) != 0 {
		t.Errorf("after a clean stop the daemons are %+v, want none", s.Daemons)
	}
	for what, text := range map[string]string{"the daemon's log": d.output(), "status": out + human.stdout + human.stderr,
		"enqueue": r.stdout + r.stderr} {
		if strings.Contains(text, p.secret) {
			t.Errorf("%s shows the URL's password:\n%s", what, text)
		}
	}
	if d.count(func(r record) bool { return r.msg() == "snappea started" && strings.Contains(r.str("db"), p.schema) }) != 1 {
		t.Errorf("the start-up record does not name the database\n%s", d.output())
	}
}

func TestPostgres_threeDaemonsFourProducers(t *testing.T) {
	p := newPGDatabase(t)
	const (
		producers = 4
		each      = 5000 // single-transaction enqueues per producer, as the issue asks
		workers   = 8
	)
	dirs := make([]string, 3)
	daemons := make([]*daemon, 3)
	for i := range daemons {
		dirs[i] = dataDir(t)
		daemons[i] = startDaemon(t, dirs[i], append(p.args(), "--workers", fmt.Sprint(workers))...)
	}
	// status from one daemon's directory lists all three.
	p.waitStatus(t, dirs[0], 30*time.Second, "the three daemons in status", func(s pgStatus) bool {
		return len(s.Daemons) == 3
	})
	// The same without the URL: the daemon of the directory lists them.
	var bare pgStatus
	r := mustSnappea(t, "status", "--json", "--dir", dirs[0])
	if err := json.Unmarshal([]byte(r.stdout), &bare); err != nil {
		t.Fatalf("status --json printed %q: %v", r.stdout, err)
	}
	if len(bare.Daemons) != 3 {
		t.Errorf("status --json --dir without --database-url lists %d daemons, want 3:\n%s", len(bare.Daemons), r.stdout)
	}
	if human := mustSnappea(t, "status", "--dir", dirs[0]); !strings.Contains(human.stdout, p.schema) || strings.Contains(human.stdout, p.secret) {
		t.Errorf("status without --database-url does not name the daemon's database (or shows its password):\n%s", human.stdout)
	}

	var wg sync.WaitGroup
	results := make([]result, producers)
	for i := range producers {
		wg.Go(func() {
			// One transaction per task, as web requests would.
			results[i] = snappea(t, append([]string{"enqueue", "--dir", dataDir(t), "--count", fmt.Sprint(each), "snappea.sleep", `{"ms": 1}`}, p.args()...)...)
		})
	}

	// Kill one daemon midway, while the producers still enqueue.
	killed := daemons[1]
	killed.waitUntil(2*time.Minute, "the daemon to run some tasks", func() bool { return killed.count(isMsg("task done")) >= 500 })
	killed.signal(syscall.SIGKILL)
	killed.wait(10 * time.Second)
	wg.Wait()
	var enqueued []int64
	for i, r := range results {
		if r.code != 0 {
			t.Fatalf("producer %d: exit %d\n%s", i, r.code, r.stderr)
		}
		enqueued = append(enqueued, ids(t, r.stdout)...)
	}
	if len(enqueued) != producers*each {
		t.Fatalf("producers printed %d ids, want %d", len(enqueued), producers*each)
	}

	// The others go on: the queue drains and their running tasks finish.
	p.waitStatus(t, dirs[0], 3*time.Minute, "the queue to drain", func(s pgStatus) bool { return s.Pending == 0 })
	survivors := []*daemon{daemons[0], daemons[2]}
	for _, d := range survivors {
		d.waitUntil(time.Minute, "running tasks to finish", func() bool {
			return d.count(isMsg("task done")) == d.count(isMsg("task started"))
		})
	}
	// The killed daemon stopped heartbeating: it shows as gone.
	p.waitStatus(t, dirs[0], time.Minute, "the killed daemon shown gone", func(s pgStatus) bool {
		for _, d := range s.Daemons {
			if d.PID == killed.pid() {
				return d.Gone
			}
		}
		return false
	})
	for _, d := range survivors {
		d.stop()
	}

	startedKilled := taskIDs(killed, "task started")
	doneKilled := taskIDs(killed, "task done")
	ran := map[int64]int{}
	for _, d := range survivors {
		for id, n := range taskIDs(d, "task started") {
			ran[id] += n
			if startedKilled[id] != 0 {
				t.Errorf("task %d started on the killed daemon and again on another", id)
			}
		}
	}
	for id, n := range doneKilled {
		ran[id] += n
	}
	// A lost task was claimed (deleted) by the killed daemon: running at
	// the kill, or claimed and not yet logged as started. A claim never
	// takes more tasks than free workers, so at most its workers are lost.
	var lost, lostUnlogged []int64
	for _, id := range enqueued {
		switch n := ran[id]; {
		case n > 1:
			t.Errorf("task %d ran %d times", id, n)
		case n == 0:
			lost = append(lost, id)
			if startedKilled[id] == 0 {
				lostUnlogged = append(lostUnlogged, id)
			}
		}
	}
	if len(lost) > workers {
		t.Errorf("%d tasks lost (%v), more than the killed daemon's %d workers could hold; %d of them never started on it",
			len(lost), lost, workers, len(lostUnlogged))
	}
	for id, n := range startedKilled {
		if n != 1 {
			t.Errorf("task %d started %d times on the killed daemon", id, n)
		}
	}
	t.Logf("%d tasks; the killed daemon finished %d, the others %d and %d; %d lost (%d of them claimed but not yet logged as started)",
		len(enqueued), len(doneKilled), len(taskIDs(daemons[0], "task done")), len(taskIDs(daemons[2], "task done")), len(lost), len(lostUnlogged))
}

// proxy forwards connections from a loopback port to the server at
// target until the test ends; cut drops them all, as a server restart
// does, and refuses new ones until the returned function is called.
type pgProxy struct {
	t      *testing.T
	addr   string
	target string

	mu    sync.Mutex
	ln    net.Listener
	conns map[net.Conn]bool
}

func proxy(t *testing.T, ln net.Listener, target string) *pgProxy {
	p := &pgProxy{t: t, addr: ln.Addr().String(), target: target, conns: map[net.Conn]bool{}}
	p.serve(ln)
	t.Cleanup(func() { p.cut() })
	return p
}

func (p *pgProxy) serve(ln net.Listener) {
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", p.target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns[c], p.conns[s] = true, true
			p.mu.Unlock()
			go func() {
				defer c.Close()
				defer s.Close()
				go io.Copy(s, c)
				io.Copy(c, s)
			}()
		}
	}()
}

// cut closes the listener and every connection.
func (p *pgProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		c.Close()
	}
	clear(p.conns)
}

// restore listens again on the same port.
func (p *pgProxy) restore() {
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		p.t.Fatalf("listen again on %s: %v", p.addr, err)
	}
	p.serve(ln)
}

func TestPostgres_serverDownAtStart(t *testing.T) {
	p := newPGDatabase(t)
	u, err := url.Parse(p.url)
	if err != nil {
		t.Fatal(err)
	}
	target := u.Host
	// A port nothing listens on yet.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	u.Host = addr
	down := pgDatabase{url: u.String(), schema: p.schema, secret: p.secret}

	dir := dataDir(t)
	d := launchDaemon(t, dir, down.args()...)
	warn := d.waitFor(30*time.Second, "the daemon to say it cannot reach the server", isMsg("cannot reach the PostgreSQL server; retrying"))
	if !strings.Contains(warn.str("err"), addr) {
		t.Errorf("the warning %v does not name the server %s", warn, addr)
	}
	d.waitFor(30*time.Second, "a second attempt", func(r record) bool {
		return r.msg() == "cannot reach the PostgreSQL server; retrying" && r.int("attempt") >= 2
	})

	// The server comes up: the daemon starts and runs tasks.
	ln, err = net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("the port %s was taken meanwhile: %v", addr, err)
	}
	proxy(t, ln, target)
	d.waitFor(time.Minute, "the daemon to start once the server is up", isMsg("foreman started"))
	enqueued := ids(t, mustSnappea(t, append([]string{"enqueue", "--dir", dataDir(t), "snappea.noop"}, p.args()...)...).stdout)
	d.waitFor(30*time.Second, "the task to run", func(r record) bool {
		return r.msg() == "task done" && r.int("task_id") == enqueued[0]
	})
	d.stop()
	if strings.Contains(d.output(), p.secret) {
		t.Errorf("the daemon's log shows the URL's password:\n%s", d.output())
	}
}

func TestPostgres_stopWhileServerDown(t *testing.T) {
	p := newPGDatabase(t)
	d := launchDaemon(t, dataDir(t), "--database-url", "postgres://snappea:"+p.secret+"@127.0.0.1:1/postgres", "--schema", p.schema)
	d.waitFor(30*time.Second, "the retry warning", isMsg("cannot reach the PostgreSQL server; retrying"))
	d.signal(syscall.SIGTERM)
	if code := d.wait(30 * time.Second); code != 0 {
		t.Errorf("exit code %d after TERM while waiting for the server, want 0\n%s", code, d.output())
	}
	if strings.Contains(d.output(), p.secret) {
		t.Errorf("the daemon's log shows the URL's password:\n%s", d.output())
	}
}

func TestPostgres_cancelReachesTheDaemonRunningIt(t *testing.T) {
	p := newPGDatabase(t)
	dirs := []string{dataDir(t), dataDir(t)}
	daemons := []*daemon{startDaemon(t, dirs[0], p.args()...), startDaemon(t, dirs[1], p.args()...)}
	id := ids(t, mustSnappea(t, append([]string{"enqueue", "--dir", dataDir(t), "snappea.sleep", `{"ms": 600000}`}, p.args()...)...).stdout)[0]
	started := func(d *daemon) bool {
		return d.count(func(r record) bool { return r.msg() == "task started" && r.int("task_id") == id }) > 0
	}
	deadline := time.Now().Add(30 * time.Second)
	runner := -1
	for runner < 0 {
		for i, d := range daemons {
			if started(d) {
				runner = i
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("task %d did not start on either daemon", id)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Cancel from the other daemon's directory: the request goes through
	// the database.
	other := dirs[1-runner]
	r := mustSnappea(t, append([]string{"cancel", "--dir", other, fmt.Sprint(id)}, p.args()...)...)
	if !strings.Contains(r.stdout, "asked the daemons") {
		t.Errorf("cancel printed %q", r.stdout)
	}
	daemons[runner].waitFor(30*time.Second, "the task to be cancelled", func(r record) bool {
		return r.msg() == "task done" && r.int("task_id") == id && r.str("outcome") == "cancelled"
	})
	// Not running anywhere now: the request is sent and nothing happens.
	mustSnappea(t, append([]string{"cancel", "--dir", other, fmt.Sprint(id)}, p.args()...)...)
	for _, d := range daemons {
		d.stop()
	}
}

func TestPostgres_scheduleWithThreeDaemonsAtOnce(t *testing.T) {
	p := newPGDatabase(t)
	file := everySecond(t)
	daemons := make([]*daemon, 3)
	for i := range daemons {
		daemons[i] = startDaemon(t, dataDir(t), append(p.args(), "--schedules", file)...)
	}
	// Wait for several ticks fired among the three.
	const want = 5
	all := func() []tick {
		var out []tick
		for _, d := range daemons {
			out = append(out, ticks(t, d)...)
		}
		return out
	}
	deadline := time.Now().Add(time.Minute)
	for len(all()) < want {
		if time.Now().After(deadline) {
			t.Fatalf("only %d ticks fired in a minute", len(all()))
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, d := range daemons {
		d.stop()
	}
	seen := map[time.Time]int{}
	for _, tk := range all() {
		seen[tk.at]++
	}
	for at, n := range seen {
		if n != 1 {
			t.Errorf("tick %v fired %d times, want once", at, n)
		}
	}
	// Every tick's task ran once, on one of the daemons.
	ran := map[int64]int{}
	for _, d := range daemons {
		for id, n := range echoed(d) {
			ran[id] += n
		}
	}
	for _, tk := range all() {
		if ran[tk.id] > 1 {
			t.Errorf("the task %d of tick %v ran %d times", tk.id, tk.at, ran[tk.id])
		}
	}
	t.Logf("%d ticks, fired by %d, %d and %d", len(seen), len(ticks(t, daemons[0])), len(ticks(t, daemons[1])), len(ticks(t, daemons[2])))
}

func TestPostgres_serverGoneUnderLoad(t *testing.T) {
	p := newPGDatabase(t)
	u, err := url.Parse(p.url)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	px := proxy(t, ln, u.Host)
	u.Host = px.addr
	through := pgDatabase{url: u.String(), schema: p.schema, secret: p.secret}

	// The daemon reaches the server through the proxy; the producer
	// directly, so that it enqueues on while the daemon's connections are
	// cut.
	d := startDaemon(t, dataDir(t), append(through.args(), "--workers", "8", "--poll-interval", "500ms")...)
	produce := func(n int) []int64 {
		return ids(t, mustSnappea(t, append([]string{"enqueue", "--dir", dataDir(t), "--count", fmt.Sprint(n), "snappea.sleep", `{"ms": 1}`}, p.args()...)...).stdout)
	}
	enqueued := produce(500)
	d.waitUntil(time.Minute, "some tasks to run", func() bool { return d.count(isMsg("task done")) >= 100 })

	// The server goes away under load, as in a restart: every connection
	// of the daemon dropped, new ones refused, while a producer enqueues
	// 300 more tasks and until the daemon has logged the failure.
	px.cut()
	enqueued = append(enqueued, produce(300)...)
	noticed := d.waitFor(30*time.Second, "the daemon to notice", func(r record) bool { return r.str("level") == "WARN" || r.str("level") == "ERROR" })
	t.Logf("the daemon noticed: %v", noticed)
	px.restore()
	enqueued = append(enqueued, produce(300)...)

	d.waitUntil(2*time.Minute, "every task to run after the server came back", func() bool {
		return d.count(isMsg("task done")) >= len(enqueued)-8
	})
	// Wait for the stragglers. Nothing queued is lost: only a task whose
	// claim committed while the connection was cut, before the daemon saw
	// the answer, which at-most-once counts as taken, never run twice.
	p.waitStatus(t, dataDir(t), time.Minute, "the queue to drain", func(s pgStatus) bool { return s.Pending == 0 })
	d.waitUntil(time.Minute, "running tasks to finish", func() bool {
		return d.count(isMsg("task done")) == d.count(isMsg("task started"))
	})
	d.stop()
	done := taskIDs(d, "task done")
	lost := 0
	for _, id := range enqueued {
		switch done[id] {
		case 0:
			lost++
		case 1:
		default:
			t.Errorf("task %d ran %d times", id, done[id])
		}
	}
	if lost > 8 {
		t.Errorf("%d tasks lost, more than one claim of the daemon's 8 workers", lost)
	}
	t.Logf("%d tasks, %d lost to the cut", len(enqueued), lost)
}
