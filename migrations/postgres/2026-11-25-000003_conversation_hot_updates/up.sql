-- Every send updates its conversation (counters, last message, activity
-- time). With updated_at in an index each such update wrote new entries in
-- every index and left the table and indexes bloated under load. Index the
-- participants only (listing a user's conversations sorts that user's rows),
-- and leave room in each page so updates stay HOT (heap-only).
DROP INDEX conversations_low_recent;
DROP INDEX conversations_high_recent;
CREATE INDEX conversations_low ON conversations (user_low);
CREATE INDEX conversations_high ON conversations (user_high);
ALTER TABLE conversations SET (fillfactor = 50);
