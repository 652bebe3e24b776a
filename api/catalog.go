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

// actionFilter turns the action and target_type parameters into the actions
// to keep; nil keeps every action. action is an exact action name, or else
// free text matched case-insensitively against the names (token finds
// cluster.token_rotated).
func actionFilter(actions []store.Action, action, targetType string) []string {
	if action == "" && targetType == "" {
		return nil
	}
	exact := slices.ContainsFunc(actions, func(a store.Action) bool { return a.Action == action })
	needle := strings.ToLower(action)
	keep := []string{}
	for _, a := range actions {
		switch {
		case targetType != "" && a.TargetType != targetType:
		case action != "" && exact && a.Action != action:
		case action != "" && !exact && !strings.Contains(a.Action, needle):
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
