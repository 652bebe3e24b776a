package demo

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/auditlog/auditlog"
	"github.com/auditlog/auditlog/internal/pat"
)

// stripe is the billing provider's webhook: a system actor.
var stripe = client{userAgent: "Stripe/1.0 (+https://stripe.com/docs/webhooks)"}

// request is who sends a control-plane request, from what, and with which
// personal access token if any (empty: a browser session).
type request struct {
	who    *person // nil: the platform itself
	client client
	pat    string
}

// do runs one control-plane request the way the control plane does: a
// transaction that sets the actor context (user, PAT, IP, user agent, request
// id), performs the mutation and records its events, or does nothing at all.
func (r *runner) do(ctx context.Context, req request, fn func(tx pgx.Tx) error) error {
	return pgx.BeginFunc(ctx, r.tx, func(tx pgx.Tx) error {
		c := auditlog.Context{UserAgent: req.client.userAgent, RequestID: r.requestID(), IP: req.client.ip}
		if req.who != nil {
			c.Actor = auditlog.Actor{ID: req.who.id, ViaPAT: req.pat}
			if !c.IP.IsValid() {
				c.IP = userIP(req.who.email)
			}
		}
		if err := auditlog.SetContext(ctx, tx, c); err != nil {
			return err
		}
		return fn(tx)
	})
}

// log records one event in the request's transaction.
func (r *runner) log(ctx context.Context, tx pgx.Tx, org string, action auditlog.Action, target string, metadata map[string]any) error {
	if _, err := auditlog.Log(ctx, tx, auditlog.Event{OrgID: org, Action: action, TargetID: target, Metadata: metadata}); err != nil {
		return err
	}
	r.recorded++
	return nil
}

// step is one request of the live part.
type step struct {
	what string
	req  request
	fn   func(ctx context.Context, tx pgx.Tx) error
}

