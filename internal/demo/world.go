package demo

import (
	"fmt"
	"net/netip"
	"time"
)

// The demo orgs' ids are fixed: they are how a second run knows the demo is
// already there.
const (
	// EnterpriseOrgID is Northwind Robotics, on the enterprise plan: a year
	// of history, the org the Activity page of `make run` shows.
	EnterpriseOrgID = "5eed0000-0000-4000-8000-000000000001"
	// TeamOrgID is Globex, on the team plan: a month of history.
	TeamOrgID = "5eed0000-0000-4000-8000-000000000002"
	// FreeOrgID is Pied Piper, on the free plan, created six days ago.
	FreeOrgID = "5eed0000-0000-4000-8000-000000000003"
	// UpgradedOrgID is Initech, created by the demo on the free plan and
	// upgraded to team at once.
	UpgradedOrgID = "5eed0000-0000-4000-8000-000000000004"
)

// OwnerEmail is an owner of the enterprise org, who `auditlog dev` mints a
// token for.
const OwnerEmail = "ada@northwind.example"

const day = 24 * time.Hour

// orgSpec is a demo org as of the start of the demo.
type orgSpec struct {
	id, name, plan, domain string
	age                    time.Duration // created this long ago
	live                   bool          // created by the live part, not seeded
	signin                 string        // how its people sign in (metadata.method)
	perDay                 int           // history events on a working day
	subscription           string        // Stripe subscription id of a paying org
	members                []memberSpec
	clusters               []clusterSpec
	pats                   []patSpec
}

// memberSpec is a member and when they joined; the first owner founded the org.
type memberSpec struct {
	name, role string
	joined     time.Duration // ago
}

type clusterSpec struct {
	name, env, region string
	created           time.Duration // ago
}

// patSpec is a token of the past, used by CI, terraform or scripts.
type patSpec struct {
	owner, name string
	created     time.Duration // ago
	client      client
}

var world = []*orgSpec{
	{
		id: EnterpriseOrgID, name: "Northwind Robotics", plan: "enterprise", domain: "northwind.example",
		age: 3 * 365 * day, signin: "sso", perDay: 24, subscription: "sub_1NwRbt2eZvKYlo2C8a3f",
		members: []memberSpec{
			{"ada", "owner", 3 * 365 * day}, {"grace", "owner", 2 * 365 * day}, {"linus", "admin", 700 * day},
			{"margaret", "member", 400 * day}, {"barbara", "member", 380 * day}, {"ken", "member", 200 * day},
			{"dennis", "member", 45 * day},
		},
		clusters: []clusterSpec{
			{"prod-eu-1", "production", "eu-west-1", 2 * 365 * day}, {"staging", "staging", "eu-west-1", 500 * day},
			{"prod-us-1", "production", "us-east-1", 300 * day}, {"dev-sandbox", "development", "eu-central-1", 90 * day},
		},
		pats: []patSpec{
			{"ada", "terraform", 400 * day, terraform}, {"grace", "ci-deploy", 150 * day, githubActions},
		},
	},
	{
		id: TeamOrgID, name: "Globex", plan: "team", domain: "globex.example",
		age: 365 * day, signin: "google", perDay: 12, subscription: "sub_1OaGx7Lk2mQpZ0Yh4Tq9",
		members: []memberSpec{{"hank", "owner", 365 * day}, {"marge", "admin", 200 * day}, {"lisa", "member", 20 * day}},
		clusters: []clusterSpec{
			{"globex-prod", "production", "us-west-2", 300 * day}, {"globex-staging", "staging", "us-west-2", 12 * day},
		},
		pats: []patSpec{{"hank", "gitlab-ci", 100 * day, gitlabCI}},
	},
	{
		id: FreeOrgID, name: "Pied Piper", plan: "free", domain: "piedpiper.example",
		age: 6 * day, signin: "password", perDay: 8,
		members:  []memberSpec{{"richard", "owner", 6 * day}, {"gilfoyle", "admin", 5 * day}, {"dinesh", "member", 4 * day}},
		clusters: []clusterSpec{{"pp-dev", "development", "us-west-1", 5 * day}},
	},
	{
		id: UpgradedOrgID, name: "Initech", plan: "free", domain: "initech.example", live: true,
		signin: "password", subscription: "sub_1PbInT3cHqW9vLx2Rm5K",
		members: []memberSpec{{"peter", "owner", 0}},
	},
}

// client is the program a request comes from.
type client struct {
	userAgent string
	ip        netip.Addr // zero: the user's own address
}

var (
	browser       = client{userAgent: "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15"}
	cli           = client{userAgent: "radar-cli/2.4.1 (darwin; arm64)"}
	terraform     = client{userAgent: "terraform-provider-radar/1.9.0", ip: netip.MustParseAddr("192.0.2.10")}
	githubActions = client{userAgent: "radar-cli/2.4.1 (linux; amd64) GitHub-Actions", ip: netip.MustParseAddr("192.0.2.44")}
	gitlabCI      = client{userAgent: "radar-cli/2.3.0 (linux; amd64) GitLab-CI", ip: netip.MustParseAddr("192.0.2.71")}
)

// agentVersions are the in-cluster agent's releases over the last year,
// oldest first; the history upgrades every cluster through them.
var agentVersions = []string{"1.6.0", "1.6.3", "1.7.0", "1.7.2", "1.8.0", "1.8.1", "1.9.0"}

// laggingCluster is still on the last release but one: the live part
// upgrades it.
const laggingCluster = "prod-eu-1"

// email is a member's address in an org's domain.
func (o *orgSpec) email(name string) string { return name + "@" + o.domain }

// userIP is a stable documentation-range address per person.
func userIP(email string) netip.Addr {
	var h byte
	for i := range len(email) {
		h = h*31 + email[i]
	}
	return netip.MustParseAddr(fmt.Sprintf("203.0.113.%d", 1+int(h)%250))
}
