package cli

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
)

// logFlags choose the daemon's log format, level and destination.
type logFlags struct {
	format, level, file string
}

func (l *logFlags) register(fs *flag.FlagSet) {
	l.format, l.level = "text", "info"
	fs.Var(&choiceFlag{&l.format, []string{"text", "json"}}, "log-format", withEnv("log-format", "log format: text or json"))
	fs.Lookup("log-format").DefValue = "text"
	fs.Var(&choiceFlag{&l.level, []string{"debug", "info", "warn", "error"}}, "log-level", withEnv("log-level", "log level: debug, info, warn or error; debug adds one record per task"))
	fs.Lookup("log-level").DefValue = "info"
	fs.StringVar(&l.file, "log-file", "", withEnv("log-file", "append the log to this file instead of stderr; USR1 reopens it (for logrotate)"))
}

// logger builds the logger the flags describe, writing to the log file if
// one is set (returned, so that USR1 can reopen it) and to w otherwise.
func (l *logFlags) logger(w io.Writer) (*slog.Logger, *logFile, error) {
	var level slog.Level
	switch strings.ToLower(l.level) {
	case "debug":
		level = slog.LevelDebug
	case "info", "":
		level = slog.LevelInfo
	case "warn", "warning":
		level = slog.LevelWarn
	case "error":
		level = slog.LevelError
	default:
		return nil, nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", l.level)
	}
	var file *logFile
	if l.file != "" {
		var err error
		if file, err = openLogFile(l.file); err != nil {
			return nil, nil, fmt.Errorf("--log-file: %w", err)
		}
		w = file
	}
	opts := &slog.HandlerOptions{Level: level, ReplaceAttr: durationsAsText}
	switch strings.ToLower(l.format) {
	case "text", "":
		return slog.New(slog.NewTextHandler(w, opts)), file, nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), file, nil
	default:
		if file != nil {
			file.Close()
		}
		return nil, nil, fmt.Errorf("--log-format %q: want text or json", l.format)
	}
}

// durationsAsText writes every duration as Go writes it ("1.5ms", "10s"),
// in JSON too, where slog would write integer nanoseconds: one rule for
// every record, whatever its key, and the same text in both formats.
func durationsAsText(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		a.Value = slog.StringValue(a.Value.Duration().String())
	}
	return a
}

// logFile is a log file that can be reopened under the same name after
// logrotate has moved it away.
type logFile struct {
	path string
	mu   sync.Mutex
	f    *os.File
}

func openLogFile(path string) (*logFile, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open log file: %w", err)
	}
	return &logFile{path: path, f: f}, nil
}

func (l *logFile) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.f.Write(p)
}

// Reopen opens the path again and switches to it; on failure the old file
// stays in use.
func (l *logFile) Reopen() error {
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("reopen log file: %w", err)
	}
	l.mu.Lock()
	old := l.f
	l.f = f
	l.mu.Unlock()
	return old.Close()
}

// Close closes the file.
func (l *logFile) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.f.Close()
}

// quietLogger is for the short-lived commands: warnings and errors only.
func quietLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelWarn}))
}
