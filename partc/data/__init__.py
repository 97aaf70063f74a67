"""Task data: the catalog of sources (torch-free) and their loaders."""
