-- Every process pushes only to the sessions it holds: a message batch committed in one
-- process is handed to each other process that holds sessions of its audience as one row,
-- written in the batch's own transaction (so rows of one room are in commit order), with
-- the frames encoded once and the sessions that should get them. The owner pushes them
-- over its own link to each listener. So every peer has one push link, from the process
-- holding its session, however many processes there are.
ALTER TABLE PUSH_RELAY_TB ADD COLUMN TOKEN_HASHES bytea[];
UPDATE PUSH_RELAY_TB SET TOKEN_HASHES = ARRAY[TOKEN_HASH];
ALTER TABLE PUSH_RELAY_TB ALTER COLUMN TOKEN_HASHES SET NOT NULL;
ALTER TABLE PUSH_RELAY_TB DROP COLUMN TOKEN_HASH;
ALTER TABLE PUSH_RELAY_TB ADD COLUMN FRAME_COUNT integer NOT NULL DEFAULT 1;
