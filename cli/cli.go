package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"time"

	"github.com/snappea/snappea/bench"
	"github.com/snappea/snappea/control"
	core "github.com/snappea/snappea/daemon"
	"github.com/snappea/snappea/foreman"
	"github.com/snappea/snappea/queue"
	"github.com/snappea/snappea/registry"
	"github.com/snappea/snappea/storage/postgres"
)

// Exit codes.
const (
	ExitOK     = 0 // success, including a daemon stopped by a signal
	ExitError  = 1 // a runtime error
	ExitUsage  = 2 // bad flags, arguments or environment
	ExitLocked = 4 // another daemon holds the data directory's lock
	// ExitDataDirGone: the daemon's database, lock file or control socket
	// left its path while it ran (the data directory deleted or moved);
	// start it again to use the new one.
	ExitDataDirGone = 5
)

// File names inside the data directory, beside the database and the wakeup
// directory (queue.DBFile, queue.WakeupDirName).
const (
	LockFile = core.LockFile
	PIDFile  = core.PIDFile
)

// Main runs the command line in os.Args with the tasks in reg (plus the
// built-in snappea.* tasks) and returns the process exit code.
func Main(reg *registry.Registry) int {
	return MainProgram(Program{Registry: reg})
}

// Program is what a daemon built on this package brings besides the
// command line: its tasks, and the services it runs beside them.
type Program struct {
	// Registry holds the program's tasks; the built-in snappea.* tasks
	// are added to it. Nil means the built-in tasks only.
	Registry *registry.Registry
	// Services run beside the workers of 'run': started with the daemon,
	// restarted with backoff when they fail or panic, stopped with it, and
	// listed by 'status' (see foreman.Service).
	Services []foreman.Service
	// Chart, if set, draws the chart of 'snappea bench --plot'; the stock
	// binary sets it to bench/chart.Write. A program that wants no charts
	// leaves it nil and does not link the chart's drawing code.
	Chart func(res *bench.Result, path string) error
}

// MainProgram is Main for a program with more than tasks.
func MainProgram(p Program) int {
	return RunProgram(context.Background(), os.Args[1:], Env{
		Stdout: os.Stdout, Stderr: os.Stderr, Stdin: os.Stdin, Getenv: os.Getenv, Exit: os.Exit,
	}, p)
}

// Env is what a command sees of its process; Main fills it from the real
// one, tests from their own.
type Env struct {
	Stdout, Stderr io.Writer
	// Stdin is read by 'snappea enqueue TASK -'. Default os.Stdin.
	Stdin  io.Reader
	Getenv func(string) string
	// Exit ends the process at once with a status; the daemon calls it on
	// a third INT. Default os.Exit.
	Exit func(int)
}

// Run runs one command line (args without the program name) and returns
// its exit code.
func Run(ctx context.Context, args []string, env Env, reg *registry.Registry) int {
	return RunProgram(ctx, args, env, Program{Registry: reg})
}

// RunProgram is Run for a program with more than tasks.
func RunProgram(ctx context.Context, args []string, env Env, p Program) int {
	reg := p.Registry
	if reg == nil {
		reg = registry.New()
	}
	registry.RegisterBuiltins(reg)
	c := &cmdEnv{Env: env, reg: reg, prog: p}
	if len(args) == 0 {
		c.printHelp(env.Stderr)
		return ExitUsage
	}
	name, rest := args[0], args[1:]
	switch name {
	case "help", "-h", "-help", "--help":
		if len(rest) > 1 {
			fmt.Fprintln(env.Stderr, "snappea help: want at most one command name; see snappea help")
			return ExitUsage
		}
		if len(rest) == 1 {
			cmd := c.lookup(rest[0])
			if cmd == nil {
				fmt.Fprintf(env.Stderr, "snappea help: unknown command %q; run 'snappea help' for the list\n", rest[0])
				return ExitUsage
			}
			fs := cmd.flags()
			fs.SetOutput(env.Stdout)
			fs.Usage()
			fs.SetOutput(env.Stderr)
			return ExitOK
		}
		c.printHelp(env.Stdout)
		return ExitOK
	case "version", "--version":
		fmt.Fprintln(env.Stdout, "snappea", Version())
		return ExitOK
	case childCommand:
		return c.runChild(ctx, rest)
	}
	cmd := c.lookup(name)
	if cmd == nil {
		fmt.Fprintf(env.Stderr, "snappea: unknown command %q; run 'snappea help' for the list\n", name)
		return ExitUsage
	}
	fs := cmd.flags()
	if err := applyEnv(fs, env.Getenv); err != nil {
		return c.usagef(name, "%v", err)
	}
	args, code := c.parseFlags(name, fs, rest, !cmd.subcommands)
	if args == nil {
		return code
	}
	return cmd.run(ctx, args)
}

