package dashboard_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"

	"github.com/snappea/snappea/dashboard"
	"github.com/snappea/snappea/queue"
)

// Mount the dashboard in a net/http server under /admin/snappea/, behind
// basic authentication.
func ExampleNew() {
	dir, _ := os.MkdirTemp("", "snappea-example")
	defer os.RemoveAll(dir)
	ctx := context.Background()
	q, err := queue.Open(ctx, queue.Config{Dir: filepath.Join(dir, "data")})
	if err != nil {
		log.Fatal(err)
	}
	defer q.Close()
	q.Enqueue(ctx, "email.send", map[string]string{"to": "ada@example.com"})

	dash, err := dashboard.New(dashboard.Config{
		Queue:     q,
		Authorize: dashboard.BasicAuth("admin", "open sesame"),
		// Daemon: control.Dial(...) adds the running tasks, pause and
		// workers of the daemon on this data directory.
	})
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/admin/snappea/", http.StripPrefix("/admin/snappea", dash))
	srv := httptest.NewServer(mux)
	defer srv.Close()

	resp, _ := http.Get(srv.URL + "/admin/snappea/")
	resp.Body.Close()
	fmt.Println("without credentials:", resp.StatusCode)

	req, _ := http.NewRequest("GET", srv.URL+"/admin/snappea/queued", nil)
	req.SetBasicAuth("admin", "open sesame")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		log.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Println("as admin:", resp.StatusCode, strings.Contains(string(body), "<td>email.send</td>"))
	// Output:
	// without credentials: 401
	// as admin: 200 true
}
