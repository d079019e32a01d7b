package postgres

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/snappea/snappea/storage"
)

func TestUnavailable(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	open := func(t *testing.T, u string) error {
		t.Helper()
		b, err := Open(ctx, Config{URL: u, Schema: randomSchema(t), Logger: quietLogger()})
		if err == nil {
			dropSchema(t, b)
			b.Close()
		}
		return err
	}
	t.Run("server down", func(t *testing.T) {
		err := open(t, "postgres://snappea@127.0.0.1:1/postgres?sslmode=disable")
		if !Unavailable(err) {
			t.Errorf("Unavailable(%v) = false, want true", err)
		}
	})
	t.Run("bad URL", func(t *testing.T) {
		err := open(t, "postgres://snappea@127.0.0.1:notaport/postgres")
		if err == nil || Unavailable(err) {
			t.Errorf("Unavailable(%v) = true, want false", err)
		}
	})
	t.Run("no such database", func(t *testing.T) {
		u, err := url.Parse(testURL(t))
		if err != nil {
			t.Fatal(err)
		}
		u.Path = "/snappea_no_such_database"
		err = open(t, u.String())
		if err == nil || Unavailable(err) {
			t.Errorf("Unavailable(%v) = true, want false", err)
		}
	})
	t.Run("schema too new", func(t *testing.T) {
		err := fmt.Errorf("migrate: %w", storage.ErrSchemaTooNew)
		if Unavailable(err) {
			t.Errorf("Unavailable(%v) = true, want false", err)
		}
	})
	t.Run("nil and others", func(t *testing.T) {
		if Unavailable(nil) || Unavailable(errors.New("something else")) {
			t.Error("Unavailable is true for nil or an unrelated error")
		}
	})
}
