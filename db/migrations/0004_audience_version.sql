-- Who hears a room's messages (its members and their online sessions) changes rarely, so
-- each server process keeps it in memory. Every change bumps the room's AUDIENCE_VERSION in
-- the transaction that makes it: invites, leaves, and every login, logout or dropped session
-- of a member (those lock the member's room rows in key order, as a send batch does). A batch
-- reads the version of the rooms it locked and reloads a room's audience only when it moved.
ALTER TABLE SESSION_TB ADD COLUMN AUDIENCE_VERSION bigint NOT NULL DEFAULT 0;
