package sentrytest

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"
)

// The DSN's parts: any values would do, as the receiver checks neither.
const (
	projectID = "42"
	publicKey = "publickey"
)

// eventBuffer is how many received events Events holds unread. A request
// carrying more waits until the test reads them (or Close).
const eventBuffer = 1000

// Event is an error event as the receiver decoded it from an envelope.
type Event struct {
	EventID     string
	Level       string // "error", "fatal", ...
	Message     string // the event's message, or its logentry's formatted message
	Release     string
	Environment string
	ServerName  string
	Tags        map[string]string
	Contexts    map[string]map[string]any // contexts by key, such as "os" or "trace"
	Fingerprint []string
	Exception   []Exception // in the order sent: oldest cause first
	JSON        []byte      // the event item's payload, as received
}

// Exception is one entry of an event's exception list.
type Exception struct {
	Type      string
	Value     string
	Mechanism string // the mechanism's type, such as "panic"; empty if none was sent
	Handled   *bool  // the mechanism's handled flag; nil if not sent
	// Frames are the stacktrace's function names, qualified with their
	// package path the way Go prints them
	// ("example.com/pkg.(*T).Method"), outermost call first and the
	// frame that raised the error last, as Sentry orders them.
	Frames []string
}

// Receiver is a running stand-in Sentry server. Create it with NewReceiver
// and stop it with Close.
type Receiver struct {
	srv    *httptest.Server
	events chan Event
	done   chan struct{} // closed by Close: stop waiting for a reader

	mu       sync.Mutex
	bodies   [][]byte
	requests int
	err      error // the first request that could not be decoded

	closeOnce sync.Once
}

// NewReceiver starts a Receiver on 127.0.0.1 at a free port.
func NewReceiver() *Receiver {
	r := &Receiver{
		events: make(chan Event, eventBuffer),
		done:   make(chan struct{}),
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/{project}/envelope/", r.serveEnvelope)
	r.srv = httptest.NewServer(mux)
	return r
}

// DSN returns the DSN that makes a Sentry SDK send to this receiver:
// http://publickey@127.0.0.1:PORT/42.
func (r *Receiver) DSN() string {
	return fmt.Sprintf("http://%s@%s/%s", publicKey, strings.TrimPrefix(r.srv.URL, "http://"), projectID)
}

// Events returns the channel on which each received error event is sent,
// in the order received. Close closes it.
func (r *Receiver) Events() <-chan Event { return r.events }

// Next waits up to timeout for the next event. Its error says how many
// requests arrived and why the last undecodable one failed, if any, so that
// a test can fail with it as it is.
func (r *Receiver) Next(timeout time.Duration) (Event, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case ev, ok := <-r.events:
		if !ok {
			return Event{}, errors.New("sentrytest: receiver closed before an event arrived")
		}
		return ev, nil
	case <-t.C:
		r.mu.Lock()
		n, err := r.requests, r.err
		r.mu.Unlock()
		msg := fmt.Sprintf("sentrytest: no Sentry event within %v (%d envelope requests received)", timeout, n)
		if err != nil {
			msg += fmt.Sprintf("; a request could not be decoded: %v", err)
		}
		return Event{}, errors.New(msg)
	}
}

// Bodies returns a copy of every envelope request body received so far,
// decompressed, in the order received.
func (r *Receiver) Bodies() [][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([][]byte, len(r.bodies))
	for i, b := range r.bodies {
		out[i] = bytes.Clone(b)
	}
	return out
}

// Err returns why the first undecodable request failed, or nil.
func (r *Receiver) Err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}

// Close stops the server, waiting for requests in progress, and closes the
// Events channel. Events already received stay readable. Calling Close
// again does nothing.
func (r *Receiver) Close() {
	r.closeOnce.Do(func() {
		close(r.done)
		r.srv.Close()
		close(r.events)
	})
}

func (r *Receiver) serveEnvelope(w http.ResponseWriter, req *http.Request) {
	body, err := readBody(req)
	var events []Event
	if err == nil {
		events, err = parseEnvelope(body)
	}
	r.mu.Lock()
	r.requests++
	if body != nil {
		r.bodies = append(r.bodies, body)
	}
	if err != nil && r.err == nil {
		r.err = err
	}
	r.mu.Unlock()
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	// Events are handed over before the response, so that once an SDK's
	// flush has returned, the events it sent are already on the channel.
	for _, ev := range events {
		select {
		case r.events <- ev:
		case <-r.done:
			http.Error(w, "receiver closed", http.StatusServiceUnavailable)
			return
		}
	}
	w.Header().Set("Content-Type", "application/json")
	io.WriteString(w, "{}")
}

func readBody(req *http.Request) ([]byte, error) {
	body, err := io.ReadAll(req.Body)
	if err != nil {
		return nil, fmt.Errorf("read request body: %w", err)
	}
	// Some SDKs compress without saying so in Content-Encoding: trust the
	// gzip magic number as well as the header.
	if req.Header.Get("Content-Encoding") == "gzip" || bytes.HasPrefix(body, []byte{0x1f, 0x8b}) {
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			return body, fmt.Errorf("decompress request body: %w", err)
		}
		plain, err := io.ReadAll(zr)
		if err != nil {
			return body, fmt.Errorf("decompress request body: %w", err)
		}
		return plain, nil
	}
	return body, nil
}

