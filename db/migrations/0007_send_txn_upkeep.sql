-- SEND_TXN_TB holds one row per message ever sent, so that a retried send (same user and
-- txn_id) is answered with its first reply. Retries come within seconds or minutes (a peer
-- retries over its next connection); the heartbeat deletes rows older than a week
-- (storage/users.py prune_send_txns). A BRIN index on CREATED_AT finds them: rows are
-- inserted in time order, so it stays a few pages and costs a send next to nothing.
CREATE INDEX SEND_TXN_TB_CREATED ON SEND_TXN_TB USING brin (CREATED_AT) WITH (autosummarize = on);
