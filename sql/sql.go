// Package sql holds the audit log's tern code package: the functions,
// triggers, views and grants that `auditlog migrate` reinstalls as one unit
// after the migrations, so changing a function is an edit here, not a new
// migration. install.sql is the entry point; it includes the other files.
package sql

import "embed"

// FS holds install.sql and the files it includes.
//
//go:embed *.sql
var FS embed.FS
