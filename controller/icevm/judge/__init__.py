"""Scenarios and verdicts: run a fault on a fresh guest, observe, and decide PASS, DRIVER-BUG
or HARNESS-ERROR. Pure verdict rules live in :mod:`icevm.judge.verdicts`.
"""
