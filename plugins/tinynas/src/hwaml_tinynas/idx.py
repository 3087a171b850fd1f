"""The IDX reader (MNIST's file format) moved to :mod:`hwaml_ofa_nas.idx`, which
both TinyNAS and OFA load Fashion-MNIST with; this name stays for code written
against it."""

from hwaml_ofa_nas.idx import *  # noqa: F401,F403
from hwaml_ofa_nas.idx import DEFAULT_MAX_BYTES, DTYPES, IDXError, read_idx, read_idx_header, read_labelled_pair, write_idx  # noqa: F401
