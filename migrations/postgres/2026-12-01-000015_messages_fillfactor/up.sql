-- Room in each page of messages so that stamping `delivered_at` (an ack)
-- and rewriting `reactions` stay HOT updates: neither column is indexed,
-- so with free space on the page the new row version needs no new entry
-- in any index (the GIN search index included). Applies to pages filled
-- from now on.
ALTER TABLE messages SET (fillfactor = 85);
