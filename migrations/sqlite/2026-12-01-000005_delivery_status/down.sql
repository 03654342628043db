ALTER TABLE messages DROP COLUMN delivered_at;
ALTER TABLE conversations DROP COLUMN delivered_for_high;
ALTER TABLE conversations DROP COLUMN delivered_for_low;
