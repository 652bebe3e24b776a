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

// Tiers are the retention tiers, one table audit.events_<tier> each, in the
// order the files write them. The files range over them ({{ range $.tiers }})
// rather than list them; migrations keep their own lists, since an applied
// migration must keep the effect it had. A test checks this list against
// audit.tiers.
var Tiers = []string{"free", "team", "enterprise"}

// Data is the template data the files are evaluated with.
func Data() map[string]any { return map[string]any{"tiers": Tiers} }
