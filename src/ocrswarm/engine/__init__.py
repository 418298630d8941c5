"""The engine: a durable store of jobs and page tasks with leases, workflows scheduled as a
DAG per page, local workers and the single METS writer (see docs/architecture.md)."""
