"""Services across the swarm: the scheduler (the leader's: desired tasks), the tasks each node runs, and the
virtual addresses that balance over them."""
