package dashboard

import (
	"cmp"
	"context"
	"errors"
	"html/template"
	"net/http"
	"os"
	"slices"
	"strconv"
	"time"

	"github.com/snappea/snappea"
	"github.com/snappea/snappea/control"
	"github.com/snappea/snappea/storage"
)

// count is a bounded count: N, or more than N when Over.
type count struct {
	N    int64
	Over bool
}

// daemonRow is one daemon on the overview.
type daemonRow struct {
	ID         int64
	State      string
	Host       string
	PID        int
	Generation int64
	Busy       int
	Workers    int
	Paused     bool
	Started    time.Time
	LastSeen   time.Time // zero: live from the daemon itself
	Gone       bool
}

type overviewData struct {
	Ready, Delayed count
	Limit          int64 // where the counts stop
	Running        int
	RunningKnown   bool
	Failed         int64
	Lost           int64 // of the failed, the lost tasks (snappea.IsLost)
	OldestAge      time.Duration
	OldestID       int64
	// Backlog is the latest backlog the statistics sampled, for counts
	// over the limit; BacklogAt its minute (zero: no sample).
	Backlog    int64
	BacklogAt  time.Time
	Finished   template.HTML // the charts
	FailedSVG  template.HTML
	Window     time.Duration
	Daemons    []daemonRow
	DaemonErr  string
	Live       *control.Status // nil without a daemon or when it did not answer
	MaxWorkers int
}

func (h *Handler) overview(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	d := overviewData{Window: h.cfg.ChartWindow, MaxWorkers: maxWorkers, Limit: h.cfg.CountLimit}
	c, err := h.q.Backend().CountPending(ctx, h.cfg.CountLimit)
	if err != nil {
		h.internal(w, r, "count the pending tasks", err)
		return
	}
	d.Ready = count{min(c.Ready, c.Limit), c.Ready > c.Limit}
	d.Delayed = count{min(c.Delayed, c.Limit), c.Delayed > c.Limit}
	if c.OldestID != 0 {
		d.OldestID, d.OldestAge = c.OldestID, max(time.Since(c.OldestAt), 0)
	}
	if d.Failed, err = h.q.Backend().FailureCount(ctx); err != nil {
		h.internal(w, r, "count the failed tasks", err)
		return
	}
	if d.Lost, err = h.q.Backend().CountLost(ctx); err != nil {
		h.internal(w, r, "count the lost tasks", err)
		return
	}
	now := time.Now()
	rows, err := h.q.ReadStats(ctx, now.Add(-h.cfg.ChartWindow))
	if err != nil {
		h.internal(w, r, "read the statistics", err)
		return
	}
	finished, failed := perMinute(rows, now, h.cfg.ChartWindow)
	d.Finished = chartSVG("Tasks finished per minute", finished, "bar")
	d.FailedSVG = chartSVG("Tasks failed per minute", failed, "bar fail")
	for _, row := range rows {
		if row.Backlog >= 0 && !row.Minute.Before(d.BacklogAt) {
			d.Backlog, d.BacklogAt = row.Backlog, row.Minute
		}
	}
	d.Live, d.DaemonErr = h.live(r)
	d.Daemons, err = h.daemons(ctx, d.Live)
	if err != nil {
		h.internal(w, r, "read the table of daemons", err)
		return
	}
	if d.Live != nil {
		d.Running, d.RunningKnown = d.Live.WorkersBusy, true
	}
	if !h.lite {
		d.Running, d.RunningKnown = 0, true
		for _, dm := range d.Daemons {
			if !dm.Gone {
				d.Running += dm.Busy
			}
		}
	}
	h.render(w, r, "overview", http.StatusOK, h.newPage(w, r, "Overview", d))
}

// liveStatuser is a Daemon that can leave the queue's counts out of its
// status, as *control.Client can.
type liveStatuser interface {
	LiveStatus(ctx context.Context) (*control.Status, error)
}

// live asks the daemon for its state; nil and why when it cannot.
func (h *Handler) live(r *http.Request) (*control.Status, string) {
	if h.cfg.Daemon == nil {
		return nil, ""
	}
	ctx, cancel := daemonCtx(r)
	defer cancel()
	status := h.cfg.Daemon.Status
	if l, ok := h.cfg.Daemon.(liveStatuser); ok {
		status = l.LiveStatus // without the daemon's count of every pending row
	}
	st, err := status(ctx)
	if err != nil {
		return nil, "the daemon did not answer: " + err.Error()
	}
	return st, ""
}

