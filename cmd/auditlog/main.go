// Command auditlog runs the audit log: schema migrations, the read-only API
// with the retention worker, one-off retention passes, tokens, demo data and
// a local development setup. Run `auditlog help` for the commands.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"github.com/gin-gonic/gin"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(exitCode(err, os.Stderr))
}

// errNoCommand is running auditlog with no command: the usage is printed,
// and the exit status says it was a misuse.
var errNoCommand = errors.New("no command")

// exitCode is the status the process ends with after err, which it prints:
// 0 for success and for a usage asked for (-h), 2 for no command, 3 for a
// chain verify could not prove (evidence missing), 1 else.
func exitCode(err error, stderr io.Writer) int {
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errNoCommand):
		return 2
	}
	fmt.Fprintln(stderr, "auditlog:", err)
	if errors.Is(err, errUnproved) {
		return 3
	}
	return 1
}

// isHelp reports whether a command's first argument asks for its usage.
func isHelp(arg string) bool { return arg == "-h" || arg == "-help" || arg == "--help" }

// env carries what every command gets from main.
type env struct {
	stdout, stderr io.Writer
	logger         *slog.Logger
}

// quietLogger logs warnings and errors only, for commands that say what
// they do in plain lines of their own.
func (e env) quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type command struct {
	name, summary string
	run           func(ctx context.Context, e env, args []string) error
}

func commands() []command {
	return []command{
		{"migrate", "apply the schema migrations and install the SQL code package", runMigrate},
		{"serve", "serve the API (and run the retention worker, the sealer and the delivery worker unless told not to)", runServe},
		{"seal", "run the sealer on its own: seq and hash chain for every committed event, signed checkpoints", runSeal},
		{"deliver", "run the delivery worker on its own: the subscriptions' events to their webhooks, in seq order", runDeliver},
		{"subscriptions", "manage an org's subscriptions: subscriptions add|list|pause|resume|rm|test --org ID", runSubscriptions},
		{"retention", "run one retention pass now: retention run [--dry-run] [--now RFC3339]", runRetention},
		{"partitions", "list the leaves of each tier: range, expiry, rows and size; what keeps expired ones", runPartitions},
		{"verify", "recompute an org's hash chain and check it against the signed checkpoints", runVerify},
		{"import", "load events in bulk from NDJSON or the API's CSV export (as audit_maintainer)", runImport},
		{"demo", "fill the database with demo orgs and a year of their history (once)", runDemo},
		{"token", "mint a personal access token for an org member (token create), printed once", runToken},
		{"version", "print the module version and the VCS revision it was built from", runVersion},
		{"dev", "start a local PostgreSQL, migrate, load demo data and serve: what `make run` runs", runDev},
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	gin.SetMode(gin.ReleaseMode)
	e := env{stdout: stdout, stderr: stderr, logger: slog.New(slog.NewTextHandler(stderr, nil))}
	if len(args) == 0 || args[0] == "help" || isHelp(args[0]) {
		usage(stderr)
		if len(args) == 0 {
			return errNoCommand
		}
		return nil
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return c.run(ctx, e, args[1:])
		}
	}
	usage(stderr)
	return fmt.Errorf("unknown command %q", args[0])
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "Usage: auditlog <command> [flags]\n\nCommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-12s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun `auditlog <command> -h` for a command's flags. Flags fall back to environment variables (DATABASE_URL, ...).")
}

// newFlagSet returns a flag set for a subcommand that prints its usage to the
// command's stderr.
func newFlagSet(e env, name, synopsis string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		fmt.Fprintf(e.stderr, "Usage: auditlog %s %s\n\nFlags:\n", name, synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// envFloat is the environment variable's value as a number, or def when it
// is unset or not a number.
func envFloat(name string, def float64) float64 {
	if f, err := strconv.ParseFloat(envOr(name, ""), 64); err == nil {
		return f
	}
	return def
}

// envOr is the environment variable's value, or def when it is unset.
func envOr(name, def string) string {
	if v, ok := os.LookupEnv(name); ok && v != "" {
		return v
	}
	return def
}