// Version is the version of the main module, as the Go toolchain stamped it.
func Version() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}

type cmdEnv struct {
	Env
	reg  *registry.Registry
	prog Program
	cmds []command
}

func (c *cmdEnv) exit(code int) {
	if c.Exit != nil {
		c.Exit(code)
	}
	os.Exit(code)
}

// command is one subcommand. flags builds its FlagSet once. Its flags may
// come anywhere among its arguments, except in a command with
// subcommands, whose flags come before the subcommand's name (the
// subcommand parses the rest).
type command struct {
	name, summary string
	flags         func() *flag.FlagSet
	run           func(ctx context.Context, args []string) int
	subcommands   bool
}

func (c *cmdEnv) commands() []command {
	if c.cmds == nil {
		c.cmds = []command{
			c.runCommand(),
			c.enqueueCommand(),
			c.statusCommand(),
			c.pendingCommand(),
			c.stopCommand(),
			c.pauseCommand(),
			c.resumeCommand(),
			c.reloadCommand(),
			c.workersCommand(),
			c.healthCommand(),
			c.statsCommand(),
			c.cancelCommand(),
			c.failedCommand(),
			c.schedulesCommand(),
			c.migrateCommand(),
			c.tasksCommand(),
			c.benchCommand(),
		}
	}
	return c.cmds
}

func (c *cmdEnv) lookup(name string) *command {
	for _, cmd := range c.commands() {
		if cmd.name == name {
			return &cmd
		}
	}
	return nil
}

// newFlagSet returns a FlagSet whose usage lists its flags with their
// environment twins.
func (c *cmdEnv) newFlagSet(name, args, summary string) *flag.FlagSet {
	fs := flag.NewFlagSet("snappea "+name, flag.ContinueOnError)
	fs.SetOutput(c.Stderr)
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, "Usage: snappea %s [flags] %s\n\n%s\n\n%s", name, args, summary, flagsHeading)
		fs.PrintDefaults()
	}
	return fs
}

// flagsHeading introduces a command's flags in its usage.
const flagsHeading = "Flags (a flag marked \"env\" is also read from that environment variable;\nthe command line wins):\n"

// envName is a flag's environment twin: --wakeup-dir is SNAPPEA_WAKEUP_DIR.
func envName(flagName string) string {
	return "SNAPPEA_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// envAliases are further variables a flag is read from, after its own.
var envAliases = map[string][]string{"sentry-dsn": {"SENTRY_DSN"}}

// applyEnv sets every flag of fs whose environment twin is set, before
// the command line is parsed, so that a flag given on the command line wins.
// Only flags registered with withEnv have a twin: settings (where the data
// is, how the daemon runs) do; the options of one invocation (a task's
// --timeout, --key, failed retry --all) do not, so that a variable exported
// for one command cannot change what another does.
func applyEnv(fs *flag.FlagSet, getenv func(string) string) error {
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if err != nil || !strings.Contains(f.Usage, envMark) {
			return
		}
		for _, name := range append([]string{envName(f.Name)}, envAliases[f.Name]...) {
			if v := getenv(name); v != "" {
				if e := f.Value.Set(v); e != nil {
					err = fmt.Errorf("environment variable %s=%q: %s", name, v, reason(f.Value, e))
				}
				return
			}
		}
	})
	return err
}

// envMark is how withEnv marks a flag that has an environment twin.
const envMark = " (env "

// withEnv appends the environment twin to a flag's usage text.
func withEnv(name, usage string) string {
	names := append([]string{envName(name)}, envAliases[name]...)
	return usage + envMark + strings.Join(names, ", ") + ")"
}

// dataFlags locate the data directory and its parts.
type dataFlags struct {
	dir, db, wakeupDir, pidfile string
	databaseURL, schema         string
	busyTimeout                 time.Duration
	maxBacklog                  int
	maxArgsSize                 byteSize
}

func (d *dataFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&d.dir, "dir", queue.DefaultDir, withEnv("dir", "data directory holding the database, wakeup directory, pidfile and lock"))
	fs.StringVar(&d.db, "db", "", withEnv("db", "database file (default DIR/"+queue.DBFile+")"))
	fs.StringVar(&d.wakeupDir, "wakeup-dir", "", withEnv("wakeup-dir", "wakeup directory (default DIR/"+queue.WakeupDirName+")"))
	fs.StringVar(&d.pidfile, "pidfile", "", withEnv("pidfile", "pid file written by the daemon (default DIR/"+PIDFile+")"))
}

