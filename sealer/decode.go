package sealer

import (
	"encoding/json"
	"fmt"
	"net/url"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/auditlog/auditlog/internal/store"
)

var typeMap = pgtype.NewMap()

// decodeEvent reads an inserted row of a tier table, in pgoutput's text
// format, as an event.
func decodeEvent(rel *pglogrepl.RelationMessage, tuple *pglogrepl.TupleData) (store.Event, error) {
	var e store.Event
	if tuple == nil || len(tuple.Columns) != len(rel.Columns) {
		return e, fmt.Errorf("decode %s.%s: tuple does not match its relation", rel.Namespace, rel.RelationName)
	}
	for i, col := range tuple.Columns {
		name := rel.Columns[i].Name
		if col.DataType == pglogrepl.TupleDataTypeNull {
			continue
		}
		if col.DataType != pglogrepl.TupleDataTypeText {
			return e, fmt.Errorf("decode %s.%s: column %s is not in text form", rel.Namespace, rel.RelationName, name)
		}
		text := string(col.Data)
		switch name {
		case "id":
			e.ID = text
		case "org_id":
			e.OrgID = text
		case "occurred_at":
			var t time.Time
			if err := typeMap.Scan(rel.Columns[i].DataType, pgtype.TextFormatCode, col.Data, &t); err != nil {
				return e, fmt.Errorf("decode occurred_at %q: %w", text, err)
			}
			e.OccurredAt = t
		case "action":
			e.Action = text
		case "target_type":
			e.TargetType = text
		case "target_id":
			e.TargetID = &text
		case "actor_type":
			e.ActorType = text
		case "actor_id":
			e.ActorID = &text
		case "actor_email":
			e.ActorEmail = &text
		case "ip":
			e.IP = &text
		case "user_agent":
			e.UserAgent = &text
		case "request_id":
			e.RequestID = &text
		case "metadata":
			e.Metadata = json.RawMessage(text)
		default:
			return e, fmt.Errorf("decode %s.%s: unknown column %s", rel.Namespace, rel.RelationName, name)
		}
	}
	if e.ID == "" || e.OrgID == "" {
		return e, fmt.Errorf("decode %s.%s: row without id or org_id", rel.Namespace, rel.RelationName)
	}
	return e, nil
}

// replicationURL is the database URL asking for a logical replication
// connection, in UTC so timestamps decode the same whatever the server's
// time zone.
func replicationURL(databaseURL string) (string, error) {
	u, err := url.Parse(databaseURL)
	if err != nil {
		return "", fmt.Errorf("sealer: database URL: %w", err)
	}
	q := u.Query()
	q.Set("replication", "database")
	q.Set("timezone", "UTC")
	u.RawQuery = q.Encode()
	return u.String(), nil
}
