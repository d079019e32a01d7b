package dashboard

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"net/http"
	"strings"
)

// ErrUnauthenticated is matched by an Authorize error that asks for
// credentials: the Handler answers 401 with a request for basic
// authentication, so that a browser prompts for them.
var ErrUnauthenticated = errors.New("authentication required")

// BasicAuth is an Authorize hook that admits the requests carrying user
// and password with HTTP basic authentication.
func BasicAuth(user, password string) func(*http.Request) error {
	wantUser, wantPass := digest(user), digest(password)
	return func(r *http.Request) error {
		u, p, ok := r.BasicAuth()
		if ok && subtle.ConstantTimeCompare(digest(u), wantUser)&subtle.ConstantTimeCompare(digest(p), wantPass) == 1 {
			return nil
		}
		return errAuth
	}
}

// BearerToken is an Authorize hook that admits the requests carrying
// token as "Authorization: Bearer TOKEN", or as the password of HTTP
// basic authentication under any user name (so that a browser's prompt
// works too).
func BearerToken(token string) func(*http.Request) error {
	want := digest(token)
	return func(r *http.Request) error {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok {
			_, got, ok = r.BasicAuth()
		}
		if ok && token != "" && subtle.ConstantTimeCompare(digest(strings.TrimSpace(got)), want) == 1 {
			return nil
		}
		return errAuth
	}
}

var errAuth = errors.Join(ErrUnauthenticated, errors.New("log in with the dashboard's credentials"))

// digest makes the comparisons constant-time whatever the lengths.
func digest(s string) []byte {
	d := sha256.Sum256([]byte(s))
	return d[:]
}
