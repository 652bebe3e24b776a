-- The one sanctioned delete of events, the retention worker's re-tier,
-- marks its transaction here; the immutability trigger lets a DELETE through
-- only in a marked transaction. Only audit_owner may write the table, and a
-- mark lives (unseen by anyone else) only as long as its transaction.
SET LOCAL ROLE audit_owner;

CREATE TABLE audit.retier_marks (
  xid       xid8        PRIMARY KEY,
  change_id bigint      NOT NULL REFERENCES audit.plan_changes,
  marked_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE audit.retier_marks IS 'Transactions of audit.retier that may delete events (from the old tier of a plan change). Always empty outside such a transaction.';
COMMENT ON COLUMN audit.retier_marks.xid IS 'The re-tiering transaction (pg_current_xact_id()).';
COMMENT ON COLUMN audit.retier_marks.change_id IS 'The plan change being re-tiered.';
COMMENT ON COLUMN audit.retier_marks.marked_at IS 'When the transaction marked itself.';

RESET ROLE;
