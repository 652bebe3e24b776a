package api

import (
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/cases"
	"golang.org/x/text/language"

	"github.com/auditlog/auditlog/internal/store"
)

// search is the q parameter parsed: GitHub-style qualifiers, e.g.
// `action:pat.* actor:ada@example.com target:cluster created:>=2026-11-01
// -action:auth.*`. A word without a qualifier is matched against action
// names, as the action parameter is; a "phrase in quotes" is matched as
// written.
type search struct {
	actions    []actionTerm // an event's action must match one of these
	notActions []actionTerm // and none of these
	targets    []string     // target types it must be one of
	notTargets []string
	actor      string
	since      time.Time // zero: none
	until      time.Time // zero: none
	created    []string  // the created: terms, named as errors name them
}

// Bounds of q: characters, as OpenAPI's maxLength counts, and terms.
const (
	maxSearchLen    = 500
	maxSearchTokens = 20
)

// searchKeys are the qualifiers, as docs/api.md lists them; a term's
// qualifier is read in any case (ACTOR: is actor:).
var searchKeys = []string{"action", "actor", "target", "created"}

// notWildcards are what other globs read as wildcards or escapes: q
// refuses them outside quotes rather than match them as text no action name
// holds (* is its one wildcard).
const notWildcards = `?[]\`

// parseSearch parses q; an error names the token at fault.
func parseSearch(q string) (search, error) {
	var s search
	if utf8.RuneCountInString(q) > maxSearchLen {
		return s, fmt.Errorf("longer than %d characters", maxSearchLen)
	}
	tokens, err := searchTokens(q)
	if err != nil {
		return s, err
	}
	if len(tokens) > maxSearchTokens {
		return s, fmt.Errorf("more than %d terms", maxSearchTokens)
	}
	for _, token := range tokens {
		negated, key, value, quoted, err := splitToken(token)
		if err != nil {
			return s, fmt.Errorf("%s: %w", named(token), err)
		}
		switch key {
		case "action":
			if !quoted && strings.ContainsAny(value, notWildcards) {
				return s, fmt.Errorf(`%s: only * is a wildcard (any text), not ?, [, ] or \; in "quotes" they are text`, named(token))
			}
			t := actionTerm{text: lower(value), phrase: quoted}
			if negated {
				s.notActions = append(s.notActions, t)
			} else {
				s.actions = append(s.actions, t)
			}
		case "target":
			value = lower(value)
			if !slices.Contains(targetTypes, value) {
				return s, fmt.Errorf("%s: the target types are %s", named(token), strings.Join(targetTypes, ", "))
			}
			if negated {
				s.notTargets = append(s.notTargets, value)
			} else {
				s.targets = append(s.targets, value)
			}
		case "actor":
			if negated || s.actor != "" || len(value) > maxActorLen {
				return s, fmt.Errorf("%s: one actor:, without -, of at most %d characters", named(token), maxActorLen)
			}
			s.actor = value
		case "created":
			if negated {
				return s, fmt.Errorf("%s: created: cannot be negated", named(token))
			}
			if err := s.narrowCreated(value); err != nil {
				return s, fmt.Errorf("%s: %w", named(token), err)
			}
			s.created = append(s.created, named(token))
		default:
			return s, fmt.Errorf("%s: unknown qualifier; the qualifiers are %s", named(token), strings.Join(searchKeys, ":, ")+":")
		}
	}
	return s, nil
}

// narrowCreated narrows the range by a created: value: >=, >, <=, < or = a date
// (YYYY-MM-DD, a UTC day) or an RFC 3339 time, or DATE..DATE (both days
// included).
func (s *search) narrowCreated(v string) error {
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
// first of PostgreSQL's microseconds at or after it (start) and the first
// after it (end): between two microseconds, both are the later one.
func parseWhen(v string) (start, end time.Time, err error) {
	if d, err := time.Parse(time.DateOnly, v); err == nil {
		return d, d.AddDate(0, 0, 1), nil
	}
	t, err := time.Parse(time.RFC3339Nano, strings.ToUpper(v)) // RFC 3339 allows t and z
	if err != nil {
		return t, t, err
	}
	t = t.UTC()
	return ceilMicrosecond(t), t.Truncate(time.Microsecond).Add(time.Microsecond), nil
}

// filtersActions says whether the search narrows the actions.
func (s search) filtersActions() bool {
	return len(s.actions)+len(s.notActions)+len(s.targets)+len(s.notTargets) > 0
}

// actionTerm is an action: term or a word of q, in lower case.
type actionTerm struct {
	text   string
	phrase bool // quoted: found as written in the name or the description
}

// keeps says whether the search keeps action a. A phrase is found as
// written in the action's name or its description; else a term with * is a
// glob (pat.*), an action's name the action alone, and other text is found
// in the name. Each ignores case.
func (s search) keeps(a store.Action, exact func(string) bool) bool {
	name := lower(a.Action)
	matches := func(t actionTerm) bool {
		switch {
		case t.phrase:
			return strings.Contains(name, t.text) || strings.Contains(lower(a.Description), t.text)
		case strings.Contains(t.text, "*"):
			ok, _ := path.Match(t.text, name)
			return ok
		case exact(t.text):
			return name == t.text
		}
		return strings.Contains(name, t.text)
	}
	return (len(s.actions) == 0 || slices.ContainsFunc(s.actions, matches)) &&
		!slices.ContainsFunc(s.notActions, matches) &&
		(len(s.targets) == 0 || slices.Contains(s.targets, a.TargetType)) &&
		!slices.Contains(s.notTargets, a.TargetType)
}

// lower is s in lower case as the actor filter lowers it: by the rules of
// the root locale (PostgreSQL's lower() by the ICU root collation), beyond
// ASCII too (ΣΟΦΟΣ is σοφος, with its final sigma).
func lower(s string) string {
	return cases.Lower(language.Und).String(s)
}

// searchTokens splits q into its terms at spaces outside double quotes; a
// quote left open is an error that names its term.
func searchTokens(q string) ([]string, error) {
	var tokens []string
	start, open := -1, false
	for i, r := range q {
		switch {
		case r == '"':
			open = !open
		case unicode.IsSpace(r) && !open:
			if start >= 0 {
				tokens = append(tokens, q[start:i])
			}
			start = -1
			continue
		}
		if start < 0 {
			start = i
		}
	}
	if open {
		return nil, fmt.Errorf("%s: no closing quote; a phrase is \"in quotes\"", named(q[start:]))
	}
	if start >= 0 {
		tokens = append(tokens, q[start:])
	}
	return tokens, nil
}

// named quotes a term for an error message: in double quotes, or in single
// quotes when it holds a double quote itself (which %q would escape).
func named(term string) string {
	if strings.Contains(term, `"`) {
		return "'" + term + "'"
	}
	return strconv.Quote(term)
}

