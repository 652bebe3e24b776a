// Package migrations holds the schema migrations (NNN_name.sql, gapless),
// applied in order by `auditlog migrate`. Tables live here; functions, views,
// triggers and grants live in the code package in ../sql.
package migrations

import "embed"

// FS holds the migration files.
//
//go:embed *.sql
var FS embed.FS
