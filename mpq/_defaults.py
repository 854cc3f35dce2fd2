"""Defaults the command line shows in its help without importing the search (and torch)."""

#: The target and objective of a bare ``mpq search``: the digits CNN is the kind of network
#: FINN's streaming dataflow puts on a Zynq board, and the FPGA runs 2- to 8-bit candidates.
DEFAULT_TARGET = "zcu104"
DEFAULT_OBJECTIVES = ("latency_s",)
