"""REST routes of the manager, one module per resource; thin layers over the services."""
