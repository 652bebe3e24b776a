package api

import (
	"encoding/json"
	"net/http"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"

	"github.com/auditlog/auditlog/internal/store"
)

// openAPIDoc is the part of the document the test checks.
type openAPIDoc struct {
	OpenAPI string `json:"openapi"`
	Paths   map[string]map[string]struct {
		Parameters []struct {
			Name   string `json:"name"`
			In     string `json:"in"`
			Schema schema `json:"schema"`
		} `json:"parameters"`
		Responses map[string]any `json:"responses"`
	} `json:"paths"`
	Components struct {
		Schemas map[string]schema `json:"schemas"`
	} `json:"components"`
}

type schema struct {
	Enum       []string          `json:"enum"`
	Minimum    *int              `json:"minimum"`
	Maximum    *int              `json:"maximum"`
	Default    any               `json:"default"`
	Required   []string          `json:"required"`
	Properties map[string]schema `json:"properties"`
	Items      *schema           `json:"items"`
	AllOf      []schema          `json:"allOf"`
}

// jsonFields are the JSON names of a struct's fields.
func jsonFields(t reflect.Type) []string {
	var names []string
	for f := range t.Fields() {
		if name := strings.Split(f.Tag.Get("json"), ",")[0]; name != "" {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}

func keys[V any](m map[string]V) []string {
	var k []string
	for name := range m {
		k = append(k, name)
	}
	slices.Sort(k)
	return k
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// TestOpenAPIMatchesServer keeps openapi.json true: the routes served, the
// query parameters and their allowed values, and the properties of every
// body are the ones the code has.
// pathParam is a parameter of a Gin route, :name, which OpenAPI writes {name}.
var pathParam = regexp.MustCompile(`:(\w+)`)

func TestOpenAPIMatchesServer(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	resp, body := b.get(t, "/api/openapi.json", "")
	if resp.StatusCode != http.StatusOK || string(body) != string(openAPI) {
		t.Fatalf("GET /api/openapi.json: %d", resp.StatusCode)
	}
	var doc openAPIDoc
	if err := json.Unmarshal(openAPI, &doc); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.1.") {
		t.Errorf("openapi %q", doc.OpenAPI)
	}

	var routes, documented []string
	for _, r := range New(Config{}).(*gin.Engine).Routes() {
		routes = append(routes, r.Method+" "+pathParam.ReplaceAllString(r.Path, "{$1}"))
	}
	for path, ops := range doc.Paths {
		for method := range ops {
			documented = append(documented, strings.ToUpper(method)+" "+path)
		}
	}
	if !slices.Equal(sorted(routes), sorted(documented)) {
		t.Errorf("routes %v, documented %v", sorted(routes), sorted(documented))
	}

	list := doc.Paths["/api/orgs/{id}/audit"]["get"]
	var query []string
	params := map[string]schema{}
	for _, p := range list.Parameters {
		params[p.Name] = p.Schema
		if p.In == "query" {
			query = append(query, p.Name)
		}
	}
	if !slices.Equal(sorted(query), sorted(listParamNames)) {
		t.Errorf("query parameters: documented %v, parsed %v", sorted(query), sorted(listParamNames))
	}
	for name, want := range map[string][]string{"target_type": targetTypes, "range": keys(ranges), "format": formats} {
		if !slices.Equal(sorted(params[name].Enum), sorted(want)) {
			t.Errorf("%s: documented %v, accepted %v", name, params[name].Enum, want)
		}
	}
	if l := params["limit"]; l.Minimum == nil || *l.Minimum != 1 || l.Maximum == nil || *l.Maximum != maxLimit || l.Default != float64(defaultLimit) {
		t.Errorf("limit: documented %+v, want 1..%d default %d", l, maxLimit, defaultLimit)
	}
	for _, status := range []string{"200", "400", "401", "403", "404", "429", "503"} {
		if list.Responses[status] == nil {
			t.Errorf("listEvents does not document %s", status)
		}
	}

	schemas := doc.Components.Schemas
	for name, typ := range map[string]reflect.Type{
		"Event": reflect.TypeFor[store.Event](), "Page": reflect.TypeFor[page](),
		"Action": reflect.TypeFor[store.Action](), "Problem": reflect.TypeFor[problem](),
		"Summary": reflect.TypeFor[summary](), "SignIn": reflect.TypeFor[signInRequest](),
		"Manifest": reflect.TypeFor[store.Manifest](),
		"Stream":   reflect.TypeFor[store.Stream](), "DeliveryAttempt": reflect.TypeFor[store.Attempt](),
	} {
		if got := keys(schemas[name].Properties); !slices.Equal(got, jsonFields(typ)) {
			t.Errorf("%s: documented %v, served %v", name, got, jsonFields(typ))
		}
	}
	// The summary's org and its buckets (start and end, kept_since): every
	// field served, documented and required.
	for name, typ := range map[string]reflect.Type{"org": reflect.TypeFor[orgSummary](), "days": reflect.TypeFor[bucketCount]()} {
		s := schemas["Summary"].Properties[name]
		if s.Items != nil {
			s = *s.Items
		}
		if got := keys(s.Properties); !slices.Equal(got, jsonFields(typ)) || !slices.Equal(sorted(s.Required), jsonFields(typ)) {
			t.Errorf("Summary %s: documented %v, required %v, served %v", name, got, s.Required, jsonFields(typ))
		}
	}
	if got := keys(schemas["Problem"].Properties["invalid_params"].Items.Properties); !slices.Equal(got, jsonFields(reflect.TypeFor[invalidParam]())) {
		t.Errorf("invalid_params items: documented %v", got)
	}
	// A listed event is an Event and its seal.
	if l := schemas["ListedEvent"]; len(l.AllOf) != 2 || !slices.Equal(keys(l.AllOf[1].Properties), jsonFields(reflect.TypeFor[store.ListedEvent]())) {
		t.Errorf("ListedEvent: documented %+v, served an Event and %v", l, jsonFields(reflect.TypeFor[store.ListedEvent]()))
	}
	// An exported event is a listed event and its sentence.
	if x := schemas["ExportedEvent"]; len(x.AllOf) != 2 || !slices.Equal(keys(x.AllOf[1].Properties), jsonFields(reflect.TypeFor[store.ExportedEvent]())) {
		t.Errorf("ExportedEvent: documented %+v, served a ListedEvent and %v", x, jsonFields(reflect.TypeFor[store.ExportedEvent]()))
	}
	if got := sorted(schemas["Event"].Required); !slices.Equal(got, sorted(eventColumns())) {
		t.Errorf("Event required %v, want every column %v", got, eventColumns())
	}
	if !slices.Equal(sorted(schemas["Event"].Properties["target_type"].Enum), sorted(targetTypes)) {
		t.Error("Event target_type enum differs from the target_type parameter's")
	}
}
