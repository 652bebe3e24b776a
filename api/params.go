package api

import (
	"cmp"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// The query parameters of GET /api/orgs/{id}/audit, as documented in
// openapi.json (a test keeps the two in step).
var listParamNames = []string{"action", "target_type", "actor", "q", "range", "since", "until", "limit", "cursor", "format", "bom"}

// rangeNames are the values of the range parameter, shortest first: the
// last 24 hours, 7, 30 or 90 days, a year (365 days).
var rangeNames = []string{"24h", "7d", "30d", "90d", "1y"}

// ranges are the windows of rangeNames.
var ranges = map[string]time.Duration{"24h": 24 * time.Hour, "7d": 7 * 24 * time.Hour, "30d": 30 * 24 * time.Hour,
	"90d": 90 * 24 * time.Hour, "1y": 365 * 24 * time.Hour}

// targetTypes are the values of target_type: audit.actions' check constraint.
var targetTypes = []string{"cluster", "org", "org_member", "org_invitation", "pat", "billing", "auth", "audit_stream"}

// formats are the values of format.
var formats = []string{"json", "csv", "ndjson"}

// Page sizes.
const (
	defaultLimit = 100
	maxLimit     = 1000
)

// Longest accepted values of the free-text parameters.
const (
	maxActionLen = 100
	maxActorLen  = 254
	maxCursorLen = 200
)

// filterParams are the parameters the listing and the feed share.
type filterParams struct {
	action     string // exact action or free text; empty: any
	targetType string
	actor      string
	search     search // q
	limit      int
}

// set parses parameter name if it is one of filterParams', and says so.
func (p *filterParams) set(name, v string, badf func(name, format string, args ...any)) bool {
	switch name {
	case "action":
		if len(v) > maxActionLen {
			badf(name, "longer than %d characters", maxActionLen)
		}
		p.action = strings.TrimSpace(v)
	case "target_type":
		if !slices.Contains(targetTypes, v) {
			badf(name, "must be one of %s", strings.Join(targetTypes, ", "))
		}
		p.targetType = v
	case "actor":
		if len(v) > maxActorLen {
			badf(name, "longer than %d characters", maxActorLen)
		}
		p.actor = strings.TrimSpace(v)
	case "q":
		sq, err := parseSearch(v)
		if err != nil {
			badf(name, "%v", err)
		}
		if sq.actor != "" && p.actor != "" { // actor sorts before q
			badf(name, "actor: and the actor parameter: give one")
		}
		p.search, p.actor = sq, cmp.Or(p.actor, sq.actor)
	case "limit":
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxLimit {
			badf(name, "must be a whole number from 1 to %d", maxLimit)
		}
		p.limit = n
	default:
		return false
	}
	return true
}

// listParams are the parsed query parameters of GET /api/orgs/{id}/audit.
type listParams struct {
	filterParams
	rangeName string        // one of rangeNames; empty: none
	window    time.Duration // of rangeName
	since     time.Time     // zero: none
	until     time.Time     // zero: none
	cursor    string
	format    string // json, csv or ndjson
	bom       bool   // a CSV export starts with a UTF-8 byte-order mark
}

// export says whether the request is an export (every matching event).
func (p listParams) export() bool { return p.format != "json" }

// parseListParams checks every query parameter and returns all that are
// wrong at once.
func parseListParams(q url.Values) (listParams, error) {
	p := listParams{filterParams: filterParams{limit: defaultLimit}, format: "json"}
	var bad []invalidParam
	badf := func(name, format string, args ...any) {
		bad = append(bad, invalidParam{Name: name, Reason: fmt.Sprintf(format, args...)})
	}
	eachParam(q, listParamNames, badf, func(name, v string) {
		if p.filterParams.set(name, v, badf) {
			return
		}
		switch name {
		case "range":
			w, ok := ranges[v]
			if !ok {
				badf(name, "must be one of %s (or use since and until)", strings.Join(rangeNames, ", "))
			}
			p.rangeName, p.window = v, w
		case "since", "until":
			t, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				badf(name, "not an RFC 3339 time such as 2026-01-02T15:04:05Z")
				return
			}
			t = ceilMicrosecond(t).UTC()
			if name == "since" {
				p.since = t
			} else {
				p.until = t
			}
		case "cursor":
			if len(v) > maxCursorLen {
				badf(name, "not a cursor this API issued; start again without it")
			}
			p.cursor = v
		case "bom":
			if v != "0" && v != "1" {
				badf(name, "must be 1 (start the CSV with a UTF-8 byte-order mark, for Excel) or 0")
			}
			p.bom = v == "1"
		case "format":
			if !slices.Contains(formats, v) {
				badf(name, "must be json, csv or ndjson")
			}
			p.format = v
		}
	})
	if p.rangeName != "" && (q.Has("since") || q.Has("until")) {
		badf("range", "give either range or since/until, not both")
	}
	if !p.since.IsZero() && !p.until.IsZero() && !p.since.Before(p.until) {
		badf("since", "must be before until")
	} else {
		// created: narrows whatever range the parameters give; when it
		// leaves none, the fault is q's: its terms', or the range's.
		sq := p.search
		them := "them"
		if len(sq.created) == 1 {
			them = "it"
		}
		fits := "no time from since to until fits " + them
		if !sq.since.IsZero() && !sq.until.IsZero() && !sq.since.Before(sq.until) {
			fits = "no time fits " + them // whatever the range
		}
		if sq.since.After(p.since) {
			p.since = sq.since
		}
		if u := sq.until; !u.IsZero() && (p.until.IsZero() || u.Before(p.until)) {
			p.until = u
		}
		if !p.since.IsZero() && !p.until.IsZero() && !p.since.Before(p.until) {
			badf("q", "%s: %s; nothing could match", strings.Join(sq.created, " and "), fits)
		}
	}
	// Nothing happened before the epoch: earlier times are the epoch (the
	// retention floor is later anyway), which PostgreSQL can always read.
	if !p.since.IsZero() && p.since.Before(epoch) {
		p.since = epoch
	}
	if !p.until.IsZero() && p.until.Before(epoch) {
		p.until = epoch
	}
	// Nor after endOfTime: later times (rounded up into the year 10000)
	// are endOfTime, which JSON can write.
	if p.since.After(endOfTime) {
		p.since = endOfTime
	}
	if p.until.After(endOfTime) {
		p.until = endOfTime
	}
	if p.export() && q.Has("limit") {
		badf("limit", "an export has every matching event; limit applies to JSON pages only")
	}
	if p.bom && p.format != "csv" {
		badf("bom", "a byte-order mark starts a CSV export only (format=csv)")
	}
	if len(bad) > 0 {
		return listParams{}, invalidParams(bad)
	}
	return p, nil
}

