package migrations_test

import (
	"context"
	"database/sql"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/snappea/snappea/migrations"
	_ "modernc.org/sqlite"
)

func ExampleApply() {
	dir, _ := os.MkdirTemp("", "snappea-example")
	defer os.RemoveAll(dir)
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "snappea.db")+"?_txlock=immediate")
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()

	v, err := migrations.Apply(context.Background(), db)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(v == migrations.Latest())
	// Output: true
}
