// Package sqlstate names the SQLSTATEs the Go code looks at: PostgreSQL's
// own (names as in its errcodes.txt) and the audit log's AL0xx codes, which
// the files of sql/ raise (TestEveryProjectCodeIsRaised keeps the two lists
// equal). Tests keep the literal codes: they are the public contract.
package sqlstate

// PostgreSQL's classes: the first two characters of a code.
const (
	ClassConnectionException   = "08"
	ClassInsufficientResources = "53"
)

// PostgreSQL's codes.
const (
	InvalidTextRepresentation = "22P02"
	BadCopyFileFormat         = "22P04"
	UniqueViolation           = "23505"
	SerializationFailure      = "40001"
	DeadlockDetected          = "40P01"
	LockNotAvailable          = "55P03"
	QueryCanceled             = "57014"
	AdminShutdown             = "57P01"
	CrashShutdown             = "57P02"
	CannotConnectNow          = "57P03"
)

// The audit log's codes: recording an event (audit.log_event).
const (
	UnknownOrg        = "AL001"
	UnknownAction     = "AL002"
	MetadataNotObject = "AL003"
	MissingMetadata   = "AL004"
	TooLong           = "AL005"
	MalformedEmail    = "AL006"
	MissingArgument   = "AL007"
	UnknownTier       = "AL008"
)

// The audit log's codes: immutability and retention.
const (
	Immutable    = "AL010" // a stored event cannot change
	ClockAhead   = "AL011" // a clock later than the database's, for a step that drops or removes
	NoSuchObject = "AL012" // no such leaf or plan change
	NotYet       = "AL013" // not (or no longer) allowed: not expired, not ready, not the latest
	OutOfRange   = "AL014" // an argument out of range
)

// The audit log's codes: the bulk import (audit.import_batch).
const (
	NoStagingTable   = "AL020"
	FutureEvent      = "AL021"
	WrongTargetType  = "AL022"
	ActorMismatch    = "AL023"
	DuplicateInBatch = "AL024"
)

// The audit log's codes: sealing.
const (
	SealRefused = "AL030" // a seal batch that breaks the sequence, the sealer's progress moving back, a key id not the key's
)

// The audit log's codes: delivery (sql/delivery.sql).
const (
	UnknownSubscription = "AL040"
	InvalidSubscription = "AL041" // a subscription, rule or key the functions refuse
	PositionMoved       = "AL042" // another worker delivered meanwhile
)
