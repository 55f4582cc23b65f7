"""Setting up the infrastructure and the units: the broker, later credentials and images."""