// live is the recent part: the last few minutes of the control plane, every
// kind of action of the catalog, made through the same code paths a real
// control plane would use.
func (r *runner) live(ctx context.Context) error {
	nw, gx, pp, it := world[0], world[1], world[2], world[3]
	p := func(o *orgSpec, name string) *person { return r.people[o.email(name)] }
	ada, grace, linus, margaret, barbara, ken := p(nw, "ada"), p(nw, "grace"), p(nw, "linus"), p(nw, "margaret"), p(nw, "barbara"), p(nw, "ken")
	var (
		alanInvite, contractorInvite string
		joan, edsger, peter          *person
	)
	steps := []step{
		{"ada signs in with SSO", request{ada, browser, ""}, func(ctx context.Context, tx pgx.Tx) error {
			return r.log(ctx, tx, nw.id, auditlog.AuthSignin, ada.id, map[string]any{"method": "sso"})
		}},
		{"ada opens the WorkOS admin portal", request{ada, browser, ""}, func(ctx context.Context, tx pgx.Tx) error {
			return r.log(ctx, tx, nw.id, auditlog.OrgSSOPortalOpened, nw.id, nil)
		}},
		{"ada turns on domain auto-join", request{ada, browser, ""}, func(ctx context.Context, tx pgx.Tx) error {
			var oldDomains []string
			var oldRole *string
			if err := tx.QueryRow(ctx, query("set-org-domains"), nw.id, []string{nw.domain}, "member").Scan(&oldDomains, &oldRole); err != nil {
				return err
			}
			return r.log(ctx, tx, nw.id, auditlog.OrgUpdated, nw.id, map[string]any{"changes": map[string]any{
				"domains": []any{oldDomains, []string{nw.domain}}, "auto_join_role": []any{oldRole, "member"}}})
		}},
		{"joan signs up and joins by her domain", request{nil, browser, ""}, func(ctx context.Context, tx pgx.Tx) (err error) {
			if joan, err = r.signUp(ctx, tx, nw, "joan", "member", "google"); err != nil {
				return err
			}
			return r.log(ctx, tx, nw.id, auditlog.OrgMemberAutoJoined, joan.id, map[string]any{"domain": nw.domain, "role": "member"})
		}},
		{"edsger signs in with SSO for the first time and joins", request{nil, browser, ""}, func(ctx context.Context, tx pgx.Tx) (err error) {
			if edsger, err = r.signUp(ctx, tx, nw, "edsger", "member", "sso"); err != nil {
				return err
			}
			return r.log(ctx, tx, nw.id, auditlog.OrgMemberSSOJoined, edsger.id, map[string]any{"role": "member"})
		}},
		{"linus invites alan", request{linus, browser, ""}, func(ctx context.Context, tx pgx.Tx) error {
			email := nw.email("alan")
			if err := tx.QueryRow(ctx, query("invite"), nw.id, email, "admin", linus.id).Scan(&alanInvite); err != nil {
				return err
			}
			return r.log(ctx, tx, nw.id, auditlog.OrgInvitationCreated, alanInvite, map[string]any{"email": email, "role": "admin"})
		}},
		{"linus invites a contractor", request{linus, browser, ""}, func(ctx context.Context, tx pgx.Tx) error {
			email := "sam.contractor@outlook.example"
			if err := tx.QueryRow(ctx, query("invite"), nw.id, email, "member", linus.id).Scan(&contractorInvite); err != nil {
				return err
			}
			return r.log(ctx, tx, nw.id, auditlog.OrgInvitationCreated, contractorInvite, map[string]any{"email": email, "role": "member"})
		}},
		{"ada revokes the contractor's invitation", request{ada, browser, ""}, func(ctx context.Context, tx pgx.Tx) error {
			email, _, _, err := r.closeInvitation(ctx, tx, contractorInvite, "revoked")
			if err != nil {
				return err
			}
			return r.log(ctx, tx, nw.id, auditlog.OrgInvitationRevoked, contractorInvite, map[string]any{"email": email})
		}},
		{"alan accepts his invitation and joins", request{nil, browser, ""}, func(ctx context.Context, tx pgx.Tx) error {
			email, role, invitedBy, err := r.closeInvitation(ctx, tx, alanInvite, "accepted")
			if err != nil {
				return err
			}
			alan, err := r.member(ctx, tx, nw, "alan", role, r.now)
			if err != nil {
				return err
			}
			if err := r.become(ctx, tx, alan); err != nil {
				return err
			}
			if err := r.log(ctx, tx, nw.id, auditlog.OrgInvitationAccepted, alanInvite, map[string]any{"email": email}); err != nil {
				return err
			}
			return r.log(ctx, tx, nw.id, auditlog.OrgMemberJoined, alan.id, map[string]any{"invited_by": invitedBy, "role": role})
		}},
		{"ada makes margaret an admin", request{ada, browser, ""}, func(ctx context.Context, tx pgx.Tx) error {
			var previous string
			if err := tx.QueryRow(ctx, query("change-role"), nw.id, margaret.id, "admin").Scan(&previous); err != nil {
				return err
			}
			return r.log(ctx, tx, nw.id, auditlog.OrgMemberRoleChanged, margaret.id, map[string]any{"email": margaret.email, "previous_role": previous, "new_role": "admin"})
		}},
		{"ada removes barbara", request{ada, browser, ""}, func(ctx context.Context, tx pgx.Tx) error {
			var email string
			if err := tx.QueryRow(ctx, query("remove-member"), nw.id, barbara.id).Scan(&email); err != nil {
				return err
			}
			return r.log(ctx, tx, nw.id, auditlog.OrgMemberRemoved, barbara.id, map[string]any{"email": email})
		}},
		{"grace's CI registers a cluster with its token", request{grace, githubActions, "ci-deploy"}, func(ctx context.Context, tx pgx.Tx) error {
			var id string
			if err := tx.QueryRow(ctx, query("insert-cluster"), nw.id, "analytics-prod", "production", "eu-west-1",
				agentVersions[len(agentVersions)-1], pat.Hash(pat.Generate()), r.now).Scan(&id); err != nil {
				return err
			}
			r.clusters["analytics-prod"] = id
			return r.log(ctx, tx, nw.id, auditlog.ClusterCreated, id, map[string]any{"name": "analytics-prod", "env": "production", "region": "eu-west-1"})
		}},
		{"stripe syncs northwind's cluster quantity", request{nil, stripe, ""}, func(ctx context.Context, tx pgx.Tx) error {
			return r.changeQuantity(ctx, tx, nw, len(nw.clusters)+1)
		}},
		{"linus renames staging", request{linus, browser, ""}, func(ctx context.Context, tx pgx.Tx) error {
			var old string
			id := r.clusters["staging"]
			if err := tx.QueryRow(ctx, query("rename-cluster"), id, "staging-eu").Scan(&old); err != nil {
				return err
			}
			return r.log(ctx, tx, nw.id, auditlog.ClusterUpdated, id, map[string]any{"name": "staging-eu", "changes": map[string]any{"name": []string{old, "staging-eu"}}})
		}},
		{"ada rotates prod-us-1's install token", request{ada, browser, ""}, func(ctx context.Context, tx pgx.Tx) error {
			id := r.clusters["prod-us-1"]
			if _, err := tx.Exec(ctx, query("rotate-cluster-token"), id, pat.Hash(pat.Generate())); err != nil {
				return err
			}
			return r.log(ctx, tx, nw.id, auditlog.ClusterTokenRotated, id, map[string]any{"name": "prod-us-1"})
		}},
		{"ken may not delete a production cluster", request{ken, browser, ""}, func(ctx context.Context, tx pgx.Tx) error {
			// Cloud RBAC refuses; the refusal is recorded, nothing else happens.
			return r.log(ctx, tx, nw.id, auditlog.ClusterActionDenied, r.clusters[laggingCluster], map[string]any{
				"operation": "cluster.delete", "reason": "role member may not delete clusters", "name": laggingCluster})
		}},
		{"ada upgrades the lagging cluster's agent", request{ada, browser, ""}, func(ctx context.Context, tx pgx.Tx) error {
			return r.log(ctx, tx, nw.id, auditlog.ClusterAgentUpgradeRequested, r.clusters[laggingCluster], map[string]any{
				"from_version": agentVersions[len(agentVersions)-2], "to_version": agentVersions[len(agentVersions)-1], "name": laggingCluster})
		}},
		{"linus deletes dev-sandbox", request{linus, browser, ""}, func(ctx context.Context, tx pgx.Tx) error {
			var name string
			id := r.clusters["dev-sandbox"]
			if err := tx.QueryRow(ctx, query("delete-cluster"), id).Scan(&name); err != nil {
				return err
			}
			return r.log(ctx, tx, nw.id, auditlog.ClusterDeleted, id, map[string]any{"name": name})
		}},
		{"ada mints a token for her laptop", request{ada, browser, ""}, func(ctx context.Context, tx pgx.Tx) error {
			_, err := pat.Mint(ctx, tx, pat.MintOpts{OrgID: nw.id, UserEmail: ada.email, Name: "laptop-cli", ExpiresIn: 90 * day, Now: r.cfg.Now})
			if err == nil {
				r.recorded++
			}
			return err
		}},
		{"ada signs in to the CLI with it", request{ada, cli, "laptop-cli"}, func(ctx context.Context, tx pgx.Tx) error {
			return r.log(ctx, tx, nw.id, auditlog.AuthSignin, ada.id, map[string]any{"method": "pat"})
		}},
		{"ada revokes her old terraform token with the new one", request{ada, cli, "laptop-cli"}, func(ctx context.Context, tx pgx.Tx) error {
			return r.revokePAT(ctx, tx, nw, "terraform")
		}},
		{"joan signs out", request{nil, browser, ""}, func(ctx context.Context, tx pgx.Tx) error {
			if err := r.become(ctx, tx, joan); err != nil {
				return err
			}
			return r.log(ctx, tx, nw.id, auditlog.AuthSignout, joan.id, nil)
		}},
		{"marge's pipeline registers a Globex cluster", request{p(gx, "marge"), gitlabCI, "gitlab-ci"}, func(ctx context.Context, tx pgx.Tx) error {
			var id string
			if err := tx.QueryRow(ctx, query("insert-cluster"), gx.id, "globex-eu", "production", "eu-west-2",
				agentVersions[len(agentVersions)-1], pat.Hash(pat.Generate()), r.now).Scan(&id); err != nil {
				return err
			}
			return r.log(ctx, tx, gx.id, auditlog.ClusterCreated, id, map[string]any{"name": "globex-eu", "env": "production", "region": "eu-west-2"})
		}},
		{"lisa signs in to Globex", request{p(gx, "lisa"), browser, ""}, func(ctx context.Context, tx pgx.Tx) error {
			return r.log(ctx, tx, gx.id, auditlog.AuthSignin, p(gx, "lisa").id, map[string]any{"method": gx.signin})
		}},
		{"dinesh may not upgrade Pied Piper's agent", request{p(pp, "dinesh"), browser, ""}, func(ctx context.Context, tx pgx.Tx) error {
			return r.log(ctx, tx, pp.id, auditlog.ClusterActionDenied, r.clusters["pp-dev"], map[string]any{
				"operation": "cluster.agent.upgrade", "reason": "role member may not upgrade agents", "name": "pp-dev"})
		}},
		{"peter signs up and creates Initech", request{nil, browser, ""}, func(ctx context.Context, tx pgx.Tx) (err error) {
			if _, err := tx.Exec(ctx, query("insert-org"), it.id, it.name, it.plan, r.now); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, query("insert-org-settings"), it.id); err != nil {
				return err
			}
			if peter, err = r.signUp(ctx, tx, it, "peter", "owner", it.signin); err != nil {
				return err
			}
			return r.log(ctx, tx, it.id, auditlog.OrgCreated, it.id, map[string]any{"name": it.name})
		}},
		{"peter starts a checkout for the team plan", request{nil, browser, ""}, func(ctx context.Context, tx pgx.Tx) error {
			if err := r.become(ctx, tx, peter); err != nil {
				return err
			}
			return r.log(ctx, tx, it.id, auditlog.BillingCheckoutStarted, it.id, map[string]any{
				"plan": "team", "quantity": 3, "checkout_session": fmt.Sprintf("cs_live_%012x", r.rng.Uint64()>>16)})
		}},
		{"stripe confirms Initech's upgrade", request{nil, stripe, ""}, func(ctx context.Context, tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, query("insert-subscription"), it.id, it.subscription, 1); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, query("change-plan"), it.id, "team"); err != nil {
				return err
			}
			return r.changeQuantity(ctx, tx, it, 3, "free", "team")
		}},
		{"peter invites samir to Initech", request{nil, browser, ""}, func(ctx context.Context, tx pgx.Tx) error {
			var id string
			email := it.email("samir")
			if err := tx.QueryRow(ctx, query("invite"), it.id, email, "member", peter.id).Scan(&id); err != nil {
				return err
			}
			if err := r.become(ctx, tx, peter); err != nil {
				return err
			}
			return r.log(ctx, tx, it.id, auditlog.OrgInvitationCreated, id, map[string]any{"email": email, "role": "member"})
		}},
		{"ada signs out", request{ada, browser, ""}, func(ctx context.Context, tx pgx.Tx) error {
			return r.log(ctx, tx, nw.id, auditlog.AuthSignout, ada.id, nil)
		}},
	}
	for _, s := range steps {
		if err := r.do(ctx, s.req, func(tx pgx.Tx) error { return s.fn(ctx, tx) }); err != nil {
			return fmt.Errorf("demo: %s: %w", s.what, err)
		}
	}
	return nil
}

