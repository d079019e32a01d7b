package dashboard

import "github.com/snappea/snappea/storage"

// CursorParam is the after= value of a page after c.
var CursorParam = func(c storage.PendingCursor) string { return encodeCursor(c) }
