"""The fuzzing harness of fastnn's file readers (tests/test_fuzz_readers.py).

``seeds`` writes one valid file of each format; ``mutations`` holds the Hypothesis
strategies that break them (byte-level and structure-aware); ``sandbox`` runs a reader on a
file in a worker process under an address-space limit and a timeout and says how it
answered; ``targets`` are the readers as the worker calls them.
"""
