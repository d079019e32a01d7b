package dashboard

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/snappea/snappea"
)

// The CSRF token: a random cookie, and in every form the HMAC of the
// cookie with the Handler's key. A page on another site can neither read
// the cookie nor compute the HMAC, and a cookie planted from a sibling
// domain is useless without the key.
const (
	csrfCookie = "snappea_csrf"
	csrfField  = "csrf"
)

// csrfToken is the token for the request's cookie, setting a new cookie
// when the request has none.
func (h *Handler) csrfToken(w http.ResponseWriter, r *http.Request) string {
	if h.cfg.ReadOnly {
		return ""
	}
	c, err := r.Cookie(csrfCookie)
	if err != nil || len(c.Value) != 43 {
		b := make([]byte, 32)
		rand.Read(b)
		c = &http.Cookie{Name: csrfCookie, Value: base64.RawURLEncoding.EncodeToString(b), Path: "/",
			HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil}
		http.SetCookie(w, c)
	}
	return h.sign(c.Value)
}

func (h *Handler) sign(cookie string) string {
	m := hmac.New(sha256.New, h.csrfKey)
	m.Write([]byte(cookie))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// checkCSRF reports whether the form carries the token of the request's
// cookie.
func (h *Handler) checkCSRF(r *http.Request) bool {
	c, err := r.Cookie(csrfCookie)
	if err != nil || c.Value == "" {
		return false
	}
	return hmac.Equal([]byte(r.PostForm.Get(csrfField)), []byte(h.sign(c.Value)))
}

// action does one change. It returns the notice to show and the page to
// go back to (relative to the mount; "" for the form's back field), or an
// error to show; an *inputError is the request's fault (4xx).
type action func(r *http.Request) (notice, back string, err error)

// inputError is an action's refusal of its input, with the status to
// answer.
type inputError struct {
	code int
	msg  string
}

func (e *inputError) Error() string { return e.msg }

func badInput(code int, format string, a ...any) error {
	return &inputError{code: code, msg: fmt.Sprintf(format, a...)}
}

// post wraps an action: refused when read-only or without a valid CSRF
// token, the form bounded, and a 303 back to the page the form was on.
func (h *Handler) post(fn action) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if h.cfg.ReadOnly {
			h.fail(w, r, http.StatusForbidden, "this dashboard is read-only: it changes nothing")
			return
		}
		if err := r.ParseForm(); err != nil {
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				h.fail(w, r, http.StatusRequestEntityTooLarge, "the form is larger than %d bytes", maxForm)
				return
			}
			h.fail(w, r, http.StatusBadRequest, "the form could not be read: %v", err)
			return
		}
		if !h.checkCSRF(r) {
			h.fail(w, r, http.StatusForbidden, "the form's CSRF token is missing or does not match this browser's cookie "+
				"(cookies off, or the dashboard restarted since the page was loaded): reload the page and try again")
			return
		}
		msg, back, err := fn(r)
		if err != nil {
			var in *inputError
			if errors.As(err, &in) {
				h.fail(w, r, in.code, "%s", in.msg)
				return
			}
			h.internal(w, r, "carry out the action", err)
			return
		}
		if back == "" {
			back = backPath(r.PostForm.Get("back"))
		}
		u, _ := url.Parse(back)
		v := u.Query()
		v.Set("notice", msg)
		u.RawQuery = v.Encode()
		http.Redirect(w, r, base(r)+u.String(), http.StatusSeeOther)
	}
}

