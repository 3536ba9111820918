"""Instance catalogs, fitting a memory estimate onto GPUs, and job cost."""
