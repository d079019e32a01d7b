package cli

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/snappea/snappea/queue"
	"github.com/snappea/snappea/registry"
)

func (c *cmdEnv) enqueueCommand() command {
	var (
		data    dataFlags
		count   int
		batch   bool
		noCheck bool
		opts    optionFlags
		fs      *flag.FlagSet
	)
	return command{
		name: "enqueue", summary: "queue a task (or --count of them) and print their ids",
		flags: func() *flag.FlagSet {
			if fs == nil {
				fs = c.newFlagSet("enqueue", "TASK [JSON | - | @FILE]",
					"Queues TASK with the JSON arguments given (none: null; -: read from standard input;\n"+
						"@FILE: read from FILE, for arguments past the kernel's 128 KiB per command-line argument)\n"+
						"and prints each new task's id on stdout; how many and how fast goes to stderr. A task not queued because a pending task\n"+
						"holds its --key prints no id; stderr names the task holding the key. With --replace that task takes\n"+
						"these arguments and options instead: its id is printed, and stderr says it was replaced. Options not given\n"+
						"come from the task's definition in this binary (none with --no-check).")
				data.registerQueue(fs)
				data.registerProducer(fs)
				data.registerArgsSize(fs)
				fs.IntVar(&count, "count", 1, "how many identical tasks to queue")
				fs.BoolVar(&batch, "batch", false, "queue all of them in one transaction instead of one transaction each")
				fs.BoolVar(&noCheck, "no-check", false, "skip checking TASK and JSON against this binary's tasks (for a daemon built with other tasks)")
				opts.register(fs)
			}
			return fs
		},
		run: func(ctx context.Context, args []string) int {
			if len(args) < 1 || len(args) > 2 {
				return c.usagef("enqueue", "want TASK and optionally its JSON arguments")
			}
			if count < 1 {
				return c.usagef("enqueue", "%s: want at least 1", c.given(fs, "count"))
			}
			if err := opts.when(fs); err != nil {
				return c.usagef("enqueue", "%v", err)
			}
			if opts.debounce > 0 && (opts.delay.set || opts.at.set) {
				return c.usagef("enqueue", "--debounce and --%s both say when the task may run; give one of them",
					map[bool]string{true: "delay", false: "at"}[opts.delay.set])
			}
			task := args[0]
			var raw json.RawMessage = []byte("null")
			if len(args) == 2 {
				var err error
				if raw, err = c.readArgs(args[1], int(data.maxArgsSize)); err != nil {
					fmt.Fprintf(c.Stderr, "snappea enqueue: the arguments for %s: %v\n", task, err)
					return ExitUsage
				}
				if !json.Valid(raw) {
					return c.usagef("enqueue", "the arguments for %s are not valid JSON", task)
				}
			}
			o := opts.options()
			if !noCheck {
				if err := c.reg.Check(task, raw); err != nil {
					msg := err.Error()
					if errors.Is(err, registry.ErrUnknownTask) {
						msg += "; this binary knows " + strings.Join(c.reg.Names(), ", ")
					}
					return c.usagef("enqueue", "%s (--no-check enqueues it anyway)", msg)
				}
				// As a producer with the registry would: the definition's
				// defaults, the flags winning.
				o = c.reg.Options(task).Merge(o)
			}
			switch {
			case o.OnDuplicate == registry.Replace && o.Key == "":
				return c.usagef("enqueue", "--replace needs --key K: the pending task it replaces is the one holding K")
			case o.Debounce > 0 && o.OnDuplicate != registry.Replace:
				return c.usagef("enqueue", "--debounce needs --replace: it pushes back the pending task a replace keeps")
			}
			if err := o.ValidateEnqueue(); err != nil {
				return c.usagef("enqueue", "%v", err)
			}
			cfg := data.queueConfig()
			cfg.Logger = quietLogger(c.Stderr)
			q, err := queue.Open(ctx, cfg)
			if err != nil {
				fmt.Fprintf(c.Stderr, "snappea enqueue: %v\n", err)
				return ExitError
			}
			defer q.Close()
			// On a terminal, a long run shows its progress after a few
			// seconds, as bench does.
			return c.enqueue(ctx, q, task, raw, o, count, batch, c.progressBar())
		},
	}
}