// backPath is a form's back field if it is a path of this dashboard,
// else the overview: never a redirect elsewhere.
func backPath(s string) string {
	u, err := url.Parse(s)
	if err != nil || s == "" || !strings.HasPrefix(s, "/") || strings.HasPrefix(s, "//") || strings.Contains(s, `\`) ||
		u.Scheme != "" || u.Host != "" {
		return "/"
	}
	v := u.Query()
	v.Del("notice")
	u.RawQuery = v.Encode()
	return u.String()
}

func (h *Handler) needDaemon() error {
	if h.cfg.Daemon == nil {
		return badInput(http.StatusConflict, "no daemon is connected to this dashboard: nothing to pause, resume or resize")
	}
	return nil
}

func (h *Handler) pause(r *http.Request) (string, string, error) {
	if err := h.needDaemon(); err != nil {
		return "", "", err
	}
	ctx, cancel := daemonCtx(r)
	defer cancel()
	if err := h.cfg.Daemon.Pause(ctx); err != nil {
		return "", "", err
	}
	return "Paused: the daemon claims no tasks until resumed; running tasks go on.", "", nil
}

func (h *Handler) resume(r *http.Request) (string, string, error) {
	if err := h.needDaemon(); err != nil {
		return "", "", err
	}
	ctx, cancel := daemonCtx(r)
	defer cancel()
	if err := h.cfg.Daemon.Resume(ctx); err != nil {
		return "", "", err
	}
	return "Resumed.", "", nil
}

func (h *Handler) setWorkers(r *http.Request) (string, string, error) {
	if err := h.needDaemon(); err != nil {
		return "", "", err
	}
	s := strings.TrimSpace(r.PostForm.Get("workers"))
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > maxWorkers {
		return "", "", badInput(http.StatusBadRequest, "workers=%.40q: want a whole number from 1 to %d", s, maxWorkers)
	}
	ctx, cancel := daemonCtx(r)
	defer cancel()
	if err := h.cfg.Daemon.SetWorkers(ctx, n); err != nil {
		return "", "", err
	}
	return fmt.Sprintf("Workers set to %d.", n), "", nil
}

func (h *Handler) cancelRunning(r *http.Request) (string, string, error) {
	id, err := idParam(r)
	if err != nil {
		return "", "", badInput(http.StatusBadRequest, "%v", err)
	}
	if h.cfg.Daemon != nil {
		ctx, cancel := daemonCtx(r)
		defer cancel()
		ok, err := h.cfg.Daemon.Cancel(ctx, id)
		if err != nil {
			return "", "", err
		}
		if ok {
			return fmt.Sprintf("Task %d cancelled: its context is done; the handler decides when it returns.", id), "/running", nil
		}
	}
	if !h.lite {
		// Whichever daemon of the cluster runs it.
		if err := h.q.Backend().RequestCancel(r.Context(), id); err != nil {
			return "", "", err
		}
		return fmt.Sprintf("Asked the daemons to cancel task %d, if one runs it.", id), "/running", nil
	}
	return "", "", badInput(http.StatusNotFound, "task %d is not running (finished already, or never claimed)", id)
}

func (h *Handler) cancelQueued(r *http.Request) (string, string, error) {
	id, err := idParam(r)
	if err != nil {
		return "", "", badInput(http.StatusBadRequest, "%v", err)
	}
	ok, err := h.q.Cancel(r.Context(), id)
	if err != nil {
		return "", "", err
	}
	if !ok {
		return "", "", badInput(http.StatusNotFound, "task %d is not queued: claimed, cancelled or never there", id)
	}
	return fmt.Sprintf("Task %d cancelled: removed from the queue.", id), "", nil
}

func (h *Handler) retryOne(r *http.Request) (string, string, error) {
	id, err := idParam(r)
	if err != nil {
		return "", "", badInput(http.StatusBadRequest, "%v", err)
	}
	tid, err := h.q.RetryFailure(r.Context(), id)
	if errors.Is(err, snappea.ErrNotFound) {
		return "", "", badInput(http.StatusNotFound, "no failed task %d in the record: retried, purged or pruned already", id)
	}
	if err != nil {
		return "", "", err
	}
	return fmt.Sprintf("Failed task %d queued again as task %d.", id, tid), "/failed", nil
}

func (h *Handler) retryAll(r *http.Request) (string, string, error) {
	task, err := text(r.PostForm, "task")
	if err != nil {
		return "", "", badInput(http.StatusBadRequest, "%v", err)
	}
	if task == "" {
		n, err := h.q.RetryAllFailures(r.Context())
		if err != nil {
			return "", "", err
		}
		return fmt.Sprintf("%d failed tasks queued again.", n), "/failed", nil
	}
	ids, err := h.q.Backend().RetryFailuresOf(r.Context(), task, time.Now()) // the backend wakes the daemon
	if err != nil {
		return "", "", err
	}
	return fmt.Sprintf("%d failed tasks of %s queued again.", len(ids), task), "/failed", nil
}

func (h *Handler) purge(r *http.Request) (string, string, error) {
	n, err := h.q.PurgeFailures(r.Context())
	if err != nil {
		return "", "", err
	}
	return fmt.Sprintf("%d failed tasks purged from the record.", n), "/failed", nil
}
