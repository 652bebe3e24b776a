package database

// Session advisory locks of the workers that must run once per database.
// Advisory locks are per database, so each database has its own worker of
// each kind; the keys only have to differ from each other.
const (
	// RetentionLock is held by the retention worker for a pass.
	RetentionLock = 7_246_160_914
	// SealerLock is held by the active sealer for as long as it runs.
	SealerLock = 7_246_160_915
)
