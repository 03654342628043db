ALTER TABLE messages RESET (fillfactor);
