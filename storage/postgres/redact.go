package postgres

import (
	"net/url"
	"regexp"
	"strings"
)

// Redact returns a database URL or key=value connection string with its
// password replaced by xxxxx, for logs, status and errors.
func Redact(dsn string) string {
	if strings.Contains(dsn, "://") {
		u, err := url.Parse(dsn)
		if err != nil {
			// Unparseable: show only the scheme, not what may be a password.
			scheme, _, _ := strings.Cut(dsn, "://")
			return scheme + "://(unparseable URL)"
		}
		q := u.Query()
		if q.Has("password") {
			q.Set("password", "xxxxx")
			u.RawQuery = q.Encode()
		}
		return u.Redacted()
	}
	return kvPassword.ReplaceAllString(dsn, "${1}xxxxx")
}

// kvPassword is the password of a key=value string, quoted or not.
var kvPassword = regexp.MustCompile(`(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)`)

// passwordOf returns dsn's password, "" if it has none or cannot be read.
func passwordOf(dsn string) string {
	if strings.Contains(dsn, "://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return ""
		}
		if p, ok := u.User.Password(); ok {
			return p
		}
		return u.Query().Get("password")
	}
	m := kvPassword.FindStringSubmatch(dsn)
	if m == nil {
		return ""
	}
	return strings.Trim(m[2], "'")
}

// redactedError is an error whose message has a password blanked out;
// errors.Is and errors.As still see the original.
type redactedError struct {
	err    error
	secret string
}

func (e *redactedError) Error() string {
	msg := e.err.Error()
	if e.secret != "" {
		msg = strings.ReplaceAll(msg, e.secret, "xxxxx")
		if esc := url.QueryEscape(e.secret); esc != e.secret {
			msg = strings.ReplaceAll(msg, esc, "xxxxx")
		}
		if esc := url.PathEscape(e.secret); esc != e.secret {
			msg = strings.ReplaceAll(msg, esc, "xxxxx")
		}
	}
	return urlInText.ReplaceAllStringFunc(msg, Redact)
}

func (e *redactedError) Unwrap() error { return e.err }

// urlInText finds database URLs quoted in an error message.
var urlInText = regexp.MustCompile(`postgres(?:ql)?://[^\s'"` + "`" + `]+`)

// redactErr wraps err so that its message shows neither secret nor a
// URL's password.
func redactErr(err error, secret string) error {
	if err == nil {
		return nil
	}
	return &redactedError{err: err, secret: secret}
}

// RedactError wraps err so that its message shows neither dsn's password
// nor the password of any database URL in it, as the backend's own errors
// do.
func RedactError(err error, dsn string) error { return redactErr(err, passwordOf(dsn)) }
