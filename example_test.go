package snappea_test

import (
	"errors"
	"fmt"

	"github.com/snappea/snappea"
)

// Callers branch on the sentinels with errors.Is: the errors snappea
// returns wrap them with what was being done.
func Example() {
	err := fmt.Errorf("enqueue app.digest: %w", snappea.ErrBacklogFull)
	if errors.Is(err, snappea.ErrBacklogFull) {
		fmt.Println("shed load")
	}
	// Output: shed load
}
