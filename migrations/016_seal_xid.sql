-- Each seal keeps the id of the transaction that recorded its event, so that
-- the feed tells an event not visible yet (its transaction still running in
-- the reader's snapshot: a commit the sealer read from the flushed WAL
-- before it became visible, as under synchronous replication, where a commit
-- waits for its standby after the flush) from one that is gone (removed by
-- retention, or by hand). NULL for seals of events sealed from a snapshot
-- (the sealer's first pass) and for seals recorded before this column.
SET LOCAL ROLE audit_owner;

ALTER TABLE audit.seals ADD COLUMN xid xid8;
COMMENT ON COLUMN audit.seals.xid IS 'The transaction that recorded the event (from the WAL); NULL for events sealed from a snapshot, whose transactions had ended.';

RESET ROLE;
