package prefork

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"reflect"
	"testing"
	"time"
)

// FuzzReadFrame: whatever arrives on the socket, readFrame returns a frame
// or an error, never panics or allocates past maxFrame; a frame it reads
// writes back to the same frame.
func FuzzReadFrame(f *testing.F) {
	for _, fr := range []*frame{
		{Op: opReady, PID: 42},
		{Op: opJob, Job: &Job{ID: 7, Name: "email.send", Attempt: 1, MaxAttempts: 3, Timeout: 5e9, Args: []byte(`{"to":"a@b"}`)}},
		{Op: opCancel, ID: 7},
		{Op: opResult, ID: 7, Result: &wireResult{Err: "smtp down", Code: "deadline"}},
	} {
		var b bytes.Buffer
		w := bufio.NewWriter(&b)
		if err := writeFrame(w, fr); err != nil {
			f.Fatal(err)
		}
		f.Add(b.Bytes())
	}
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{0, 0, 0, 2, '{', '}'})
	f.Fuzz(func(t *testing.T, data []byte) {
		fr, err := readFrame(bufio.NewReader(bytes.NewReader(data)))
		if err != nil {
			return
		}
		var b bytes.Buffer
		if err := writeFrame(bufio.NewWriter(&b), fr); err != nil {
			t.Fatalf("writeFrame of a frame readFrame returned: %v", err)
		}
		again, err := readFrame(bufio.NewReader(&b))
		if err != nil {
			t.Fatalf("reading back %q: %v", b.Bytes(), err)
		}
		if again.Op != fr.Op || again.ID != fr.ID || again.PID != fr.PID {
			t.Errorf("round trip: %+v, want %+v", again, fr)
		}
	})
}

// Large frames (task arguments of megabytes) cross intact.
func TestFrame_large(t *testing.T) {
	args := bytes.Repeat([]byte("x"), 3<<20)
	var b bytes.Buffer
	if err := writeFrame(bufio.NewWriter(&b), &frame{Op: opJob, Job: &Job{ID: 1, Name: "big", Args: args}}); err != nil {
		t.Fatal(err)
	}
	fr, err := readFrame(bufio.NewReader(&b))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(fr.Job.Args, args) {
		t.Errorf("args: %d bytes back, want the %d sent", len(fr.Job.Args), len(args))
	}
	if _, err := readFrame(bufio.NewReader(bytes.NewReader([]byte{0, 0x10, 0, 0, '{'}))); err == nil {
		t.Error("a frame cut short: no error")
	}
}

// The job and result frames, encoded by hand, decode to what json.Marshal's
// encoding of the same frames decodes to.
func TestWriteFrame_handEncodedAsJSON(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	frames := []*frame{
		{Op: opJob, Job: &Job{ID: 7, Name: "email.send"}},
		{Op: opJob, Job: &Job{ID: 1, Name: "a\"b\\c\n\t<>&é\u2028\xff", Attempt: 2, MaxAttempts: 3, Timeout: 1500 * time.Millisecond,
			Args: []byte(`{"to":"a@b","n":[1,2]}`), EnqueuedAt: at}},
		{Op: opJob, Job: &Job{ID: -3, Name: "", Args: []byte{}}},
		{Op: opResult, ID: 7, Result: &wireResult{}},
		{Op: opResult, ID: 9, Result: &wireResult{Err: "smtp \"down\"\n", Code: "deadline"}},
		{Op: opResult, Result: &wireResult{Panic: "kaboom", Stack: "goroutine 1 [running]:\n\tmain.go:12 +0x1d\xfe"}},
	}
	for i, f := range frames {
		var hand bytes.Buffer
		w := bufio.NewWriter(&hand)
		if err := writeFrame(w, f); err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		std, err := json.Marshal(f)
		if err != nil {
			t.Fatal(err)
		}
		if hand.Len() < 4 {
			t.Fatalf("frame %d: %d bytes written", i, hand.Len())
		}
		var got, want any
		if err := json.Unmarshal(hand.Bytes()[4:], &got); err != nil {
			t.Fatalf("frame %d: %q is not JSON: %v", i, hand.Bytes()[4:], err)
		}
		json.Unmarshal(std, &want)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("frame %d:\n got %s\nwant %s", i, hand.Bytes()[4:], std)
		}
		back, err := readFrame(bufio.NewReader(&hand))
		if err != nil {
			t.Fatalf("frame %d: read back: %v", i, err)
		}
		f2 := new(frame)
		json.Unmarshal(std, f2)
		if !reflect.DeepEqual(back, f2) {
			t.Errorf("frame %d read back as %+v, want %+v", i, back, f2)
		}
	}
}

// BenchmarkWriteFrame: a task's job frame, hand-encoded, against
// json.Marshal of the same frame, each on a fresh goroutine as the
// foreman's task goroutine sends it (where json's reflection also grows
// the stack).
func BenchmarkWriteFrame(b *testing.B) {
	f := &frame{Op: opJob, Job: &Job{ID: 123456, Name: "snappea.noop", Attempt: 1, Args: []byte("null"),
		EnqueuedAt: time.Now()}}
	w := bufio.NewWriter(io.Discard)
	for _, enc := range []struct {
		name string
		fn   func()
	}{
		{"hand", func() { writeFrame(w, f) }},
		{"json", func() { bs, _ := json.Marshal(f); w.Write(bs); w.Flush() }},
	} {
		b.Run(enc.name, func(b *testing.B) {
			done := make(chan struct{})
			for b.Loop() {
				go func() { enc.fn(); done <- struct{}{} }()
				<-done
			}
		})
	}
}
