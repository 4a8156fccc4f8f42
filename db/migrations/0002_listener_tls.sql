-- A peer whose listener speaks TLS gives the SHA-256 of its certificate at login; the server
-- pins it when it connects to push.
ALTER TABLE USER_SESSION_TB ADD COLUMN LISTEN_TLS_FP bytea;