// splitToken reads a term: an optional -, an optional qualifier (in lower
// case) and its colon (none is action:), and the value, which may be a
// whole "phrase in quotes".
func splitToken(token string) (negated bool, key, value string, quoted bool, err error) {
	rest, negated := strings.CutPrefix(token, "-")
	if rest == "" {
		return false, "", "", false, fmt.Errorf("nothing after the -")
	}
	key, value, qualified := strings.Cut(rest, ":")
	if !qualified || strings.Contains(key, `"`) { // a colon in a phrase is the phrase's
		key, value = "action", rest
	}
	key = lower(key)
	if strings.Contains(value, `"`) {
		inner, ok := strings.CutPrefix(value, `"`)
		inner, ok2 := strings.CutSuffix(inner, `"`)
		if !ok || !ok2 || strings.Contains(inner, `"`) {
			return false, "", "", false, fmt.Errorf(`quotes go around a whole phrase or value, as "token revoked" or actor:"ada@example.com"`)
		}
		value, quoted = strings.Join(strings.Fields(inner), " "), true
	}
	if value == "" {
		if quoted {
			return false, "", "", false, fmt.Errorf("nothing in the quotes")
		}
		return false, "", "", false, fmt.Errorf("nothing after the colon")
	}
	return negated, key, value, quoted, nil
}
