package api

import (
	"embed"
	"encoding/json"
	"io"
	"mime"
	"net/http"
	"path"
	"strings"

	"github.com/gin-gonic/gin"
)

// web holds the Activity page (Settings → Organization → Activity): plain
// HTML, CSS and JavaScript, embedded in the binary, reading the JSON API.
//
//go:embed web
var web embed.FS

// sessionCookie carries the personal access token a browser signed in
// with: HttpOnly, so the page's scripts never see it; SameSite=Strict and
// accepted on GET requests only, so no other site can make use of it; no
// expiry, so it ends with the browser session.
const sessionCookie = "auditlog_session"

// pageHeaders lock the page down: its own scripts and styles only, no
// framing, no referrer (URLs hold org ids and filters). (noSniff adds
// X-Content-Type-Options to every response.)
var pageHeaders = map[string]string{
	"Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; " +
		"img-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
	"Referrer-Policy": "no-referrer",
	"X-Frame-Options": "DENY",
	"Cache-Control":   "no-cache",
}

// activityPage serves GET /orgs/{id}/activity. The page is the same for
// every org and every visitor; what it shows comes from the API, which
// checks the token.
func (s *server) activityPage(c *gin.Context) {
	s.serveWebFile(c, "activity.html")
}

// staticFile serves GET /static/{file}: the page's CSS and JavaScript.
func (s *server) staticFile(c *gin.Context) {
	name := c.Param("file")
	if name == "activity.html" || strings.ContainsAny(name, `/\`) {
		s.writeProblem(c, errRouteNotFound)
		return
	}
	s.serveWebFile(c, name)
}

func (s *server) serveWebFile(c *gin.Context, name string) {
	b, err := web.ReadFile("web/" + name)
	if err != nil {
		s.writeProblem(c, errRouteNotFound)
		return
	}
	for k, v := range pageHeaders {
		c.Header(k, v)
	}
	c.Data(http.StatusOK, mime.TypeByExtension(path.Ext(name)), b)
}

// signInRequest is the body of POST /api/session.
type signInRequest struct {
	Token string `json:"token"`
}

// maxSignInBody bounds the body of a sign-in: a token is 49 bytes.
const maxSignInBody = 4 << 10

// signIn serves POST /api/session: a browser trades a personal access token
// for the session cookie. The token must be valid (unknown, expired or
// revoked: 401); whether its user may read an org is checked on each
// request, as with the Authorization header. Only JSON is accepted, which a
// form on another site cannot send without the browser asking first.
func (s *server) signIn(c *gin.Context) {
	mediaType, _, _ := mime.ParseMediaType(c.GetHeader("Content-Type"))
	if mediaType != "application/json" {
		s.writeProblem(c, newProblem(http.StatusUnsupportedMediaType, "unsupported-media-type",
			`send {"token": "<personal access token>"} as application/json`))
		return
	}
	var req signInRequest
	body, err := io.ReadAll(io.LimitReader(c.Request.Body, maxSignInBody+1))
	if err != nil || len(body) > maxSignInBody || json.Unmarshal(body, &req) != nil || strings.TrimSpace(req.Token) == "" {
		s.writeProblem(c, newProblem(http.StatusBadRequest, "invalid-body", `send {"token": "<personal access token>"}`))
		return
	}
	token := strings.TrimSpace(req.Token)
	if _, err := s.checkToken(c, token, ""); err != nil {
		s.fail(c, err)
		return
	}
	http.SetCookie(c.Writer, s.cookie(c, token, 0))
	c.Status(http.StatusNoContent)
}

// signOut serves DELETE /api/session: the browser forgets the cookie.
func (s *server) signOut(c *gin.Context) {
	http.SetCookie(c.Writer, s.cookie(c, "", -1))
	c.Status(http.StatusNoContent)
}

// cookie is the session cookie holding token; maxAge -1 deletes it, 0 makes
// it last the browser session. It is Secure when the request came over
// HTTPS, directly or through a proxy that says so.
func (s *server) cookie(c *gin.Context, token string, maxAge int) *http.Cookie {
	return &http.Cookie{
		Name: sessionCookie, Value: token, Path: "/", MaxAge: maxAge,
		HttpOnly: true, SameSite: http.SameSiteStrictMode,
		Secure: c.Request.TLS != nil || strings.EqualFold(c.GetHeader("X-Forwarded-Proto"), "https"),
	}
}

// requestToken is the personal access token of a request: the
// Authorization header's, else, on a GET, the session cookie's.
func requestToken(c *gin.Context) string {
	if scheme, token, _ := strings.Cut(c.GetHeader("Authorization"), " "); strings.EqualFold(scheme, "Bearer") {
		return strings.TrimSpace(token)
	}
	if c.Request.Method == http.MethodGet || c.Request.Method == http.MethodHead {
		if token, err := c.Cookie(sessionCookie); err == nil {
			return token
		}
	}
	return ""
}
