package api

import (
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
var listParamNames = []string{"action", "target_type", "actor", "range", "since", "until", "limit", "cursor", "format"}

// ranges are the values of the range parameter: the last 24 hours, 7 or 30 days.
var ranges = map[string]time.Duration{"24h": 24 * time.Hour, "7d": 7 * 24 * time.Hour, "30d": 30 * 24 * time.Hour}

// targetTypes are the values of target_type: audit.actions' check constraint.
var targetTypes = []string{"cluster", "org", "org_member", "org_invitation", "pat", "billing", "auth"}

// formats are the values of format.
var formats = []string{"json", "csv"}

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

// listParams are the parsed query parameters of GET /api/orgs/{id}/audit.
type listParams struct {
	action     string // exact action or free text; empty: any
	targetType string
	actor      string
	rangeName  string        // 24h, 7d, 30d; empty: none
	window     time.Duration // of rangeName
	since      time.Time     // zero: none
	until      time.Time     // zero: none
	limit      int
	cursor     string
	csv        bool
}

// parseListParams checks every query parameter and returns all that are
// wrong at once.
func parseListParams(q url.Values) (listParams, error) {
	p := listParams{limit: defaultLimit}
	var bad []invalidParam
	badf := func(name, format string, args ...any) {
		bad = append(bad, invalidParam{Name: name, Reason: fmt.Sprintf(format, args...)})
	}
	names := make([]string, 0, len(q))
	for name := range q {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		values := q[name]
		if !slices.Contains(listParamNames, name) {
			badf(printable(name), "unknown parameter; the parameters are %s", strings.Join(listParamNames, ", "))
			continue
		}
		if len(values) > 1 {
			badf(name, "given %d times; give it once", len(values))
			continue
		}
		v := values[0]
		if reason := checkText(v); reason != "" {
			badf(name, "%s", reason)
			continue
		}
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
		case "range":
			w, ok := ranges[v]
			if !ok {
				badf(name, "must be one of 24h, 7d, 30d (or use since and until)")
			}
			p.rangeName, p.window = v, w
		case "since", "until":
			t, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				badf(name, "not an RFC 3339 time such as 2026-01-02T15:04:05Z")
				continue
			}
			t = ceilMicrosecond(t).UTC()
			if name == "since" {
				p.since = t
			} else {
				p.until = t
			}
		case "limit":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > maxLimit {
				badf(name, "must be a whole number from 1 to %d", maxLimit)
			}
			p.limit = n
		case "cursor":
			if len(v) > maxCursorLen {
				badf(name, "not a cursor this API issued; start again without it")
			}
			p.cursor = v
		case "format":
			if !slices.Contains(formats, v) {
				badf(name, "must be json or csv")
			}
			p.csv = v == "csv"
		}
	}
	if p.rangeName != "" && (q.Has("since") || q.Has("until")) {
		badf("range", "give either range or since/until, not both")
	}
	if !p.since.IsZero() && !p.until.IsZero() && !p.since.Before(p.until) {
		badf("since", "must be before until")
	}
	// Nothing happened before the epoch: earlier times are the epoch (the
	// retention floor is later anyway), which PostgreSQL can always read.
	if !p.since.IsZero() && p.since.Before(epoch) {
		p.since = epoch
	}
	if !p.until.IsZero() && p.until.Before(epoch) {
		p.until = epoch
	}
	if p.csv && q.Has("limit") {
		badf("limit", "a CSV export has every matching event; limit applies to JSON pages only")
	}
	if len(bad) > 0 {
		return listParams{}, invalidParams(bad)
	}
	return p, nil
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
