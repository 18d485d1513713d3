"""pytheus 0.6's experimental namespace, kept so that its documented imports keep working."""
