package sentrytest

import (
	"bytes"
	"compress/gzip"
	"net/http"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

const eventTimeout = 10 * time.Second

// envelope joins lines with newlines, the way SDKs write envelopes.
func envelope(lines ...string) []byte { return []byte(strings.Join(lines, "\n") + "\n") }

const (
	header    = `{"event_id":"0123456789abcdef0123456789abcdef","dsn":"http://publickey@127.0.0.1:1/42"}`
	eventJSON = `{"event_id":"0123456789abcdef0123456789abcdef","level":"error","message":"boom",` +
		`"tags":{"task":"send"},"contexts":{"task":{"id":7}},` +
		`"exception":[{"type":"*errors.errorString","value":"boom","mechanism":{"type":"panic","handled":false},` +
		`"stacktrace":{"frames":[{"function":"goexit","module":"runtime"},{"function":"(*T).Run","module":"example.com/x"}]}}]}`
)

func TestParseEnvelope(t *testing.T) {
	handled := false
	want := Event{
		EventID: "0123456789abcdef0123456789abcdef",
		Level:   "error",
		Message: "boom",
		Tags:    map[string]string{"task": "send"},
		Contexts: map[string]map[string]any{
			"task": {"id": 7.0},
		},
		Exception: []Exception{{
			Type: "*errors.errorString", Value: "boom", Mechanism: "panic", Handled: &handled,
			Frames: []string{"runtime.goexit", "example.com/x.(*T).Run"},
		}},
		JSON: []byte(eventJSON),
	}
	tests := []struct {
		name string
		body []byte
	}{
		{"with length", envelope(header, `{"type":"event","length":`+strconv.Itoa(len(eventJSON))+`}`, eventJSON)},
		{"without length", envelope(header, `{"type":"event"}`, eventJSON)},
		{"other items around it", envelope(header,
			`{"type":"client_report"}`, `{"discarded_events":[]}`,
			`{"type":"event"}`, eventJSON,
			`{"type":"attachment","length":5}`, "a\nb\nc")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseEnvelope(tt.body)
			if err != nil {
				t.Fatalf("parseEnvelope: %v", err)
			}
			if len(got) != 1 || !reflect.DeepEqual(got[0], want) {
				t.Errorf("parseEnvelope = %+v\nwant [%+v]", got, want)
			}
		})
	}
}

func TestParseEnvelope_protocolVariants(t *testing.T) {
	ev := `{"message":{"formatted":"hello 7","message":"hello %s"},"tags":[["a","1"],["b","2"]],` +
		`"exception":{"values":[{"type":"E","value":"v"}]}}`
	got, err := parseEnvelope(envelope(header, `{"type":"event"}`, ev))
	if err != nil {
		t.Fatalf("parseEnvelope: %v", err)
	}
	if len(got) != 1 {
		t.Fatalf("parseEnvelope returned %d events, want 1", len(got))
	}
	if got[0].Message != "hello 7" {
		t.Errorf("Message = %q, want the formatted logentry %q", got[0].Message, "hello 7")
	}
	if want := map[string]string{"a": "1", "b": "2"}; !reflect.DeepEqual(got[0].Tags, want) {
		t.Errorf("Tags = %v, want %v", got[0].Tags, want)
	}
	if want := []Exception{{Type: "E", Value: "v"}}; !reflect.DeepEqual(got[0].Exception, want) {
		t.Errorf("Exception = %+v, want %+v", got[0].Exception, want)
	}
}

func TestParseEnvelope_malformed(t *testing.T) {
	for name, body := range map[string][]byte{
		"empty":              nil,
		"header not JSON":    envelope("nope"),
		"item header broken": envelope(header, `{"type":`),
		"length too long":    envelope(header, `{"type":"event","length":999}`, `{}`),
		"event not JSON":     envelope(header, `{"type":"event"}`, `{"level":`),
	} {
		if _, err := parseEnvelope(body); err == nil {
			t.Errorf("%s: parseEnvelope succeeded, want an error", name)
		}
	}
}

func FuzzParseEnvelope(f *testing.F) {
	f.Add(envelope(header, `{"type":"event"}`, eventJSON))
	f.Add(envelope(header, `{"type":"event","length":2}`, `{}`))
	f.Add(envelope(header, `{"type":"event"}`, `{"exception":{"values":[{}]},"tags":[["a","b"]]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		parseEnvelope(body) // must not panic
	})
}

// envelopeURL is where an SDK posts envelopes for r's DSN.
func envelopeURL(t *testing.T, r *Receiver) string {
	t.Helper()
	u, err := url.Parse(r.DSN())
	if err != nil {
		t.Fatalf("DSN %q: %v", r.DSN(), err)
	}
	return "http://" + u.Host + "/api" + u.Path + "/envelope/"
}

func post(t *testing.T, url string, body []byte, gzipped bool) int {
	t.Helper()
	if gzipped {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		zw.Write(body)
		zw.Close()
		body = buf.Bytes()
	}
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if gzipped {
		req.Header.Set("Content-Encoding", "gzip")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestReceiver(t *testing.T) {
	r := NewReceiver()
	defer r.Close()
	if !strings.HasPrefix(r.DSN(), "http://publickey@127.0.0.1:") || !strings.HasSuffix(r.DSN(), "/42") {
		t.Errorf("DSN = %q, want http://publickey@127.0.0.1:PORT/42", r.DSN())
	}
	body := envelope(header, `{"type":"event"}`, eventJSON)

	for _, gzipped := range []bool{false, true} {
		if code := post(t, envelopeURL(t, r), body, gzipped); code != http.StatusOK {
			t.Fatalf("POST (gzip %v) answered %d, want 200", gzipped, code)
		}
		ev, err := r.Next(eventTimeout)
		if err != nil {
			t.Fatal(err)
		}
		if ev.Message != "boom" {
			t.Errorf("gzip %v: event message = %q, want boom", gzipped, ev.Message)
		}
	}
	if got := r.Bodies(); len(got) != 2 || !bytes.Equal(got[0], body) || !bytes.Equal(got[1], body) {
		t.Errorf("Bodies = %q, want the body twice, decompressed", got)
	}

	if code := post(t, envelopeURL(t, r), []byte("garbage"), false); code != http.StatusBadRequest {
		t.Errorf("POST of garbage answered %d, want 400", code)
	}
	if r.Err() == nil {
		t.Error("Err = nil after an undecodable request")
	}
	if _, err := r.Next(time.Millisecond); err == nil || !strings.Contains(err.Error(), "could not be decoded") {
		t.Errorf("Next with no event = %v, want an error saying a request could not be decoded", err)
	}

	r.Close()
	if _, ok := <-r.Events(); ok {
		t.Error("Events still open after Close")
	}
	r.Close() // a second Close does nothing
}
