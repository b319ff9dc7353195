"""Numba kernels: pure functions on contiguous float32 arrays, no objects of ours.

Each kernel has a thin checked wrapper in the module that uses it (layers/, rules/) and a slow numpy
reference in the tests.  Compilation is lazy: importing this package compiles nothing.
"""
