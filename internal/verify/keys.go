package verify

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
)

// lineFields are the keys of an export's or a saved feed's line.
var lineFields = append([]string{"manifest"}, csvColumns...)

// jsonFrame is an object or array checkKeys is in.
type jsonFrame struct {
	keys    map[string]bool // nil: an array
	wantKey bool
}

// checkKeys refuses a JSON value that encoding/json reads otherwise than
// other tools do, so that a changed value could sit beside the sealed one
// and still verify: a key twice in one object (encoding/json keeps the
// last, some tools the first), or, at the top level, one of fields in
// another case (encoding/json takes "Action" for "action"; other tools read
// them as two keys). The export writes neither. Invalid JSON is left to the
// decoder to report.
func checkKeys(b []byte, fields []string) error {
	if !json.Valid(b) { // also bounds the nesting (10,000), so the stack below
		return nil
	}
	var stack []*jsonFrame
	// A value ended: the object it is in expects a key next.
	valueDone := func() {
		if n := len(stack); n > 0 && stack[n-1].keys != nil {
			stack[n-1].wantKey = true
		}
	}
	d := json.NewDecoder(bytes.NewReader(b))
	for {
		tok, err := d.Token()
		if err != nil {
			return nil
		}
		if n := len(stack); n > 0 && stack[n-1].keys != nil && stack[n-1].wantKey {
			top := stack[n-1]
			key, ok := tok.(string)
			if !ok { // the object's '}'
				stack = stack[:n-1]
				valueDone()
				continue
			}
			if top.keys[key] {
				return fmt.Errorf("the key %q twice in one object: tools differ on which value they read", key)
			}
			if n == 1 {
				for _, f := range fields {
					if key != f && strings.EqualFold(key, f) {
						return fmt.Errorf("the key %q, field %q in another case: tools differ on whether it is that field", key, f)
					}
				}
			}
			top.keys[key], top.wantKey = true, false
			continue
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, &jsonFrame{keys: map[string]bool{}, wantKey: true})
			continue
		case json.Delim('['):
			stack = append(stack, &jsonFrame{})
			continue
		case json.Delim(']'):
			stack = stack[:len(stack)-1]
		}
		valueDone()
	}
}