// daemons lists the daemons: on PostgreSQL the table of daemons, all of
// them; on SQLite the one daemon, when it answered.
func (h *Handler) daemons(ctx context.Context, live *control.Status) ([]daemonRow, error) {
	host, _ := os.Hostname() // the control socket's daemon is on this host
	if !h.lite {
		ds, err := h.q.Backend().Daemons(ctx)
		if err != nil {
			return nil, err
		}
		var out []daemonRow
		for _, d := range ds {
			if live != nil && d.PID == live.PID && d.Host == host && !d.Gone {
				// The connected daemon itself: its state now, not at its
				// last heartbeat.
				d.Busy, d.Workers, d.Paused = live.WorkersBusy, live.WorkersTotal, live.State == "paused"
			}
			state := "running"
			switch {
			case d.Gone:
				state = "gone"
			case d.Paused:
				state = "paused"
			}
			out = append(out, daemonRow{ID: d.ID, State: state, Host: d.Host, PID: d.PID, Generation: d.Generation,
				Busy: d.Busy, Workers: d.Workers, Paused: d.Paused, Started: d.Started, LastSeen: d.LastSeen, Gone: d.Gone})
		}
		return out, nil
	}
	if live == nil {
		return nil, nil
	}
	return []daemonRow{{State: live.State, Host: host, PID: live.PID, Generation: int64(live.Generation),
		Busy: live.WorkersBusy, Workers: live.WorkersTotal, Paused: live.State == "paused", Started: live.StartedAt}}, nil
}

type runningData struct {
	Active    []control.Active
	Procs     []control.Proc    // the child processes for isolated tasks
	Pool      *control.ProcPool // their limits and counters; nil: no pool
	DaemonErr string
	Lite      bool
}

func (h *Handler) running(w http.ResponseWriter, r *http.Request) {
	live, why := h.live(r)
	d := runningData{DaemonErr: why, Lite: h.lite}
	if live != nil {
		d.Active, d.Procs, d.Pool = live.Active, live.Procs, live.ProcPool
		now := time.Now()
		for i := range d.Active {
			d.Active[i].ElapsedSeconds = now.Sub(d.Active[i].StartedAt).Seconds()
		}
	}
	h.render(w, r, "running", http.StatusOK, h.newPage(w, r, "Running", d))
}

type queuedData struct {
	Query queuedQuery
	Tasks []storage.PendingTask
	Next  string // the query string of the next page; "" on the last
	First string // of the first page with the same filters
	Paged bool   // this is not the first page
	// Searched is how many queued tasks a page filtered by task name
	// read; Partial is set when it stopped at Config.SearchLimit before
	// filling the page.
	Searched int
	Partial  bool
}

func (h *Handler) queued(w http.ResponseWriter, r *http.Request) {
	v, err := query(r)
	if err != nil {
		h.fail(w, r, http.StatusBadRequest, "%v", err)
		return
	}
	qq, err := parseQueued(v)
	if err != nil {
		h.fail(w, r, http.StatusBadRequest, "%v", err)
		return
	}
	d := queuedData{Query: qq, Paged: qq.After != nil, First: qq.encode(nil)}
	if qq.Task != "" && qq.Key == "" {
		err = h.searchTask(r.Context(), qq, &d)
	} else {
		err = h.listQueued(r.Context(), qq, &d)
	}
	if err != nil {
		h.internal(w, r, "list the queued tasks", err)
		return
	}
	h.render(w, r, "queued", http.StatusOK, h.newPage(w, r, "Queued", d))
}

// listQueued is a page of the queued tasks, straight from the claim index.
func (h *Handler) listQueued(ctx context.Context, qq queuedQuery, d *queuedData) error {
	f := qq.filter()
	f.Limit = qq.Limit + 1 // one more: is there a next page?
	ts, err := h.q.Backend().Pending(ctx, f)
	if err != nil {
		return err
	}
	d.Tasks = ts
	if len(ts) > qq.Limit {
		d.Tasks = ts[:qq.Limit]
		c := d.Tasks[len(d.Tasks)-1].Cursor()
		d.Next = qq.encode(&c)
	}
	return nil
}

