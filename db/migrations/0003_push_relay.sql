-- Pushes handed from one server process to another: the NAT fallback for a peer whose
-- session connection is held by a different process. The owner is woken with NOTIFY
-- messenger_relay (payload: its SERVER_ID), takes its rows in ID order and deletes them.
CREATE TABLE PUSH_RELAY_TB (
    ID          bigserial    PRIMARY KEY,
    SERVER_ID   varchar(64)  NOT NULL,
    TOKEN_HASH  bytea        NOT NULL,
    FRAMES      bytea        NOT NULL,
    CREATED_AT  timestamptz  NOT NULL DEFAULT now()
);
CREATE INDEX PUSH_RELAY_TB_SERVER ON PUSH_RELAY_TB (SERVER_ID, ID);
