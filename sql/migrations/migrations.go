// Package migrations embeds the PostgreSQL schema of the fleet: the .sql
// files beside it, in goose format, applied in order, each in its own
// transaction, recorded in the goose_db_version table.
//
// internal/migrate applies them (proverctl migrate, proverctl dev and demo,
// the tests); the programs that serve requests never link the migration
// tool.
package migrations

import "embed"

// FS holds the migration files, by name at its root.
//
//go:embed *.sql
var FS embed.FS
