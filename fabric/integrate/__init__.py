"""Integration: the dbt project (staging -> integrated -> features) and how Fabric runs it."""
