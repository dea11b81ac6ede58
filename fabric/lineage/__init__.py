"""Lineage: OpenLineage run events for every asset, column lineage of dbt models, record trace."""
