package api

import (
	"github.com/gin-gonic/gin"
	"github.com/google/uuid"

	"github.com/auditlog/auditlog/internal/store"
)

// principalKey is where authenticate leaves the caller in the gin context.
const principalKey = "auditlog.principal"

// orgKey is where authenticate leaves the org of the path, if it parsed.
const orgKey = "auditlog.org"

// authenticate requires a personal access token, in `Authorization: Bearer
// <token>` or the Activity page's session cookie: a missing, unknown,
// expired or revoked token is a 401. For a path naming an org it also finds
// the caller's role there, for requireOwner.
func (s *server) authenticate(c *gin.Context) {
	token := requestToken(c)
	if token == "" {
		s.writeProblem(c, unauthorized("send a personal access token: Authorization: Bearer <token> (auditlog token create)"))
		return
	}
	var org string
	if raw := c.Param("id"); raw != "" {
		// A malformed id is no org at all: a 404 once the token is checked.
		if id, err := uuid.Parse(raw); err == nil {
			c.Set(orgKey, id)
			org = id.String()
		}
	}
	p, err := s.checkToken(c, token, org)
	if err != nil {
		s.fail(c, err)
		return
	}
	c.Set(principalKey, p)
	c.Next()
}

// requireOwner lets only the org's owners through: another member gets a
// 403, and anyone else a 404, as if the org did not exist.
func (s *server) requireOwner(c *gin.Context) {
	switch principalOf(c).Role {
	case "owner":
		c.Next()
	case "":
		s.writeProblem(c, errOrgNotFound)
	default:
		s.writeProblem(c, errForbidden)
	}
}

func principalOf(c *gin.Context) store.Principal {
	p, _ := c.Get(principalKey)
	return p.(store.Principal)
}

// orgOf is the org of the path; only called after requireOwner, which
// ensures it parsed.
func orgOf(c *gin.Context) uuid.UUID {
	id, _ := c.Get(orgKey)
	return id.(uuid.UUID)
}