// searchChunk is how many queued tasks searchTask reads at a time.
const searchChunk = 1000

// searchTask is a page of the queued tasks of one name. The claim index
// does not hold the name, so the tasks are read in claim order, in
// chunks, and those of other names skipped, up to Config.SearchLimit
// tasks: a page of a name that is one task in a million costs no more
// than one of a common name. When the search stops short, the next page
// continues it from the last task read.
func (h *Handler) searchTask(ctx context.Context, qq queuedQuery, d *queuedData) error {
	f := qq.filter()
	f.Task = ""
	after := qq.After
	var last storage.PendingCursor
	end := false
	for d.Searched < h.cfg.SearchLimit && len(d.Tasks) <= qq.Limit {
		f.After = after
		f.Limit = min(searchChunk, h.cfg.SearchLimit-d.Searched)
		ps, err := h.q.Backend().Pending(ctx, f)
		if err != nil {
			return err
		}
		for _, p := range ps {
			d.Searched++
			last = p.Cursor()
			if p.Task == qq.Task {
				d.Tasks = append(d.Tasks, p)
				if len(d.Tasks) > qq.Limit {
					break
				}
			}
		}
		if len(ps) < f.Limit {
			end = true
			break
		}
		after = &last
	}
	switch {
	case len(d.Tasks) > qq.Limit:
		d.Tasks = d.Tasks[:qq.Limit]
		c := d.Tasks[len(d.Tasks)-1].Cursor()
		d.Next = qq.encode(&c)
	case !end && d.Searched > 0:
		// Stopped at the search limit: the next page searches on.
		d.Partial = true
		d.Next = qq.encode(&last)
	}
	return nil
}

type failedData struct {
	Failures []snappea.Failure
	Total    int64
	Limit    int
	ShowArgs bool
	Tasks    []string // the task names among those listed
	// Lost: only the records of lost tasks (?lost=1), found among the
	// newest Searched records; Partial when that stopped at
	// Config.SearchLimit before filling the page.
	Lost     bool
	Searched int64
	Partial  bool
}

func (h *Handler) failed(w http.ResponseWriter, r *http.Request) {
	v, err := query(r)
	if err != nil {
		h.fail(w, r, http.StatusBadRequest, "%v", err)
		return
	}
	limit, err := intParam(v, "limit", DefaultPageSize, 1, MaxPageSize)
	if err != nil {
		h.fail(w, r, http.StatusBadRequest, "%v", err)
		return
	}
	if err := onlyParams(v, "limit", "lost", "notice"); err != nil {
		h.fail(w, r, http.StatusBadRequest, "%v", err)
		return
	}
	d := failedData{Limit: limit, ShowArgs: h.cfg.ShowArgs}
	switch l := v.Get("lost"); l {
	case "", "0":
	case "1":
		d.Lost = true
	default:
		h.fail(w, r, http.StatusBadRequest, "lost=%.40q: want 1 (only the lost tasks) or 0", l)
		return
	}
	ctx := r.Context()
	if d.Lost {
		// The record holds no index on the error: the lost ones are
		// picked from the newest records, at most Config.SearchLimit of
		// them, so that the listing reads no more however large the
		// record. The bulk actions are not offered here: they act on
		// every failed record, not only the lost ones listed.
		fs, err := h.q.Backend().Failures(ctx, h.cfg.SearchLimit)
		if err != nil {
			h.internal(w, r, "list the failed tasks", err)
			return
		}
		d.Searched = int64(len(fs))
		for _, f := range fs {
			if snappea.IsLost(f.Error) && len(d.Failures) < limit {
				d.Failures = append(d.Failures, f)
			}
		}
		d.Partial = len(d.Failures) < limit && len(fs) == h.cfg.SearchLimit
		if d.Total, err = h.q.Backend().CountLost(ctx); err != nil {
			h.internal(w, r, "count the lost tasks", err)
			return
		}
	} else {
		if d.Failures, err = h.q.Backend().Failures(ctx, limit); err != nil {
			h.internal(w, r, "list the failed tasks", err)
			return
		}
		if d.Total, err = h.q.Backend().FailureCount(ctx); err != nil {
			h.internal(w, r, "count the failed tasks", err)
			return
		}
	}
	for _, f := range d.Failures {
		if !slices.Contains(d.Tasks, f.Task) {
			d.Tasks = append(d.Tasks, f.Task)
		}
	}
	slices.Sort(d.Tasks)
	h.render(w, r, "failed", http.StatusOK, h.newPage(w, r, "Failed", d))
}

