"""The ledger: a narrow key-value protocol that an embedded SQLite file or etcd can both serve."""
