"""The bottom layer beside config: atomic writes, corpus reading and vocabulary files."""
