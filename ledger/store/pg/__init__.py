"""The PostgreSQL replica of a ledger: schema, connections, reads, block writes, verify.

LMDB stays the system of record; a replica is fed block by block by the
replicator (`projections.replicator`, `ledgerctl replicate`). Everything here
is optional: it needs psycopg 3 (the `postgres` extra).
"""
