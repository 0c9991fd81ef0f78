"""Training objectives of the shared loop, one module per student kind."""
