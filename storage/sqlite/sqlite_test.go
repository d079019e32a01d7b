package sqlite

import (
	"context"
	"testing"

	"github.com/snappea/snappea/migrations"
	"github.com/snappea/snappea/storage"
	"github.com/snappea/snappea/storage/storagetest"
)

// The conformance suite of storage.Backend, on real files.
func TestBackend_Conformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Backend {
		return mustOpenIn(t, t.TempDir(), Config{})
	}, func(t *testing.T, sb storage.Backend) error {
		b := sb.(*Backend)
		if _, err := b.DB().Exec(`INSERT INTO snappea_migrations (version, name, applied_at) VALUES (?, 'future', 0)`,
			migrations.Latest()+1); err != nil {
			t.Fatal(err)
		}
		b2, err := Open(context.Background(), b.cfg)
		if err == nil {
			b2.Close()
		}
		return err
	})
}
