// Package sentence writes an event as the catalog's sentence for its action
// says (audit.action_sentences, served with GET /api/audit/actions), as the
// Activity page does in activity.js: so Slack messages and the page read
// the same.
package sentence

import (
	"bytes"
	"cmp"
	"encoding/json"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode"

	"github.com/auditlog/auditlog/internal/store"
)

// placeholder is {key} or {key|key...} in a template.
var placeholder = regexp.MustCompile(`\{([a-z_|]+)\}`)

// Actor names who acted, as the page shows them: System, the email, the id,
// or Unknown user.
func Actor(e store.Event) string {
	switch {
	case e.ActorType == "system":
		return "System"
	case e.ActorEmail != nil && *e.ActorEmail != "":
		return *e.ActorEmail
	case e.ActorID != nil && *e.ActorID != "":
		return *e.ActorID
	}
	return "Unknown user"
}

// Render writes event e by template: {actor} is who acted, passed through
// actor (to set it in bold), {target} the target's id, {action} the action,
// any other {key} the metadata's value (an object's keys, a list's items,
// joined by commas), {a|b} the first of them present, and … one that is
// missing (or shows as nothing). Control and bidirectional formatting
// characters in a value show as U+FFFD: a value cannot start a line of its
// own in a message or reorder the sentence around it. Without a template it
// is who acted and the action's code. text escapes the template's text and
// the values for the message's markup.
func Render(template string, e store.Event, actor, text func(string) string) string {
	if template == "" {
		template = "{actor} {action}"
	}
	var metadata map[string]json.RawMessage
	json.Unmarshal(e.Metadata, &metadata) // not an object: no values
	value := func(key string) (string, bool) {
		switch key {
		case "actor":
			return Actor(e), true
		case "target":
			return deref(e.TargetID)
		case "action":
			return e.Action, true
		}
		v := show(metadata[key])
		return v, v != ""
	}
	var b strings.Builder
	at := 0
	for _, m := range placeholder.FindAllStringSubmatchIndex(template, -1) {
		b.WriteString(text(template[at:m[0]]))
		keys := template[m[2]:m[3]]
		v := "…"
		for key := range strings.SplitSeq(keys, "|") {
			if s, ok := value(key); ok {
				v = s
				break
			}
		}
		v = strings.Map(visible, v)
		if keys == "actor" {
			b.WriteString(actor(text(v)))
		} else {
			b.WriteString(text(v))
		}
		at = m[1]
	}
	b.WriteString(text(template[at:]))
	return b.String()
}

func deref(s *string) (string, bool) {
	if s == nil || *s == "" {
		return "", false
	}
	return *s, true
}

// visible is r, or U+FFFD for a control or bidirectional formatting
// character (activity.js's hidden).
func visible(r rune) rune {
	switch {
	case unicode.IsControl(r), r == '\u061c', r == '\u200e', r == '\u200f',
		r >= '\u202a' && r <= '\u202e', r >= '\u2066' && r <= '\u2069':
		return '\ufffd'
	}
	return r
}

// show writes a metadata value as the page does (activity.js's shown): a
// string as it is, a number as JavaScript writes it, true or false, an
// object's keys, a list's items each shown so, joined by commas; null or
// missing is "".
func show(raw json.RawMessage) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return ""
	}
	switch raw[0] {
	case '"':
		var s string
		json.Unmarshal(raw, &s)
		return s
	case '{':
		return strings.Join(objectKeys(raw), ", ")
	case '[':
		var items []json.RawMessage
		json.Unmarshal(raw, &items)
		shown := make([]string, len(items))
		for i, item := range items {
			shown[i] = show(item)
		}
		return strings.Join(shown, ", ")
	case 'n':
		return ""
	}
	if f, err := strconv.ParseFloat(string(raw), 64); err == nil {
		return jsNumber(f)
	}
	return string(raw) // true or false
}

// jsNumber writes f as JavaScript's String() does: in decimal from 1e-6 to
// below 1e21, else as 1e+21 or 1.5e-7.
func jsNumber(f float64) string {
	if a := math.Abs(f); a == 0 || (a >= 1e-6 && a < 1e21) {
		return strconv.FormatFloat(f+0, 'f', -1, 64) // +0: -0 is 0
	}
	mantissa, exp, _ := strings.Cut(strconv.FormatFloat(f, 'e', -1, 64), "e")
	return mantissa + "e" + exp[:1] + strings.TrimLeft(exp[1:], "0")
}

// objectKeys are a JSON object's keys in JavaScript's order (Object.keys):
// array indexes first, in numeric order, then the others as they come.
func objectKeys(raw json.RawMessage) []string {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.Token() // {
	var keys []string
	for dec.More() {
		key, err := dec.Token()
		if err != nil {
			break
		}
		keys = append(keys, key.(string))
		var skip json.RawMessage
		if dec.Decode(&skip) != nil {
			break
		}
	}
	slices.SortStableFunc(keys, func(a, b string) int {
		i, aIndex := arrayIndex(a)
		j, bIndex := arrayIndex(b)
		switch {
		case aIndex && bIndex:
			return cmp.Compare(i, j)
		case aIndex:
			return -1
		case bIndex:
			return 1
		}
		return 0
	})
	return keys
}

// arrayIndex reads key as JavaScript's array index, if it is one: a
// canonical whole number below 2^32-1.
func arrayIndex(key string) (uint64, bool) {
	n, err := strconv.ParseUint(key, 10, 32)
	return n, err == nil && n < 1<<32-1 && strconv.FormatUint(n, 10) == key
}
