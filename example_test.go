package auditlog_test

import (
	"context"
	"fmt"
	"log"
	"net/netip"
	"os"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/auditlog/auditlog"
	"github.com/auditlog/auditlog/internal/testdb"
)

// exampleURL is a migrated database for the examples, made by TestMain.
var exampleURL string

func TestMain(m *testing.M) {
	url, drop, err := testdb.Create(context.Background())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	exampleURL = url
	pool, err := pgxpool.New(context.Background(), url)
	if err == nil {
		_, err = pool.Exec(context.Background(), `
			INSERT INTO cloud.orgs (id, name, plan) VALUES ('7d3c0f3e-3b7e-4f5c-9a53-5a0f4e2b6c11', 'Acme', 'team');
			INSERT INTO cloud.users (id, email) VALUES ('2f1d5c4b-8a9e-4b7f-a1c3-d4e5f6a7b8c9', 'ann@acme.example')`)
		pool.Close()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	testdb.Main(m, drop)
}

// Recording a cluster rename, with its audit event, in one transaction.
func Example() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, exampleURL) // as a role granted audit_writer
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()

	orgID := "7d3c0f3e-3b7e-4f5c-9a53-5a0f4e2b6c11"
	userID := "2f1d5c4b-8a9e-4b7f-a1c3-d4e5f6a7b8c9"

	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		// ... the action itself: UPDATE clusters SET name = 'prod-eu' ...

		// The event, with the request it comes from: one statement.
		_, err := auditlog.Record(ctx, tx, auditlog.Context{
			Actor:     auditlog.Actor{ID: userID, ViaPAT: "deploy-bot"},
			IP:        netip.MustParseAddr("198.51.100.4"),
			UserAgent: "radar-cli/2.1",
		}, auditlog.Event{
			OrgID:    orgID,
			Action:   auditlog.ClusterUpdated,
			TargetID: "cl_8f2a",
			Metadata: map[string]any{"changes": map[string]any{"name": []string{"prod", "prod-eu"}}},
		})
		return err // a refused event rolls the action back too
	})
	if err != nil {
		log.Fatal(err)
	}

	var action, actor, metadata string
	err = pool.QueryRow(ctx, `SELECT action, actor_email, metadata::text FROM audit.events
		WHERE org_id = $1 ORDER BY occurred_at DESC LIMIT 1`, orgID).Scan(&action, &actor, &metadata)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(action, "by", actor)
	fmt.Println(metadata)
	// Output:
	// cluster.updated by ann@acme.example
	// {"changes": {"name": ["prod", "prod-eu"]}, "via_pat": "deploy-bot"}
}
