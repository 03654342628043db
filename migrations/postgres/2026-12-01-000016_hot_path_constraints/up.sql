-- The foreign keys of the two tables every send writes to (a message, and
-- one stream event per participant) cost four referential-integrity
-- queries per message, about a tenth of PostgreSQL's CPU under load (a
-- run with and without them: +10.7 % throughput, BENCHMARKS.md). They
-- guard nothing the service can break: the message writer stores a
-- message only in a conversation whose row it has locked, from one of its
-- participants, and writes stream events only for the users whose rows it
-- has locked; users, conversations and messages are never deleted by the
-- service. An operator who deletes a user by hand deletes that user's
-- messages and events too (docs/decisions.md, "Constraints on the hot
-- tables").
ALTER TABLE user_events DROP CONSTRAINT user_events_user_id_fkey;
ALTER TABLE messages DROP CONSTRAINT messages_conversation_id_fkey;
ALTER TABLE messages DROP CONSTRAINT messages_sender_id_fkey;
