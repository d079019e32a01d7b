package report

import (
	"log/slog"
	"testing"

	"github.com/getsentry/sentry-go"
)

func TestNewSentry_collectsNoUserData(t *testing.T) {
	s, err := NewSentry(Config{DSN: "https://public@127.0.0.1/1", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	dc := s.client.GetDataCollection()
	if dc.UserInfo.Value {
		t.Error("UserInfo collected, want not")
	}
	for name, b := range map[string]*sentry.KeyValueCollectionBehavior{
		"cookies": dc.Cookies, "request headers": dc.HTTPHeaders.Request,
		"response headers": dc.HTTPHeaders.Response, "query parameters": dc.QueryParams,
	} {
		if b == nil || b.Mode != sentry.CollectionOff {
			t.Errorf("%s: collection %+v, want off", name, b)
		}
	}
	if len(dc.HTTPBodies) != 0 {
		t.Errorf("HTTP bodies collected: %v, want none", dc.HTTPBodies)
	}
}