// become makes someone who has no session when the request starts (a
// sign-up, a first sign-in, an invitation accepted) the actor of the rest of
// its transaction.
func (r *runner) become(ctx context.Context, tx pgx.Tx, who *person) error {
	return auditlog.SetContext(ctx, tx, auditlog.Context{Actor: auditlog.Actor{ID: who.id}, IP: userIP(who.email),
		UserAgent: browser.userAgent, RequestID: r.requestID()})
}

// signUp is a first visit: name@domain gets an account and a membership of
// the org, and signs in.
func (r *runner) signUp(ctx context.Context, tx pgx.Tx, o *orgSpec, name, role, method string) (*person, error) {
	p, err := r.member(ctx, tx, o, name, role, r.now)
	if err != nil {
		return nil, err
	}
	if err := r.become(ctx, tx, p); err != nil {
		return nil, err
	}
	return p, r.log(ctx, tx, o.id, auditlog.AuthSignin, p.id, map[string]any{"method": method})
}

// closeInvitation accepts or revokes a pending invitation and says whom it
// was for, as what, and who sent it.
func (r *runner) closeInvitation(ctx context.Context, tx pgx.Tx, id, status string) (email, role, invitedBy string, err error) {
	err = tx.QueryRow(ctx, query("close-invitation"), id, status).Scan(&email, &role, &invitedBy)
	return email, role, invitedBy, err
}

