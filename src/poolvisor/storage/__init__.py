"""Storage data path: the `dir` backend (devices are directories, objects are checksummed files)."""
