package api

import (
	"fmt"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/auditlog/auditlog/internal/store"
)

// search is the q parameter parsed: GitHub-style qualifiers, e.g.
// `action:pat.* actor:ada@example.com target:cluster created:>=2026-11-01
// -action:auth.*`. A word without a qualifier is matched against action
// names, as the action parameter is.
type search struct {
	actions    []string // patterns an event's action must match one of
	notActions []string // patterns it must match none of
	targets    []string // target types it must be one of
	notTargets []string
	actor      string
	since      time.Time // zero: none
	until      time.Time // zero: none
}

// Bounds of q.
const (
	maxSearchLen    = 500
	maxSearchTokens = 20
)

// searchKeys are the qualifiers, as docs/api.md lists them.
var searchKeys = []string{"action", "actor", "target", "created"}

// parseSearch parses q; an error names the token at fault.
func parseSearch(q string) (search, error) {
	var s search
	if len(q) > maxSearchLen {
		return s, fmt.Errorf("longer than %d characters", maxSearchLen)
	}
	tokens := strings.Fields(q)
	if len(tokens) > maxSearchTokens {
		return s, fmt.Errorf("more than %d terms", maxSearchTokens)
	}
	for _, token := range tokens {
		negated := strings.HasPrefix(token, "-")
		key, value, qualified := strings.Cut(strings.TrimPrefix(token, "-"), ":")
		if !qualified {
			key, value = "action", key
		}
		if value == "" {
			return s, fmt.Errorf("%q: nothing after the colon", token)
		}
		switch key {
		case "action":
			if _, err := path.Match(value, ""); err != nil {
				return s, fmt.Errorf("%q: not a pattern such as pat.*", token)
			}
			if negated {
				s.notActions = append(s.notActions, value)
			} else {
				s.actions = append(s.actions, value)
			}
		case "target":
			if !slices.Contains(targetTypes, value) {
				return s, fmt.Errorf("%q: the target types are %s", token, strings.Join(targetTypes, ", "))
			}
			if negated {
				s.notTargets = append(s.notTargets, value)
			} else {
				s.targets = append(s.targets, value)
			}
		case "actor":
			if negated || s.actor != "" || len(value) > maxActorLen {
				return s, fmt.Errorf("%q: one actor:, without -, of at most %d characters", token, maxActorLen)
			}
			s.actor = value
		case "created":
			if negated {
				return s, fmt.Errorf("%q: created: cannot be negated", token)
			}
			if err := s.created(value); err != nil {
				return s, fmt.Errorf("%q: %w", token, err)
			}
		default:
			return s, fmt.Errorf("%q: unknown qualifier; the qualifiers are %s", token, strings.Join(searchKeys, ":, ")+":")
		}
	}
	return s, nil
}

// created narrows the range by a created: value: >=, >, <=, < or = a date
// (YYYY-MM-DD, a UTC day) or an RFC 3339 time, or DATE..DATE (both days
// included).
func (s *search) created(v string) error {
	const want = "want >=, >, <=, < or nothing, then a date (2026-11-01, a UTC day) or an RFC 3339 time, or DATE..DATE"
	if from, to, ok := strings.Cut(v, ".."); ok {
		lo, _, err1 := parseWhen(from)
		_, hi, err2 := parseWhen(to)
		if err1 != nil || err2 != nil {
			return fmt.Errorf("%s", want)
		}
		s.narrow(lo, hi)
		return nil
	}
	op := ""
	for _, o := range []string{">=", "<=", ">", "<"} {
		if strings.HasPrefix(v, o) {
			op, v = o, v[len(o):]
			break
		}
	}
	start, end, err := parseWhen(v)
	if err != nil {
		return fmt.Errorf("%s", want)
	}
	switch op {
	case ">=":
		s.narrow(start, time.Time{})
	case ">":
		s.narrow(end, time.Time{})
	case "<=":
		s.narrow(time.Time{}, end)
	case "<":
		s.narrow(time.Time{}, start)
	default:
		s.narrow(start, end)
	}
	return nil
}

// narrow keeps only [since, until) of the range; zero leaves a side as is.
func (s *search) narrow(since, until time.Time) {
	if since.After(s.since) {
		s.since = since
	}
	if !until.IsZero() && (s.until.IsZero() || until.Before(s.until)) {
		s.until = until
	}
}

// parseWhen reads a date as its UTC day [start, end), or a time as the
// instant it is (start) and the microsecond after it (end).
func parseWhen(v string) (start, end time.Time, err error) {
	if d, err := time.Parse(time.DateOnly, v); err == nil {
		return d, d.AddDate(0, 0, 1), nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return t, t, err
	}
	t = ceilMicrosecond(t).UTC()
	return t, t.Add(time.Microsecond), nil
}

// filtersActions says whether the search narrows the actions.
func (s search) filtersActions() bool {
	return len(s.actions)+len(s.notActions)+len(s.targets)+len(s.notTargets) > 0
}

// keeps says whether the search keeps action a. A pattern with * is a glob
// (pat.*); without, an exact name, or else free text found in the name.
func (s search) keeps(a store.Action, exact func(string) bool) bool {
	matches := func(pattern string) bool {
		if strings.Contains(pattern, "*") {
			ok, _ := path.Match(pattern, a.Action)
			return ok
		}
		if exact(pattern) {
			return a.Action == pattern
		}
		return strings.Contains(a.Action, strings.ToLower(pattern))
	}
	return (len(s.actions) == 0 || slices.ContainsFunc(s.actions, matches)) &&
		!slices.ContainsFunc(s.notActions, matches) &&
		(len(s.targets) == 0 || slices.Contains(s.targets, a.TargetType)) &&
		!slices.Contains(s.notTargets, a.TargetType)
}