// readArgs returns enqueue's JSON argument: the argument itself, standard
// input for "-", or the file FILE for "@FILE"; no more than limit bytes.
func (c *cmdEnv) readArgs(arg string, limit int) ([]byte, error) {
	var r io.Reader
	switch {
	case arg == "-":
		r = c.Stdin
		if r == nil {
			r = os.Stdin
		}
	case strings.HasPrefix(arg, "@"):
		f, err := os.Open(arg[1:])
		if err != nil {
			return nil, fmt.Errorf("read %w", err)
		}
		defer f.Close()
		r = f
	default:
		if len(arg) > limit {
			return nil, tooLarge(len(arg), limit)
		}
		return []byte(arg), nil
	}
	b, err := io.ReadAll(io.LimitReader(r, int64(limit)+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", arg, err)
	}
	if len(b) > limit {
		return nil, tooLarge(-1, limit)
	}
	return b, nil
}

// tooLarge is ErrArgsTooLarge for arguments of n bytes (-1: not read to
// the end) over limit.
func tooLarge(n, limit int) error {
	size := "more than " + strconv.Itoa(limit) + " bytes"
	if n >= 0 {
		size = strconv.Itoa(n) + " bytes"
	}
	return fmt.Errorf("%w: %s, the limit (--max-args-size, SNAPPEA_MAX_ARGS_SIZE) is %d", queue.ErrArgsTooLarge, size, limit)
}

// optionFlags are enqueue's flags for registry.Options.
type optionFlags struct {
	delay       trackedFlag // of a nonNegativeDuration
	at          trackedFlag // of a timeFlag
	priority    int
	timeout     time.Duration
	maxAttempts int
	key         string
	replace     bool
	debounce    time.Duration
	serialKey   string

	delayValue nonNegativeDuration
	atValue    timeFlag
}

func (o *optionFlags) register(fs *flag.FlagSet) {
	o.delay.Value, o.at.Value = &o.delayValue, &o.atValue
	fs.Var(&o.delay, "delay", "run the task no earlier than this `duration` after now, such as 30s or 2h")
	fs.Lookup("delay").DefValue = "" // no default to show
	fs.Var(&o.at, "at", "run the task no earlier than this `time`, in RFC 3339 such as 2030-01-02T15:04:05Z or 2030-01-02T15:04:05+01:00 (a past time: now)")
	fs.IntVar(&o.priority, "priority", 0, "higher is claimed first, oldest first within a priority; may be negative (default: the task's, else 0)")
	fs.Var((*nonNegativeDuration)(&o.timeout), "timeout", "cancel the handler's context this long (a `duration`) after it starts; a timeout is a failure (default: the task's, else none)")
	fs.Var((*nonNegativeInt)(&o.maxAttempts), "max-attempts", "attempts in all (`N`), the first included, with a backoff between them; 0 or 1: no retries (default: the task's)")
	fs.StringVar(&o.key, "key", "", "a unique key: while a pending task holds it, queue nothing and name that task")
	fs.BoolVar(&o.replace, "replace", false, "with --key: give a pending task holding the key these arguments and options instead, keeping its id (and its due time, unless --debounce)")
	fs.Var((*nonNegativeDuration)(&o.debounce), "debounce", "with --replace: make the task due this long (a `duration`) after the newest enqueue, pushing a pending one back")
	fs.Lookup("debounce").DefValue = "" // no default to show
	fs.StringVar(&o.serialKey, "serial-key", "", "a serial key: tasks sharing it run one at a time, in the order queued, across every daemon (default: the task's)")
}

// when settles --at and --delay, which both say when the task may run:
// one given on the command line wins over the other's environment twin;
// both on the command line, or both from the environment, are an error.
func (o *optionFlags) when(fs *flag.FlagSet) error {
	if !o.delay.set || !o.at.set {
		return nil
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	switch {
	case given["at"] && !given["delay"]:
		o.delay.set, o.delayValue = false, 0
	case given["delay"] && !given["at"]:
		o.at.set, o.atValue = false, timeFlag{}
	default:
		return errors.New("--at and --delay both say when the task may run; give one of them")
	}
	return nil
}

func (o *optionFlags) options() registry.Options {
	opts := registry.Options{Priority: o.priority, Delay: time.Duration(o.delayValue), RunAt: o.atValue.t,
		Timeout: o.timeout, MaxAttempts: o.maxAttempts, Key: o.key, SerialKey: o.serialKey,
		Debounce: o.debounce}
	if o.replace {
		opts.OnDuplicate = registry.Replace
	}
	return opts
}

// progressEvery is how many tasks enqueue queues between two reports of
// its progress: often enough for the eye, rarely enough to cost nothing.
const progressEvery = 100

// progress shows how far a long command is: benchProgress, the bar of
// bench, on a terminal.
type progress interface {
	update(step, steps int, what string)
	finish()
}

// enqueue queues count tasks, telling progress how many are done now and
// then.
func (c *cmdEnv) enqueue(ctx context.Context, q *queue.Queue, task string, args json.RawMessage, opts registry.Options, count int, batch bool,
	prog progress) int {
	report := func(i int) {
		if i%progressEvery == 0 {
			prog.update(i, count, "enqueue "+task)
		}
	}
	out := bufio.NewWriter(c.Stdout)
	defer out.Flush()
	start := time.Now()
	var (
		done     int
		dups     duplicates
		replaced duplicates
		err      error
	)
	add := func(res registry.Result) {
		if res.Duplicate {
			dups.add(res.ID)
			return
		}
		fmt.Fprintln(out, res.ID)
		if res.Replaced {
			replaced.add(res.ID)
			return
		}
		done++
	}
	switch {
	case batch && opts.Key != "":
		// One transaction all the same, but one task at a time so that each
		// duplicate knows the task holding the key (EnqueueMany leaves it 0).
		var results []registry.Result
		err = q.InTx(ctx, func(tx *sql.Tx) error {
			for i := range count {
				report(i)
				res, err := q.EnqueueWithTx(ctx, tx, task, args, opts)
				if err != nil {
					return err
				}
				results = append(results, res)
			}
			return nil
		})
		if err == nil {
			for _, res := range results {
				add(res)
			}
		}
	case batch:
		jobs := make([]queue.Job, count)
		for i := range jobs {
			jobs[i] = queue.Job{Task: task, Args: args, Options: opts}
		}
		var ids []int64
		ids, err = q.EnqueueMany(ctx, jobs)
		for _, id := range ids {
			add(registry.Result{ID: id})
		}
	default:
		for i := range count {
			report(i)
			var res registry.Result
			res, err = q.EnqueueWith(ctx, task, args, opts)
			if err != nil {
				break
			}
			add(res)
		}
	}
	elapsed := time.Since(start)
	prog.finish()
	out.Flush()
	dups.report(c, opts.Key)
	replaced.reportReplaced(c, opts, start)
	if err != nil {
		fmt.Fprintf(c.Stderr, "snappea enqueue: %v (%d of %d queued before the error)\n", err, done, count)
		return ExitError
	}
	mode := "one transaction each"
	if batch {
		mode = "one transaction"
	}
	fmt.Fprintf(c.Stderr, "enqueued %d × %s in %s (%s, %.0f/s)", done, task, formatDuration(elapsed), mode,
		float64(done)/elapsed.Seconds())
	if due := opts.DueAt(start); done > 0 && !due.IsZero() {
		fmt.Fprintf(c.Stderr, "; due at %s", due.Format(time.RFC3339))
	}
	fmt.Fprintln(c.Stderr)
	return ExitOK
}

// duplicates counts the tasks not queued, by the pending task holding
// their key, in the order met.
type duplicates struct {
	holders []int64
	n       map[int64]int
}

func (d *duplicates) add(holder int64) {
	if d.n == nil {
		d.n = map[int64]int{}
	}
	if d.n[holder] == 0 {
		d.holders = append(d.holders, holder)
	}
	d.n[holder]++
}

func (d *duplicates) report(c *cmdEnv, key string) {
	for _, h := range d.holders {
		what := "not queued: a duplicate"
		if n := d.n[h]; n > 1 {
			what = fmt.Sprintf("%d not queued: duplicates", n)
		}
		fmt.Fprintf(c.Stderr, "%s of task %d, which is pending with key %q\n", what, h, key)
	}
}

// reportReplaced says which pending tasks d's enqueues replaced, at now
// with opts.
func (d *duplicates) reportReplaced(c *cmdEnv, opts registry.Options, now time.Time) {
	due := "its due time kept"
	if opts.Debounce > 0 {
		due = "due at " + now.Add(opts.Debounce).Format(time.RFC3339)
	}
	for _, h := range d.holders {
		times := ""
		if n := d.n[h]; n > 1 {
			times = fmt.Sprintf(" %d times", n)
		}
		fmt.Fprintf(c.Stderr, "replaced%s: task %d, pending with key %q, has the newest arguments and options, %s\n",
			times, h, opts.Key, due)
	}
}

// trackedFlag is a flag.Value that remembers whether it was set, from the
// command line or the environment, to tell conflicting flags apart from
// defaults.
type trackedFlag struct {
	flag.Value
	set bool
}

func (f *trackedFlag) Set(s string) error {
	if err := f.Value.Set(s); err != nil {
		return err
	}
	f.set = true
	return nil
}

func (f *trackedFlag) String() string {
	if f.Value == nil { // the zero value flag.PrintDefaults makes
		return ""
	}
	return f.Value.String()
}

// timeFlag is a time flag in RFC 3339.
type timeFlag struct{ t time.Time }

func (f *timeFlag) String() string {
	if f.t.IsZero() {
		return ""
	}
	return f.t.Format(time.RFC3339Nano)
}

func (f *timeFlag) Set(s string) error {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return errors.New("parse error: want an RFC 3339 time with its offset, such as 2030-01-02T15:04:05Z or 2030-01-02T15:04:05+01:00")
	}
	f.t = t
	return nil
}
