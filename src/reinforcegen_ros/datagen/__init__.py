"""Object-centric data generation (ReinforceGen Sec. III-B): ~10 source demos become ~1000."""
