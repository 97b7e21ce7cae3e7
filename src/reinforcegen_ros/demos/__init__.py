"""Source demonstrations: episodes, robomimic-compatible HDF5 datasets, scripted demonstrators."""
