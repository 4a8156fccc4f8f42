-- Accounts, rooms and membership: SPEC.md's three tables with their original names, plus
-- the columns and tables that features need. Unquoted identifiers fold to lower case in
-- PostgreSQL, so USER_TB and user_tb are the same table.

CREATE TABLE USER_TB (
    USER_ID     varchar(50)  PRIMARY KEY,
    USER_NM     varchar(50)  NOT NULL,
    PASSWORD    varchar(255) NOT NULL,           -- scrypt$n$r$p$salt$hash, never the password
    IMAGE_PATH  varchar(255),
    LOGIN_IP    varchar(40),                     -- peer listener address; NULL = offline
    LOGIN_PORT  integer,
    CREATED_AT  timestamptz  NOT NULL DEFAULT now()
);

-- Live server processes; a process that stops heartbeating is presumed dead and its
-- sessions are closed by the next process to start or heartbeat.
CREATE TABLE SERVER_TB (
    SERVER_ID   varchar(64)  PRIMARY KEY,
    STARTED_AT  timestamptz  NOT NULL DEFAULT now(),
    HEARTBEAT   timestamptz  NOT NULL DEFAULT now()
);

-- One row per logged-in session (a user may be logged in on several devices). USER_TB's
-- LOGIN_IP/LOGIN_PORT mirror the newest live session, as the original design expects.
CREATE TABLE USER_SESSION_TB (
    TOKEN_HASH   bytea        PRIMARY KEY,       -- sha256 of the session token
    USER_ID      varchar(50)  NOT NULL REFERENCES USER_TB(USER_ID) ON DELETE CASCADE,
    LISTEN_IP    varchar(40),
    LISTEN_PORT  integer,
    PUSH_SECRET  bytea        NOT NULL,          -- the listener accepts pushes only with this
    SERVER_ID    varchar(64)  NOT NULL,          -- which server process holds the connection
    ONLINE       boolean      NOT NULL DEFAULT true,
    CREATED_AT   timestamptz  NOT NULL DEFAULT now(),
    LAST_SEEN    timestamptz  NOT NULL DEFAULT now()
);
CREATE INDEX USER_SESSION_TB_USER ON USER_SESSION_TB (USER_ID) WHERE ONLINE;

CREATE TABLE SESSION_TB (
    SESSION_ID   varchar(16)  NOT NULL,          -- YYYYMMDD_NNNNNN
    CREATOR_ID   varchar(50)  NOT NULL REFERENCES USER_TB(USER_ID),
    SESSION_NM   varchar(255) NOT NULL,
    CREATED_AT   timestamptz  NOT NULL DEFAULT now(),
    HAS_IMAGE    boolean      NOT NULL DEFAULT false,
    LAST_SEQ     bigint       NOT NULL DEFAULT 0,   -- seq of the newest committed message
    LAST_TIME    timestamptz,                       -- chat_time of that message
    LAST_USER_ID varchar(50),
    LAST_TYPE    varchar(16),
    LAST_PREVIEW varchar(255),
    ARCHIVE_DAY  date,                              -- day file holding LAST_SEQ
    ARCHIVE_SIZE bigint       NOT NULL DEFAULT 0,   -- committed byte length of that file
    PRIMARY KEY (SESSION_ID, CREATOR_ID)
);

CREATE TABLE SESSION_USER_RELATION_TB (
    SESSION_ID  varchar(16)  NOT NULL,
    CREATOR_ID  varchar(50)  NOT NULL,
    USER_ID     varchar(50)  NOT NULL REFERENCES USER_TB(USER_ID),
    JOINED_AT   timestamptz  NOT NULL DEFAULT now(),
    READ_SEQ    bigint       NOT NULL DEFAULT 0,   -- the member's read position
    PRIMARY KEY (SESSION_ID, CREATOR_ID, USER_ID),
    FOREIGN KEY (SESSION_ID, CREATOR_ID) REFERENCES SESSION_TB(SESSION_ID, CREATOR_ID) ON DELETE CASCADE
);
CREATE INDEX SESSION_USER_RELATION_TB_USER ON SESSION_USER_RELATION_TB (USER_ID);

-- The n of SESSION_ID's NNNNNN: rooms a creator made on a day. An upsert on this row makes
-- concurrent creates (in any process) get distinct numbers.
CREATE TABLE ROOM_COUNTER_TB (
    CREATOR_ID  varchar(50)  NOT NULL,
    DAY         char(8)      NOT NULL,
    N           integer      NOT NULL,
    PRIMARY KEY (CREATOR_ID, DAY)
);

-- Client transaction ids of sends: a retried send finds its first reply here.
CREATE TABLE SEND_TXN_TB (
    USER_ID     varchar(50)  NOT NULL,
    TXN_ID      varchar(64)  NOT NULL,
    SESSION_ID  varchar(16)  NOT NULL,
    CREATOR_ID  varchar(50)  NOT NULL,
    SEQ         bigint       NOT NULL,
    CHAT_TIME   varchar(40)  NOT NULL,
    CREATED_AT  timestamptz  NOT NULL DEFAULT now(),
    PRIMARY KEY (USER_ID, TXN_ID)
);
