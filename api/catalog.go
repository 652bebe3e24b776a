package api

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/auditlog/auditlog/internal/store"
)

// catalogTTL is how long the catalog is cached: it changes only when a new
// version is migrated.
const catalogTTL = time.Minute

// catalog caches audit.actions.
type catalog struct {
	store *store.Store
	now   func() time.Time

	mu      sync.Mutex
	loaded  time.Time
	actions []store.Action
}

// get returns the catalog, from the cache while it is fresh. If reloading
// fails, a stale copy is better than an error.
func (c *catalog) get(ctx context.Context) ([]store.Action, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.actions != nil && c.now().Sub(c.loaded) < catalogTTL {
		return c.actions, nil
	}
	actions, err := c.store.Actions(ctx)
	if err != nil {
		if c.actions != nil {
			return c.actions, nil
		}
		return nil, err
	}
	c.actions, c.loaded = actions, c.now()
	return actions, nil
}

// filtersActions says whether the parameters narrow the actions.
func (p filterParams) filtersActions() bool {
	return p.action != "" || p.targetType != "" || p.search.filtersActions()
}

// actionFilter turns the action, target_type and q parameters into the
// actions to keep; nil keeps every action. action is an exact action name,
// or else free text matched case-insensitively against the names (token
// finds cluster.token_rotated); q's qualifiers narrow further.
func actionFilter(actions []store.Action, p filterParams) []string {
	if !p.filtersActions() {
		return nil
	}
	isAction := func(name string) bool {
		return slices.ContainsFunc(actions, func(a store.Action) bool { return a.Action == name })
	}
	exact := isAction(p.action)
	needle := strings.ToLower(p.action)
	keep := []string{}
	for _, a := range actions {
		switch {
		case p.targetType != "" && a.TargetType != p.targetType:
		case p.action != "" && exact && a.Action != p.action:
		case p.action != "" && !exact && !strings.Contains(a.Action, needle):
		case !p.search.keeps(a, isAction):
		default:
			keep = append(keep, a.Action)
		}
	}
	return keep
}

// listActions serves GET /api/audit/actions: the catalog, for the action
// dropdown.
func (s *server) listActions(c *gin.Context) {
	ctx, cancel := s.queryContext(c)
	defer cancel()
	actions, err := s.catalog.get(ctx)
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"actions": actions})
}

// keyring holds the cursor key, read once from the database.
type keyring struct {
	store *store.Store

	mu  sync.Mutex
	key []byte
}

func (k *keyring) cursorKey(ctx context.Context) ([]byte, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.key == nil {
		key, err := k.store.Key(ctx, "cursor")
		if err != nil {
			return nil, err
		}
		k.key = key
	}
	return k.key, nil
}
