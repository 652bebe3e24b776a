// Package sentence writes an event as the catalog's sentence for its action
// says (audit.action_sentences, served with GET /api/audit/actions), as the
// Activity page does in activity.js: so Slack messages and the page read
// the same.
package sentence

import (
	"bytes"
	"encoding/json"
	"regexp"
	"strconv"
	"strings"

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
// missing. Without a template it is who acted and the action's code. text
// escapes the template's text and the values for the message's markup.
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
		return show(metadata[key])
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

// show writes a metadata value as the page does (JavaScript's String()):
// false when it is missing, null or empty.
func show(raw json.RawMessage) (string, bool) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" || string(raw) == `""` {
		return "", false
	}
	switch raw[0] {
	case '"':
		var s string
		err := json.Unmarshal(raw, &s)
		return s, err == nil
	case '{':
		return strings.Join(objectKeys(raw), ", "), true
	case '[':
		var items []json.RawMessage
		json.Unmarshal(raw, &items)
		shown := make([]string, len(items))
		for i, item := range items {
			shown[i], _ = show(item)
		}
		return strings.Join(shown, ", "), true
	}
	if f, err := strconv.ParseFloat(string(raw), 64); err == nil {
		return strconv.FormatFloat(f, 'f', -1, 64), true
	}
	return string(raw), true // true or false
}

// objectKeys are a JSON object's keys, in their order.
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
	return keys
}
