package registry

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"
)

// ErrUnknownTask is matched by errors for a task name that is not
// registered.
var ErrUnknownTask = errors.New("unknown task")

// ErrBadArgs is matched by errors for arguments that are not valid JSON or
// do not decode into the handler's argument type.
var ErrBadArgs = errors.New("bad task arguments")

// Registry maps task names to handlers. It is safe for concurrent use;
// tasks are normally registered at program start.
type Registry struct {
	mu    sync.RWMutex
	tasks map[string]*entry
}

type entry struct {
	argType reflect.Type
	opts    Options // the definition's defaults
	// run decodes args and calls the handler; check only decodes.
	run   func(ctx context.Context, args []byte) error
	check func(args []byte) error
}

// New returns an empty registry.
func New() *Registry {
	return &Registry{tasks: make(map[string]*entry)}
}

// Task is a typed handle on a registered task: enqueueing through it only
// accepts the handler's argument type.
type Task[A any] struct {
	name string
	opts Options
}

// Name returns the task's registered name.
func (t Task[A]) Name() string { return t.name }

// Options returns the task definition's default options.
func (t Task[A]) Options() Options { return t.opts }

// Enqueuer is what a Task enqueues through; *queue.Queue implements it.
// The With methods take options, which the Enqueuer merges over the task
// definition's defaults when it knows the registry.
type Enqueuer interface {
	Enqueue(ctx context.Context, task string, args any) (int64, error)
	EnqueueTx(ctx context.Context, tx *sql.Tx, task string, args any) (int64, error)
	EnqueueWith(ctx context.Context, task string, args any, opts Options) (Result, error)
	EnqueueWithTx(ctx context.Context, tx *sql.Tx, task string, args any, opts Options) (Result, error)
}

// Enqueue queues the task with args through q, with the definition's
// default options, and returns the new task's id. If the defaults give a
// Key that a pending task holds, nothing is written and the id is that
// task's; use EnqueueWith to tell the two apart.
func (t Task[A]) Enqueue(ctx context.Context, q Enqueuer, args A) (int64, error) {
	res, err := q.EnqueueWith(ctx, t.name, args, t.opts)
	return res.ID, err
}

// EnqueueTx is Enqueue inside the caller's transaction tx; see
// queue.Queue.EnqueueTx for the wakeup the caller owes after commit.
func (t Task[A]) EnqueueTx(ctx context.Context, q Enqueuer, tx *sql.Tx, args A) (int64, error) {
	res, err := q.EnqueueWithTx(ctx, tx, t.name, args, t.opts)
	return res.ID, err
}

// EnqueueWith queues the task with args through q, with opts merged over
// the definition's defaults (see Options.Merge).
func (t Task[A]) EnqueueWith(ctx context.Context, q Enqueuer, args A, opts Options) (Result, error) {
	return q.EnqueueWith(ctx, t.name, args, t.opts.Merge(opts))
}

// EnqueueWithTx is EnqueueWith inside the caller's transaction tx.
func (t Task[A]) EnqueueWithTx(ctx context.Context, q Enqueuer, tx *sql.Tx, args A, opts Options) (Result, error) {
	return q.EnqueueWithTx(ctx, tx, t.name, args, t.opts.Merge(opts))
}