type failureData struct {
	F        snappea.Failure
	ShowArgs bool
}

func (h *Handler) failure(w http.ResponseWriter, r *http.Request) {
	id, err := idParam(r)
	if err != nil {
		h.fail(w, r, http.StatusBadRequest, "%v", err)
		return
	}
	f, err := h.q.Backend().Failure(r.Context(), id)
	if errors.Is(err, snappea.ErrNotFound) {
		h.fail(w, r, http.StatusNotFound, "no failed task %d in the record: retried, purged or pruned, or never there", id)
		return
	}
	if err != nil {
		h.internal(w, r, "read the failed task", err)
		return
	}
	h.render(w, r, "failure", http.StatusOK, h.newPage(w, r, "Failed task "+strconv.FormatInt(id, 10), failureData{F: f, ShowArgs: h.cfg.ShowArgs}))
}

func (h *Handler) schedules(w http.ResponseWriter, r *http.Request) {
	ss, err := h.q.Backend().Schedules(r.Context(), nil)
	if err != nil {
		h.internal(w, r, "list the schedules", err)
		return
	}
	h.render(w, r, "schedules", http.StatusOK, h.newPage(w, r, "Schedules", ss))
}

// taskRow is one task name's statistics over the window, and the
// connected daemon's limits and running tasks of that name.
type taskRow struct {
	Task            string
	Count, Failures int64
	Mean, Max       time.Duration
	total           time.Duration
	Running         int  // running now in the connected daemon
	MaxRunning      int  // the most that run at once; 0: no limit
	RetryLost       bool // enqueued again when lost, not failed
}

type tasksData struct {
	Hours int
	Rows  []taskRow
	// Live: a daemon answered, and the limits and running counts are
	// its; DaemonErr why not, when one is configured.
	Live      bool
	DaemonErr string
}

func (h *Handler) tasks(w http.ResponseWriter, r *http.Request) {
	v, err := query(r)
	if err != nil {
		h.fail(w, r, http.StatusBadRequest, "%v", err)
		return
	}
	hours, err := intParam(v, "hours", 24, 1, 24*31)
	if err != nil {
		h.fail(w, r, http.StatusBadRequest, "%v", err)
		return
	}
	if err := onlyParams(v, "hours", "notice"); err != nil {
		h.fail(w, r, http.StatusBadRequest, "%v", err)
		return
	}
	rows, err := h.q.ReadStats(r.Context(), time.Now().Add(-time.Duration(hours)*time.Hour))
	if err != nil {
		h.internal(w, r, "read the statistics", err)
		return
	}
	by := map[string]*taskRow{}
	for _, s := range rows {
		if s.Task == "" {
			continue
		}
		t := by[s.Task]
		if t == nil {
			t = &taskRow{Task: s.Task}
			by[s.Task] = t
		}
		t.Count += s.Count
		t.Failures += s.Failures
		t.total += s.Total
		t.Max = max(t.Max, s.Max)
	}
	d := tasksData{Hours: hours}
	row := func(name string) *taskRow {
		t := by[name]
		if t == nil {
			t = &taskRow{Task: name}
			by[name] = t
		}
		return t
	}
	live, why := h.live(r)
	d.DaemonErr = why
	if live != nil {
		d.Live = true
		for name, n := range live.MaxRunning {
			row(name).MaxRunning = n
		}
		for _, name := range live.RetryLost {
			row(name).RetryLost = true
		}
		for _, a := range live.Active {
			row(a.Task).Running++
		}
	}
	for _, t := range by {
		if t.Count > 0 {
			t.Mean = t.total / time.Duration(t.Count)
		}
		d.Rows = append(d.Rows, *t)
	}
	slices.SortFunc(d.Rows, func(a, b taskRow) int { return cmp.Compare(a.Task, b.Task) })
	h.render(w, r, "tasks", http.StatusOK, h.newPage(w, r, "Tasks", d))
}
