"""Documentation ingestion: source registry, readers, include resolution, chunking, incremental loading."""
