"""boxnetd: configuration, start-up reconcile, serving the API."""
