"""Starting sessions: local launches (all nodes on this host), keys, cluster files."""
