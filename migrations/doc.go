// Package migrations holds snappea's database schema as embedded, numbered
// SQL files and applies the ones a database has not seen yet.
//
// Files are named NNNN_description.sql and applied in order, each in its own
// IMMEDIATE transaction together with the row that records it in the
// snappea_migrations table, so two processes starting at once (a web server
// and the daemon) apply every migration exactly once. A database whose
// schema is newer than this build knows is refused with [ErrSchemaTooNew]:
// an older binary must not run against tables it does not understand.
//
// Which migrations a database has is the set of rows in snappea_migrations,
// not only the highest number: a number may be left free for a change that
// lands later, and that migration is then applied to databases that already
// have the ones after it. Such a late migration must therefore not depend
// on the ones numbered after it. [Version] reports the highest number
// applied, and [Latest] the highest this build has.
package migrations
