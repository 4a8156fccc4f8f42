"""Storage: everything that touches PostgreSQL or the archive files. SQL lives only here."""
