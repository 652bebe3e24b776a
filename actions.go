package auditlog

// Action names an auditable action of the catalog (audit.actions).
type Action string

// The actions of the catalog. A test fails when these drift from audit.actions.
const (
	ClusterCreated               Action = "cluster.created"
	ClusterUpdated               Action = "cluster.updated"
	ClusterDeleted               Action = "cluster.deleted"
	ClusterTokenRotated          Action = "cluster.token_rotated"
	ClusterActionDenied          Action = "cluster.action_denied"
	ClusterAgentUpgradeRequested Action = "cluster.agent.upgrade_requested"
	OrgCreated                   Action = "org.created"
	OrgUpdated                   Action = "org.updated"
	OrgSSOPortalOpened           Action = "org.sso.portal_opened"
	OrgInvitationCreated         Action = "org_invitation.created"
	OrgInvitationAccepted        Action = "org_invitation.accepted"
	OrgInvitationRevoked         Action = "org_invitation.revoked"
	OrgMemberJoined              Action = "org_member.joined"
	OrgMemberAutoJoined          Action = "org_member.auto_joined"
	OrgMemberSSOJoined           Action = "org_member.sso_joined"
	OrgMemberRemoved             Action = "org_member.removed"
	OrgMemberRoleChanged         Action = "org_member.role_changed"
	PATCreated                   Action = "pat.created"
	PATRevoked                   Action = "pat.revoked"
	BillingCheckoutStarted       Action = "billing.checkout_started"
	BillingSubscriptionChanged   Action = "billing.subscription_changed"
	AuthSignin                   Action = "auth.signin"
	AuthSignout                  Action = "auth.signout"
	AuditStreamCreated           Action = "audit_stream.created"
	AuditStreamUpdated           Action = "audit_stream.updated"
	AuditStreamDeleted           Action = "audit_stream.deleted"
	AuditStreamFailing           Action = "audit_stream.failing"
)

// ActionInfo describes an action as the catalog does.
type ActionInfo struct {
	Action     Action
	TargetType string
	// RequiredKeys are the metadata keys every event of the action carries.
	RequiredKeys []string
}

// Actions lists every action with its target type and required metadata
// keys, in catalog order.
var Actions = []ActionInfo{
	{ClusterCreated, "cluster", []string{"name"}},
	{ClusterUpdated, "cluster", []string{"changes"}},
	{ClusterDeleted, "cluster", []string{"name"}},
	{ClusterTokenRotated, "cluster", nil},
	{ClusterActionDenied, "cluster", []string{"operation", "reason"}},
	{ClusterAgentUpgradeRequested, "cluster", []string{"from_version", "to_version"}},
	{OrgCreated, "org", []string{"name"}},
	{OrgUpdated, "org", []string{"changes"}},
	{OrgSSOPortalOpened, "org", nil},
	{OrgInvitationCreated, "org_invitation", []string{"email", "role"}},
	{OrgInvitationAccepted, "org_invitation", []string{"email"}},
	{OrgInvitationRevoked, "org_invitation", []string{"email"}},
	{OrgMemberJoined, "org_member", []string{"invited_by", "role"}},
	{OrgMemberAutoJoined, "org_member", []string{"domain", "role"}},
	{OrgMemberSSOJoined, "org_member", []string{"role"}},
	{OrgMemberRemoved, "org_member", []string{"email"}},
	{OrgMemberRoleChanged, "org_member", []string{"previous_role", "new_role"}},
	{PATCreated, "pat", []string{"name"}},
	{PATRevoked, "pat", []string{"name"}},
	{BillingCheckoutStarted, "billing", []string{"plan"}},
	{BillingSubscriptionChanged, "billing", []string{"subscription_id", "previous_plan", "new_plan", "previous_quantity", "new_quantity"}},
	{AuthSignin, "auth", []string{"method"}},
	{AuthSignout, "auth", nil},
	{AuditStreamCreated, "audit_stream", []string{"name", "kind", "host"}},
	{AuditStreamUpdated, "audit_stream", []string{"name", "changes", "previous_state", "new_state"}},
	{AuditStreamDeleted, "audit_stream", []string{"name"}},
	{AuditStreamFailing, "audit_stream", []string{"name", "failing_since"}},
}
