package prefork

import (
	"bufio"
	"bytes"
	"testing"
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
