// Package sql embeds the Postgres migrations (goose format, applied in order,
// each in its own transaction, recorded in the goose_db_version table).
// shared/store applies them; importers usually name it migrations.
package sql

import "embed"

// FS holds the migration files.
//
//go:embed *.sql
var FS embed.FS
