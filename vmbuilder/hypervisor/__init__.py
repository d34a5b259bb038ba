"""The only code that imports libvirt: one connection per host, every error said with
what was being done, to what, on which host."""
