package control

import (
	"encoding/json"
	"time"
)

// Status is the answer to GET /status and what 'snappea status --json'
// prints. Its keys are stable: add keys, never rename or remove them.
type Status struct {
	Running          bool      `json:"running"`    // a daemon answered; the server sets it
	PID              int       `json:"pid"`        // the daemon's pid; 0 when none. The server fills it in when the Handler leaves it 0
	DaemonPID        int       `json:"daemon_pid"` // same as pid; kept for scripts written against earlier versions. The server sets it
	StartedAt        time.Time `json:"started_at,omitzero"`
	State            string    `json:"state"`      // running, paused, draining, stopping; "" when no daemon
	Generation       int       `json:"generation"` // how many reloads since the first start
	WorkersTotal     int       `json:"workers_total"`
	WorkersBusy      int       `json:"workers_busy"`
	Active           []Active  `json:"active"` // the running tasks; encoded as [] when empty, never null
	Counters         Counters  `json:"counters"`
	Pending          int64     `json:"pending"`
	Ready            int64     `json:"ready"`
	Delayed          int64     `json:"delayed"`
	OldestAgeSeconds float64   `json:"oldest_age_seconds"`
	// IdleSeconds is how long no task has been running; 0 while busy.
	IdleSeconds   float64    `json:"idle_seconds"`
	SchemaVersion int        `json:"schema_version"`
	Services      []Service  `json:"services"`  // encoded as [] when empty, never null
	Schedules     []Schedule `json:"schedules"` // encoded as [] when empty, never null
	// Daemons are the daemons sharing the database: on PostgreSQL every
	// registered one, from the database (an empty list when none is);
	// on SQLite the one local daemon when it answered, and omitted when
	// none did. A daemon on PostgreSQL fills it in; 'snappea status'
	// fills in the rest.
	Daemons []Daemon `json:"daemons,omitzero"`
	// Database names the daemon's database, without a password: its
	// SQLite file, or "PostgreSQL URL schema NAME". "" when no daemon
	// answered.
	Database string `json:"database,omitempty"`
	// Lost counts the failed records of lost tasks: claimed tasks whose
	// daemon died, or stopped at its graceful deadline, while they ran
	// (their error begins "lost: "). 'snappea status' fills it in from
	// the database.
	Lost int64 `json:"lost,omitempty"`
	// MaxRunning is the daemon's limits: the most tasks of a name that
	// run at once, across every daemon of the database.
	MaxRunning map[string]int `json:"max_running,omitempty"`
	// RetryLost names the tasks the daemon enqueues again when they are
	// lost, instead of recording them failed.
	RetryLost []string `json:"retry_lost,omitempty"`
	// Procs are the child processes that run isolated tasks ('snappea run
	// --isolation', registry.Options.Isolated), by pid; encoded as []
	// when there are none, never null.
	Procs []Proc `json:"procs"`
	// ProcPool is the process pool's limits and what happened to its
	// children since the daemon started; omitted without a pool.
	ProcPool *ProcPool `json:"proc_pool,omitempty"`
}

// Proc is one child process of the pool.
type Proc struct {
	PID       int       `json:"pid"`
	State     string    `json:"state"`     // starting, idle, busy, retiring
	TaskID    int64     `json:"task_id"`   // the running task's id; 0 when none
	Task      string    `json:"task"`      // the running task's name; "" when none
	RSSBytes  int64     `json:"rss_bytes"` // resident set, from /proc; 0 if unreadable
	TasksDone int64     `json:"tasks_done"`
	StartedAt time.Time `json:"started_at"`
}

// ProcPool is the process pool's limits ('snappea workers --procs-min,
// --procs-max' change them) and its counters.
type ProcPool struct {
	Min      int   `json:"min"`
	Max      int   `json:"max"`
	Waiting  int   `json:"waiting"`  // tasks waiting for a free child
	Starts   int64 `json:"starts"`   // children started
	Restarts int64 `json:"restarts"` // of those, replacements of children that died or were killed
	Deaths   int64 `json:"deaths"`   // children that exited or were killed by someone else while the pool wanted them
	Kills    int64 `json:"kills"`    // children the daemon killed: past a timeout, an ignored cancel, the stop deadline
	SIGKILLs int64 `json:"sigkills"` // children that needed SIGKILL
	Retired  int64 `json:"retired"`  // children asked to exit: idle, recycled, stopping
}

// Daemon is one daemon of those sharing the database, as its last
// heartbeat left it.
type Daemon struct {
	ID         int64     `json:"id,omitempty"` // its row in the table of daemons; 0 on SQLite
	Host       string    `json:"host"`
	PID        int       `json:"pid"`
	StartedAt  time.Time `json:"started_at"`
	Workers    int       `json:"workers"`
	Busy       int       `json:"busy"`
	Paused     bool      `json:"paused"`
	Generation int64     `json:"generation"`
	LastSeen   time.Time `json:"last_seen"` // its last heartbeat, by the database's clock
	Gone       bool      `json:"gone"`      // it missed its heartbeats: stopped, killed or cut off
}

// MarshalJSON encodes s with its empty slices as [] rather than null, so
// that scripts can iterate over them whoever built the Status.
func (s Status) MarshalJSON() ([]byte, error) {
	type plain Status // no methods: no recursion
	p := plain(s)
	if p.Active == nil {
		p.Active = []Active{}
	}
	if p.Services == nil {
		p.Services = []Service{}
	}
	if p.Schedules == nil {
		p.Schedules = []Schedule{}
	}
	if p.Procs == nil {
		p.Procs = []Proc{}
	}
	return json.Marshal(p)
}

// Active is a running task.
type Active struct {
	TaskID         int64     `json:"task_id"`
	Task           string    `json:"task"` // the task's name; never its arguments, which can hold secrets
	StartedAt      time.Time `json:"started_at"`
	ElapsedSeconds float64   `json:"elapsed_seconds"`
	Deadline       time.Time `json:"deadline,omitzero"` // zero: none
	Overdue        bool      `json:"overdue"`           // running past its deadline
	Attempt        int       `json:"attempt"`           // 1 for a first run
	PID            int       `json:"pid,omitempty"`     // the child process running it; absent on a goroutine
}

// Counters counts finished tasks by outcome since the daemon started.
type Counters struct {
	Done        int64 `json:"done"`
	Failed      int64 `json:"failed"`
	Panicked    int64 `json:"panicked"`
	Discarded   int64 `json:"discarded"`
	Interrupted int64 `json:"interrupted"`
	Cancelled   int64 `json:"cancelled"` // running tasks cancelled on request
	Retried     int64 `json:"retried"`   // failed attempts enqueued again (also counted failed)
	Overdue     int64 `json:"overdue"`   // handlers still running well past their timeout
}

// Service is a long-running service the daemon supervises.
type Service struct {
	Name      string    `json:"name"`
	State     string    `json:"state"`
	Restarts  int       `json:"restarts"`
	LastError string    `json:"last_error,omitempty"`
	Since     time.Time `json:"since,omitzero"` // when it entered State
}

// Schedule is a periodic task the daemon enqueues.
type Schedule struct {
	Name string    `json:"name"`
	Spec string    `json:"spec"` // as configured, for example "*/5 * * * *"
	Task string    `json:"task"`
	Next time.Time `json:"next"`
	Last time.Time `json:"last,omitzero"` // zero: not run since the daemon started
}