// eachParam calls set with each parameter of q, in name order, after
// checking that it is one of allowed, given once, and printable UTF-8;
// what is wrong goes to badf.
func eachParam(q url.Values, allowed []string, badf func(name, format string, args ...any), set func(name, v string)) {
	names := make([]string, 0, len(q))
	for name := range q {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		values := q[name]
		if !slices.Contains(allowed, name) {
			badf(printable(name), "unknown parameter; the parameters are %s", strings.Join(allowed, ", "))
			continue
		}
		if len(values) > 1 {
			badf(name, "given %d times; give it once", len(values))
			continue
		}
		if reason := checkText(values[0]); reason != "" {
			badf(name, "%s", reason)
			continue
		}
		set(name, values[0])
	}
}

// checkText says what is wrong with a parameter's text, if anything: it must
// be UTF-8 without control characters.
func checkText(v string) string {
	if !utf8.ValidString(v) {
		return "not valid UTF-8"
	}
	if strings.ContainsFunc(v, unicode.IsControl) {
		return "contains control characters"
	}
	return ""
}

// printable makes a client's parameter name safe to echo back.
func printable(s string) string {
	if checkText(s) != "" || len(s) > 100 {
		return strconv.QuoteToASCII(s[:min(len(s), 100)])
	}
	return s
}

var epoch = time.Unix(0, 0).UTC()

// ceilMicrosecond rounds t up to PostgreSQL's precision, so that a bound
// between two microseconds neither includes nor excludes an event wrongly.
func ceilMicrosecond(t time.Time) time.Time {
	if r := t.Truncate(time.Microsecond); !r.Equal(t) {
		return r.Add(time.Microsecond)
	}
	return t
}
