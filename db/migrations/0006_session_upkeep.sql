-- Closed sessions stay in USER_SESSION_TB (ONLINE = false) until the heartbeat prunes them
-- (storage/users.py prune). Every process's heartbeat, every 10 s, looks for
-- online sessions of processes that stopped, and a stopping process closes its own: both by
-- SERVER_ID among online sessions, which without an index meant reading the whole table,
-- every closed session ever included.
CREATE INDEX USER_SESSION_TB_SERVER ON USER_SESSION_TB (SERVER_ID) WHERE ONLINE;
CREATE INDEX USER_SESSION_TB_CLOSED ON USER_SESSION_TB (LAST_SEEN) WHERE NOT ONLINE;