// postgres reports whether the queue is on PostgreSQL.
func (d *dataFlags) postgres() bool { return d.databaseURL != "" }

// where names the database for messages, without a password.
func (d *dataFlags) where() string {
	if d.postgres() {
		return "PostgreSQL " + postgres.Redact(d.databaseURL) + " schema " + d.schema
	}
	return d.dbPath()
}

// registerQueue registers the data flags of a command that opens the
// database, which also waits for other processes' write locks.
func (d *dataFlags) registerQueue(fs *flag.FlagSet) {
	d.register(fs)
	fs.StringVar(&d.databaseURL, "database-url", "", withEnv("database-url", "PostgreSQL database to use instead of the SQLite file (postgres://user@host:port/dbname); DIR then holds only the daemon's lock, pidfile and socket"))
	fs.StringVar(&d.schema, "schema", postgres.DefaultSchema, withEnv("schema", "PostgreSQL schema holding snappea's tables, with --database-url"))
	d.busyTimeout = 5 * time.Second
	fs.Var((*nonNegativeDuration)(&d.busyTimeout), "busy-timeout", withEnv("busy-timeout", "the longest (a `duration`) a write waits, in all, for other writers and the database's write lock before failing"))
}

// registerProducer registers the flags of a command that enqueues.
func (d *dataFlags) registerProducer(fs *flag.FlagSet) {
	fs.Var((*nonNegativeInt)(&d.maxBacklog), "max-backlog", withEnv("max-backlog", "refuse to enqueue past this many waiting tasks (`N`; 0: no limit), as queue.Config.MaxBacklog"))
}

// registerArgsSize registers --max-args-size, for the commands that
// enqueue or claim tasks.
func (d *dataFlags) registerArgsSize(fs *flag.FlagSet) {
	d.maxArgsSize = queue.DefaultMaxArgsSize
	fs.Var(&d.maxArgsSize, "max-args-size", withEnv("max-args-size", "the largest encoded arguments a task may have (a `size` such as 1MiB, 512KiB or plain bytes), as queue.Config.MaxArgsSize: larger is refused at enqueue, and failed, not run, by the daemon"))
}

func (d *dataFlags) queueConfig() queue.Config {
	return queue.Config{Dir: d.dir, DBPath: d.db, WakeupDir: d.wakeupDir, BusyTimeout: d.busyTimeout,
		MaxBacklog: d.maxBacklog, MaxArgsSize: int(d.maxArgsSize),
		DatabaseURL: d.databaseURL, Schema: d.schema}
}

// byteSize is --max-args-size: a size (see parseSize) of at least one
// byte and at most 1GiB.
type byteSize int

func (b *byteSize) String() string { return formatSize(int64(*b)) }

func (b *byteSize) Want() string { return "a size such as 1MiB, 512KiB or 1048576, at most 1GiB" }

func (b *byteSize) Set(s string) error {
	n, err := parseSize(s)
	if err != nil || n <= 0 || n > 1<<30 {
		return errWant(b.Want())
	}
	*b = byteSize(n)
	return nil
}

func (d *dataFlags) dbPath() string {
	if d.db != "" {
		return d.db
	}
	return filepath.Join(d.dir, queue.DBFile)
}

func (d *dataFlags) lockPath() string { return filepath.Join(d.dir, LockFile) }

// client is a client of the control socket of the daemon on the data
// directory.
func (d *dataFlags) client() *control.Client {
	return control.Dial(filepath.Join(d.dir, control.SocketFile))
}

func (d *dataFlags) pidPath() string {
	if d.pidfile != "" {
		return d.pidfile
	}
	return filepath.Join(d.dir, PIDFile)
}

// openReading opens the queue read-only for a command that only reads it,
// so that a user who may read the data directory but not write it (a
// monitoring account) can: nothing is created or migrated. PostgreSQL
// has no such mode: its grants decide what a user may do.
func (d *dataFlags) openReading(ctx context.Context) (*queue.Queue, error) {
	if d.postgres() {
		return queue.Open(ctx, d.queueConfig())
	}
	if _, err := os.Stat(d.dbPath()); err != nil {
		return nil, fmt.Errorf("no snappea database at %s (is --dir right?): %w", d.dbPath(), err)
	}
	return queue.OpenReadOnly(ctx, d.queueConfig())
}