// parseEnvelope decodes the error events of a Sentry envelope: a JSON
// envelope header line, then for each item a JSON item header line and the
// payload, which is the header's "length" bytes long or, without a length,
// runs to the end of the line. Items of types other than "event" are
// skipped.
func parseEnvelope(body []byte) ([]Event, error) {
	line, rest := cutLine(body)
	if !json.Valid(line) {
		return nil, errors.New("parse envelope: the header is not JSON")
	}
	var events []Event
	for n := 1; len(rest) > 0; n++ {
		line, rest = cutLine(rest)
		if len(bytes.TrimSpace(line)) == 0 {
			continue // blank lines between items are allowed
		}
		var hdr struct {
			Type   string `json:"type"`
			Length *int   `json:"length"`
		}
		if err := json.Unmarshal(line, &hdr); err != nil {
			return nil, fmt.Errorf("parse envelope: item %d header: %w", n, err)
		}
		var payload []byte
		if hdr.Length != nil {
			if *hdr.Length < 0 || *hdr.Length > len(rest) {
				return nil, fmt.Errorf("parse envelope: item %d says it is %d bytes long, %d remain", n, *hdr.Length, len(rest))
			}
			payload, rest = rest[:*hdr.Length], rest[*hdr.Length:]
			rest, _ = bytes.CutPrefix(rest, []byte("\n"))
		} else {
			payload, rest = cutLine(rest)
		}
		if hdr.Type != "event" {
			continue
		}
		ev, err := parseEvent(payload)
		if err != nil {
			return nil, fmt.Errorf("parse envelope: item %d: %w", n, err)
		}
		events = append(events, ev)
	}
	return events, nil
}

func cutLine(b []byte) (line, rest []byte) {
	line, rest, _ = bytes.Cut(b, []byte("\n"))
	return line, rest
}

func parseEvent(payload []byte) (Event, error) {
	var w struct {
		EventID     string                    `json:"event_id"`
		Level       string                    `json:"level"`
		Message     json.RawMessage           `json:"message"`
		LogEntry    *logEntry                 `json:"logentry"`
		Release     string                    `json:"release"`
		Environment string                    `json:"environment"`
		ServerName  string                    `json:"server_name"`
		Tags        json.RawMessage           `json:"tags"`
		Contexts    map[string]map[string]any `json:"contexts"`
		Fingerprint []string                  `json:"fingerprint"`
		Exception   json.RawMessage           `json:"exception"`
	}
	if err := json.Unmarshal(payload, &w); err != nil {
		return Event{}, fmt.Errorf("decode event: %w", err)
	}
	ev := Event{
		EventID:     w.EventID,
		Level:       w.Level,
		Release:     w.Release,
		Environment: w.Environment,
		ServerName:  w.ServerName,
		Contexts:    w.Contexts,
		Fingerprint: w.Fingerprint,
		JSON:        bytes.Clone(payload),
	}
	var err error
	if ev.Message, err = decodeMessage(w.Message, w.LogEntry); err != nil {
		return Event{}, err
	}
	if ev.Tags, err = decodeTags(w.Tags); err != nil {
		return Event{}, err
	}
	if ev.Exception, err = decodeExceptions(w.Exception); err != nil {
		return Event{}, err
	}
	return ev, nil
}

type logEntry struct {
	Message   string `json:"message"`
	Formatted string `json:"formatted"`
}

func (l *logEntry) text() string {
	if l.Formatted != "" {
		return l.Formatted
	}
	return l.Message
}

// decodeMessage accepts the protocol's two forms of "message": a string or
// a logentry object.
func decodeMessage(raw json.RawMessage, le *logEntry) (string, error) {
	if len(raw) > 0 && string(raw) != "null" {
		var s string
		if err := json.Unmarshal(raw, &s); err == nil {
			return s, nil
		}
		var obj logEntry
		if err := json.Unmarshal(raw, &obj); err != nil {
			return "", fmt.Errorf("decode event message: %w", err)
		}
		return obj.text(), nil
	}
	if le != nil {
		return le.text(), nil
	}
	return "", nil
}

// decodeTags accepts the protocol's two forms of "tags": an object or a
// list of [key, value] pairs.
func decodeTags(raw json.RawMessage) (map[string]string, error) {
	tags := map[string]string{}
	if len(raw) == 0 || string(raw) == "null" {
		return tags, nil
	}
	if err := json.Unmarshal(raw, &tags); err == nil {
		return tags, nil
	}
	var pairs [][2]string
	if err := json.Unmarshal(raw, &pairs); err != nil {
		return nil, fmt.Errorf("decode event tags: %w", err)
	}
	tags = make(map[string]string, len(pairs))
	for _, p := range pairs {
		tags[p[0]] = p[1]
	}
	return tags, nil
}

type wireException struct {
	Type      string `json:"type"`
	Value     string `json:"value"`
	Mechanism *struct {
		Type    string `json:"type"`
		Handled *bool  `json:"handled"`
	} `json:"mechanism"`
	Stacktrace *struct {
		Frames []struct {
			Function string `json:"function"`
			Module   string `json:"module"`
		} `json:"frames"`
	} `json:"stacktrace"`
}

// decodeExceptions accepts the protocol's two forms of "exception": a list
// or an object with a "values" list.
func decodeExceptions(raw json.RawMessage) ([]Exception, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var list []wireException
	if err := json.Unmarshal(raw, &list); err != nil {
		var obj struct {
			Values []wireException `json:"values"`
		}
		if err := json.Unmarshal(raw, &obj); err != nil {
			return nil, fmt.Errorf("decode event exception: %w", err)
		}
		list = obj.Values
	}
	out := make([]Exception, 0, len(list))
	for _, w := range list {
		ex := Exception{Type: w.Type, Value: w.Value}
		if w.Mechanism != nil {
			ex.Mechanism, ex.Handled = w.Mechanism.Type, w.Mechanism.Handled
		}
		if w.Stacktrace != nil {
			for _, f := range w.Stacktrace.Frames {
				name := f.Function
				if f.Module != "" {
					name = f.Module + "." + f.Function
				}
				ex.Frames = append(ex.Frames, name)
			}
		}
		out = append(out, ex)
	}
	return out, nil
}
