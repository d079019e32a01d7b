package prefork

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
)

// The protocol between parent and child is a stream of frames over one
// unix socket: a 4-byte big-endian length, then that many bytes of JSON.
// JSON rather than gob: a frame decodes on its own (gob's type
// descriptors make the first message special), the cost is a few
// microseconds per task, and a frame can be read in a hex dump.
//
//	child → parent  ready   once, when the child can take a job
//	parent → child  job     run this task (one at a time)
//	parent → child  cancel  cancel the running job's context
//	child → parent  result  the job's outcome
//
// Closing the parent's end asks the child to exit; the child closing its
// end (or dying) tells the parent it is gone.

// maxFrame bounds a frame so that a corrupt length cannot make the reader
// allocate without limit. Task arguments are the large part.
const maxFrame = 256 << 20

// frame is every message; Op says which fields are set.
type frame struct {
	Op     string      `json:"op"`               // opReady, opJob, opCancel, opResult
	PID    int         `json:"pid,omitempty"`    // ready
	Job    *Job        `json:"job,omitempty"`    // job
	ID     int64       `json:"id,omitempty"`     // cancel, result: the job's task id
	Result *wireResult `json:"result,omitempty"` // result
}

const (
	opReady  = "ready"
	opJob    = "job"
	opCancel = "cancel"
	opResult = "result"
)

// wireResult is a job's outcome as the child reports it.
type wireResult struct {
	Err   string `json:"err,omitempty"`   // the handler's error text; "" for success
	Code  string `json:"code,omitempty"`  // which sentinel the error matched, see codes
	Panic string `json:"panic,omitempty"` // the panic value, printed; set when the handler panicked
	Stack string `json:"stack,omitempty"` // the panicking goroutine's stack
}

func writeFrame(w *bufio.Writer, f *frame) error {
	var b []byte
	var err error
	switch {
	case f.Op == opJob && f.Job != nil && f.PID == 0 && f.ID == 0 && f.Result == nil:
		b = appendJobFrame(make([]byte, 0, 160+len(f.Job.Name)+len(f.Job.Args)*4/3), f.Job)
	case f.Op == opResult && f.Result != nil && f.PID == 0 && f.Job == nil:
		b = appendResultFrame(make([]byte, 0, 64+len(f.Result.Err)+len(f.Result.Stack)), f.ID, f.Result)
	default:
		b, err = json.Marshal(f)
	}
	if err != nil {
		return fmt.Errorf("encode %s frame: %w", f.Op, err)
	}
	if len(b) > maxFrame {
		return fmt.Errorf("encode %s frame: %d bytes, more than the limit of %d", f.Op, len(b), maxFrame)
	}
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(b)))
	w.Write(n[:])
	w.Write(b)
	if err := w.Flush(); err != nil {
		return fmt.Errorf("write %s frame: %w", f.Op, err)
	}
	return nil
}

// The two frames of every task, job and result, are encoded by hand: the
// same JSON as json.Marshal gives (up to the escaping of strings, which
// decodes the same), without reflection, whose cost and stack growth on
// the goroutine that sends were a good part of a task's time in the
// parent. The fuzz test checks that what is written reads back the same.

func appendJobFrame(b []byte, j *Job) []byte {
	b = append(b, `{"op":"job","job":{"id":`...)
	b = strconv.AppendInt(b, j.ID, 10)
	b = append(b, `,"name":`...)
	b = appendString(b, j.Name)
	if j.Attempt != 0 {
		b = append(b, `,"attempt":`...)
		b = strconv.AppendInt(b, int64(j.Attempt), 10)
	}
	if j.MaxAttempts != 0 {
		b = append(b, `,"max_attempts":`...)
		b = strconv.AppendInt(b, int64(j.MaxAttempts), 10)
	}
	if j.Timeout != 0 {
		b = append(b, `,"timeout":`...)
		b = strconv.AppendInt(b, int64(j.Timeout), 10)
	}
	if len(j.Args) > 0 {
		b = append(b, `,"args":"`...)
		b = base64.StdEncoding.AppendEncode(b, j.Args)
		b = append(b, '"')
	}
	if !j.EnqueuedAt.IsZero() {
		if t, err := j.EnqueuedAt.MarshalJSON(); err == nil {
			b = append(b, `,"enqueued_at":`...)
			b = append(b, t...)
		}
	}
	return append(b, "}}"...)
}

func appendResultFrame(b []byte, id int64, r *wireResult) []byte {
	b = append(b, `{"op":"result"`...)
	if id != 0 {
		b = append(b, `,"id":`...)
		b = strconv.AppendInt(b, id, 10)
	}
	b = append(b, `,"result":{`...)
	sep := ""
	for _, f := range []struct{ key, v string }{{"err", r.Err}, {"code", r.Code}, {"panic", r.Panic}, {"stack", r.Stack}} {
		if f.v == "" {
			continue
		}
		b = append(b, sep...)
		b = append(b, '"')
		b = append(b, f.key...)
		b = append(b, `":`...)
		b = appendString(b, f.v)
		sep = ","
	}
	return append(b, "}}"...)
}

// appendString appends s as a JSON string: as it is when it is printable
// ASCII with nothing to escape, else as json.Marshal writes it.
func appendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // a string always encodes
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// readFrame returns io.EOF when the peer closed the stream between frames.
func readFrame(r *bufio.Reader) (*frame, error) {
	var n [4]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return nil, err
	}
	size := binary.BigEndian.Uint32(n[:])
	if size > maxFrame {
		return nil, fmt.Errorf("read frame: length %d is more than the limit of %d", size, maxFrame)
	}
	var b []byte
	if size <= 64<<10 {
		b = make([]byte, size)
		if _, err := io.ReadFull(r, b); err != nil {
			return nil, fmt.Errorf("read frame: %w", io.ErrUnexpectedEOF)
		}
	} else {
		// Grow with what arrives, not with what the length claims.
		var buf bytes.Buffer
		if n, _ := io.CopyN(&buf, r, int64(size)); n < int64(size) {
			return nil, fmt.Errorf("read frame: %w", io.ErrUnexpectedEOF)
		}
		b = buf.Bytes()
	}
	f := new(frame)
	if err := json.Unmarshal(b, f); err != nil {
		return nil, fmt.Errorf("read frame: %w", err)
	}
	return f, nil
}
