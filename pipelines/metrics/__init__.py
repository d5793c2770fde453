"""Quality metrics (SRD: AM1, PA1, …) computed on releases against simulator truth."""