// openExisting opens the queue for a command that only looks at it: a
// missing database is an error (most likely a wrong --dir), not a new one.
func (d *dataFlags) openExisting(ctx context.Context) (*queue.Queue, error) {
	if d.postgres() {
		return queue.Open(ctx, d.queueConfig())
	}
	if _, err := os.Stat(d.dbPath()); err != nil {
		return nil, fmt.Errorf("no snappea database at %s (is --dir right?): %w", d.dbPath(), err)
	}
	return queue.Open(ctx, d.queueConfig())
}

func (c *cmdEnv) printHelp(w io.Writer) {
	fmt.Fprint(w, `snappea runs background tasks from a SQLite queue.

Usage: snappea <command> [flags] [arguments]

Commands:
`)
	for _, cmd := range c.commands() {
		fmt.Fprintf(w, "  %-9s %s\n", cmd.name, cmd.summary)
	}
	fmt.Fprintf(w, `  %-9s %s
  %-9s %s

Run 'snappea <command> -h' for a command's flags; they may come before or
after its arguments ("--" ends them). Settings (where the data is, how the
daemon runs) are also read from the environment: --wakeup-dir from
SNAPPEA_WAKEUP_DIR, and so on, as each command's help shows; a flag on the
command line wins. --sentry-dsn also reads SENTRY_DSN. The options of one
invocation (enqueue --count, --json, ...) have no variable.

Signals (to the process of 'snappea run'); each has a command twin that
goes through the control socket DIR/snappea.sock:
  TERM   stop: intake stops at once; running tasks may finish until the
         graceful timeout, then their contexts are cancelled; queued tasks
         stay queued. A repeated TERM changes nothing.     (snappea stop)
  INT    the first acts like TERM; a second one, more than a second later,
         cancels running tasks now; a third exits at once with status 130.
                                                      (snappea stop --now)
  HUP    reload in place: run the program on disk with the same flags and
         --check; if that fails, log why and keep running. Otherwise drain
         like TERM and re-execute with the same pid, keeping the lock, the
         control socket and the paused state. Ignored when started under
         nohup.                                            (snappea reload)
  TSTP   pause: claim nothing; running tasks go on.         (snappea pause)
  CONT   resume after a pause.                             (snappea resume)
  USR1   reopen the --log-file (for logrotate).

Exit codes:
  0  success, or the daemon stopped cleanly (also after a graceful timeout)
  1  runtime error
  2  usage error: bad flags, arguments or environment
  4  another daemon holds the lock on the data directory
  5  run: the data directory was deleted (or its database, lock or socket
     replaced) while the daemon ran; start it again to use the new one

Delivery is at-most-once: a task's row is deleted before its handler starts,
so a crash loses only tasks that had started, never queued ones.
`, "help", "show this help, or a command's flags: snappea help run",
		"version", "print the version")
}

// splitHostPort checks a HOST:PORT flag value.
func splitHostPort(addr string) (host, port string, err error) {
	host, port, err = net.SplitHostPort(addr)
	if err != nil {
		return "", "", fmt.Errorf("%q: want HOST:PORT, such as 127.0.0.1:9090: %w", addr, err)
	}
	return host, port, nil
}

func formatDuration(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return d.String()
	case d < time.Minute:
		return d.Round(time.Millisecond).String()
	default:
		return d.Round(time.Second).String()
	}
}

// QueueConfigFromEnv returns the queue.Config a daemon started with the same
// environment would use: SNAPPEA_DIR, SNAPPEA_DB, SNAPPEA_WAKEUP_DIR and
// SNAPPEA_BUSY_TIMEOUT, with the daemon's defaults, SNAPPEA_DATABASE_URL
// and SNAPPEA_SCHEMA (PostgreSQL), SNAPPEA_MAX_BACKLOG and
// SNAPPEA_MAX_ARGS_SIZE. A web server that opens
// its queue this way writes where the daemon reads and wakes the directory
// it watches. Pass os.Getenv.
func QueueConfigFromEnv(getenv func(string) string) (queue.Config, error) {
	var d dataFlags
	fs := flag.NewFlagSet("env", flag.ContinueOnError)
	d.registerQueue(fs)
	d.registerProducer(fs)
	d.registerArgsSize(fs)
	if err := applyEnv(fs, getenv); err != nil {
		return queue.Config{}, err
	}
	return d.queueConfig(), nil
}