// changeQuantity is Stripe's webhook: the subscription's cluster quantity
// (and the plan, when plans are given as previous and new) changed.
func (r *runner) changeQuantity(ctx context.Context, tx pgx.Tx, o *orgSpec, quantity int, plans ...string) error {
	var subscription string
	var previous int
	if err := tx.QueryRow(ctx, query("change-quantity"), o.id, quantity).Scan(&subscription, &previous); err != nil {
		return err
	}
	from, to := o.plan, o.plan
	if len(plans) == 2 {
		from, to = plans[0], plans[1]
	}
	if from == "free" {
		previous = 1 // the free plan's one cluster
	}
	return r.log(ctx, tx, o.id, auditlog.BillingSubscriptionChanged, subscription, map[string]any{
		"subscription_id": subscription, "previous_plan": from, "new_plan": to,
		"previous_quantity": previous, "new_quantity": quantity})
}

// revokePAT revokes a token of the past by name.
func (r *runner) revokePAT(ctx context.Context, tx pgx.Tx, o *orgSpec, name string) error {
	id := r.pats[name]
	var stored string
	if err := tx.QueryRow(ctx, query("revoke-pat"), id).Scan(&stored); err != nil {
		return err
	}
	return r.log(ctx, tx, o.id, auditlog.PATRevoked, id, map[string]any{"name": stored})
}
