"""vmbuild: build and rebuild whole libvirt/KVM clusters from one YAML file."""

__version__ = "0.1.0"
