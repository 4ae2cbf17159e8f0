"""Migration definitions: what the operator wrote in migrations.yaml, parsed and validated."""
