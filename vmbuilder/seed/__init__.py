"""cloud-init NoCloud seeds: user-data, meta-data and network-config, and the ISO that carries them."""