// Register adds a task called name whose handler takes arguments of type A,
// decoded from JSON, and returns a typed handle for enqueueing it. The
// optional defaults are the options every enqueue of the task starts from;
// an enqueue's own options win field by field (see Options.Merge).
//
// Register panics if name is empty, fn is nil, name is already taken, or
// defaults are invalid or given more than once: those are programming
// errors, found at start-up, like http.HandleFunc's.
func Register[A any](r *Registry, name string, fn func(ctx context.Context, args A) error, defaults ...Options) Task[A] {
	if name == "" {
		panic("registry: Register with an empty task name")
	}
	if fn == nil {
		panic(fmt.Sprintf("registry: Register %q with a nil handler", name))
	}
	var opts Options
	switch len(defaults) {
	case 0:
	case 1:
		opts = defaults[0]
		if err := opts.Validate(); err != nil {
			panic(fmt.Sprintf("registry: Register %q: %v", name, err))
		}
	default:
		panic(fmt.Sprintf("registry: Register %q with %d sets of default options; give at most one", name, len(defaults)))
	}
	e := &entry{
		argType: reflect.TypeFor[A](),
		opts:    opts,
		run: func(ctx context.Context, args []byte) error {
			a, err := decode[A](name, args)
			if err != nil {
				return err
			}
			return fn(ctx, a)
		},
		check: func(args []byte) error {
			_, err := decode[A](name, args)
			return err
		},
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, dup := r.tasks[name]; dup {
		panic(fmt.Sprintf("registry: task %q registered twice", name))
	}
	r.tasks[name] = e
	return Task[A]{name: name, opts: opts}
}

// decode turns JSON args into an A. Empty args decode as JSON null, that is
// the zero A, so a task without arguments may be enqueued with none.
func decode[A any](name string, args []byte) (A, error) {
	var a A
	if len(args) == 0 {
		return a, nil
	}
	if err := json.Unmarshal(args, &a); err != nil {
		return a, fmt.Errorf("%w for task %q: %s", ErrBadArgs, name, decodeError(err, reflect.TypeFor[A]()))
	}
	return a, nil
}

// decodeError describes why arguments did not decode into t by the field
// and the type wanted, never by the value: this text is logged, stored
// with the failed task and reported, and arguments can hold secrets.
// encoding/json's own texts quote values: a number that overflows its
// field ("number 123456"), the character a syntax error met, the string a
// ",string" field could not parse, and whatever an UnmarshalJSON or
// UnmarshalText method (time.Time's, say) put in its error.
func decodeError(err error, t reflect.Type) string {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	var ie *json.InvalidUnmarshalError
	var pe *time.ParseError
	switch {
	case errors.As(err, &te):
		// Value is the JSON kind, then for a number its text: keep the kind.
		kind, _, _ := strings.Cut(te.Value, " ")
		where := "the arguments"
		if te.Field != "" {
			where = fmt.Sprintf("field %q", te.Field)
		}
		if te.Type == nil {
			return fmt.Sprintf("%s: JSON %s of the wrong type", where, kind)
		}
		if kind == "number" && isNumber(te.Type.Kind()) {
			return fmt.Sprintf("%s: JSON number out of range (or not whole) for Go type %s", where, te.Type)
		}
		return fmt.Sprintf("%s: JSON %s, want Go type %s", where, kind, te.Type)
	case errors.As(err, &se):
		return fmt.Sprintf("not valid JSON (syntax error at byte %d)", se.Offset)
	case errors.As(err, &ie):
		return ie.Error() // names a Go type only
	case errors.As(err, &pe):
		return fmt.Sprintf("a time.Time field: not a time in RFC 3339 form (decoding Go type %s)", t)
	}
	return fmt.Sprintf("cannot decode into Go type %s (the decoder's %T error is withheld: it may quote the value)", t, err)
}

func isNumber(k reflect.Kind) bool {
	switch k {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
		reflect.Float32, reflect.Float64:
		return true
	}
	return false
}

func (r *Registry) lookup(name string) (*entry, error) {
	r.mu.RLock()
	e := r.tasks[name]
	r.mu.RUnlock()
	if e == nil {
		return nil, fmt.Errorf("%w %q", ErrUnknownTask, name)
	}
	return e, nil
}

// Run decodes args and runs the handler registered as name, returning its
// error. Errors from the lookup or decoding match ErrUnknownTask or
// ErrBadArgs; the handler never starts then.
func (r *Registry) Run(ctx context.Context, name string, args []byte) error {
	e, err := r.lookup(name)
	if err != nil {
		return err
	}
	return e.run(ctx, args)
}

// Check reports whether name is registered and args decode into its
// argument type, without running anything.
func (r *Registry) Check(name string, args []byte) error {
	e, err := r.lookup(name)
	if err != nil {
		return err
	}
	return e.check(args)
}

// Has reports whether a task called name is registered.
func (r *Registry) Has(name string) bool {
	_, err := r.lookup(name)
	return err == nil
}

// Names returns the registered task names, sorted.
func (r *Registry) Names() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	names := make([]string, 0, len(r.tasks))
	for n := range r.tasks {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// Options returns the default options the task called name was registered
// with; the zero Options for an unknown name.
func (r *Registry) Options(name string) Options {
	e, err := r.lookup(name)
	if err != nil {
		return Options{}
	}
	return e.opts
}

// ArgType returns the Go type a task's arguments decode into, for help
// output; ok is false for an unknown name.
func (r *Registry) ArgType(name string) (t reflect.Type, ok bool) {
	e, err := r.lookup(name)
	if err != nil {
		return nil, false
	}
	return e.argType, true
}

// Info describes the task a handler is running.
type Info struct {
	ID         int64        // the task's id, unique for the life of the database
	Name       string       // the registered name
	EnqueuedAt time.Time    // when the producer enqueued it
	Logger     *slog.Logger // the daemon's logger; Logger(ctx) adds task and task_id
	// Attempt is this run's attempt number, 1 for the first; 0 when the
	// runner does not say.
	Attempt int
	// MaxAttempts is the task's attempt budget (see Options.MaxAttempts):
	// a handler with Attempt >= MaxAttempts is on its last try.
	MaxAttempts int
}

type infoKey struct{}

// WithInfo returns a context carrying info; the foreman calls it for every
// task it starts.
func WithInfo(ctx context.Context, info Info) context.Context {
	return context.WithValue(ctx, infoKey{}, info)
}

// InfoFrom returns the Info of the task running with ctx, if any.
func InfoFrom(ctx context.Context) (Info, bool) {
	info, ok := ctx.Value(infoKey{}).(Info)
	return info, ok
}

// Logger returns the daemon's logger with the running task's name and id
// as attributes (task, task_id), or slog.Default() outside a task.
func Logger(ctx context.Context) *slog.Logger {
	info, ok := InfoFrom(ctx)
	if !ok {
		return slog.Default()
	}
	l := info.Logger
	if l == nil {
		l = slog.Default()
	}
	return l.With("task", info.Name, "task_id", info.ID)
}
