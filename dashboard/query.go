package dashboard

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/snappea/snappea/foreman"
	"github.com/snappea/snappea/storage"
)

const maxWorkers = foreman.MaxWorkers

// queuedQuery is the query string of /queued, checked.
type queuedQuery struct {
	State    string // "all", "ready" or "delayed"
	Newest   bool
	Task     string
	Priority *int
	Key      string
	Limit    int
	After    *storage.PendingCursor
}

// PriorityText is the priority filter as the form shows it.
func (q queuedQuery) PriorityText() string {
	if q.Priority == nil {
		return ""
	}
	return strconv.Itoa(*q.Priority)
}

func (q queuedQuery) filter() storage.PendingFilter {
	return storage.PendingFilter{Task: q.Task, Ready: q.State == "ready", Delayed: q.State == "delayed",
		Newest: q.Newest, Priority: q.Priority, Key: q.Key, After: q.After}
}

// encode is q's query string, after c (nil: the first page).
func (q queuedQuery) encode(c *storage.PendingCursor) string {
	v := url.Values{}
	if q.State != "all" {
		v.Set("state", q.State)
	}
	if q.Newest {
		v.Set("order", "newest")
	}
	if q.Task != "" {
		v.Set("task", q.Task)
	}
	if q.Priority != nil {
		v.Set("priority", strconv.Itoa(*q.Priority))
	}
	if q.Key != "" {
		v.Set("key", q.Key)
	}
	if q.Limit != DefaultPageSize {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	if c != nil {
		v.Set("after", encodeCursor(*c))
	}
	return v.Encode()
}

// encodeCursor writes a cursor as RUNAT_PRIORITY_ID, RUNAT in Unix
// nanoseconds (0: ready).
func encodeCursor(c storage.PendingCursor) string {
	var runAt int64
	if !c.RunAt.IsZero() {
		runAt = c.RunAt.UnixNano()
	}
	return fmt.Sprintf("%d_%d_%d", runAt, c.Priority, c.ID)
}

func parseCursor(s string) (*storage.PendingCursor, error) {
	parts := strings.Split(s, "_")
	if len(parts) != 3 {
		return nil, fmt.Errorf("after=%.40q: want the cursor of a next-page link (three numbers joined by _)", s)
	}
	var n [3]int64
	for i, p := range parts {
		v, err := strconv.ParseInt(p, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("after=%.40q: want the cursor of a next-page link (three numbers joined by _)", s)
		}
		n[i] = v
	}
	if n[1] < -1<<31 || n[1] > 1<<31-1 || n[2] < 0 || n[0] < 0 {
		return nil, fmt.Errorf("after=%.40q: out of range", s)
	}
	c := &storage.PendingCursor{Priority: int(n[1]), ID: n[2]}
	if n[0] != 0 {
		c.RunAt = time.Unix(0, n[0])
	}
	return c, nil
}

// parseQueued checks /queued's query string.
func parseQueued(v url.Values) (queuedQuery, error) {
	q := queuedQuery{State: "all"}
	if err := onlyParams(v, "state", "order", "task", "priority", "key", "limit", "after", "notice"); err != nil {
		return q, err
	}
	switch s := v.Get("state"); s {
	case "", "all":
	case "ready", "delayed":
		q.State = s
	default:
		return q, fmt.Errorf("state=%.40q: want all, ready or delayed", s)
	}
	switch o := v.Get("order"); o {
	case "", "oldest":
	case "newest":
		q.Newest = true
	default:
		return q, fmt.Errorf("order=%.40q: want oldest or newest", o)
	}
	var err error
	if q.Task, err = text(v, "task"); err != nil {
		return q, err
	}
	if q.Key, err = text(v, "key"); err != nil {
		return q, err
	}
	if p := strings.TrimSpace(v.Get("priority")); p != "" {
		n, err := strconv.ParseInt(p, 10, 32)
		if err != nil {
			return q, fmt.Errorf("priority=%.40q: want a whole number", p)
		}
		pi := int(n)
		q.Priority = &pi
	}
	if q.Limit, err = intParam(v, "limit", DefaultPageSize, 1, MaxPageSize); err != nil {
		return q, err
	}
	if a := v.Get("after"); a != "" {
		if q.After, err = parseCursor(a); err != nil {
			return q, err
		}
	}
	return q, nil
}

// text is a free-text parameter: a task name or a key.
func text(v url.Values, name string) (string, error) {
	s := strings.TrimSpace(v.Get(name))
	switch {
	case len(s) > maxName:
		return "", fmt.Errorf("%s is %d bytes long: at most %d", name, len(s), maxName)
	case !utf8.ValidString(s):
		return "", fmt.Errorf("%s is not valid UTF-8", name)
	}
	return s, nil
}

// onlyParams refuses parameters other than those named, and a parameter
// given twice: a mistyped filter should not silently list everything.
func onlyParams(v url.Values, names ...string) error {
	for k, vs := range v {
		known := false
		for _, n := range names {
			if k == n {
				known = true
			}
		}
		if !known {
			return fmt.Errorf("unknown parameter %.40q: this page takes %s", k, strings.Join(names, ", "))
		}
		if len(vs) > 1 {
			return fmt.Errorf("parameter %q given %d times: give it once", k, len(vs))
		}
	}
	return nil
}

// intParam is a whole number parameter from lo to hi; def when absent.
func intParam(v url.Values, name string, def, lo, hi int) (int, error) {
	s := strings.TrimSpace(v.Get(name))
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < lo || n > hi {
		return 0, fmt.Errorf("%s=%.40q: want a whole number from %d to %d", name, s, lo, hi)
	}
	return n, nil
}

// idParam is the path's {id}: a task or failure id.
func idParam(r *http.Request) (int64, error) {
	s := r.PathValue("id")
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil || id <= 0 {
		return 0, fmt.Errorf("%.40q is not an id: want a positive whole number", s)
	}
	return id, nil
}

// query is the request's query string, refused when malformed (net/url
// would drop the bad pairs and list everything).
func query(r *http.Request) (url.Values, error) {
	v, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, fmt.Errorf("the query string is malformed: %v", err)
	}
	return v, nil
}
